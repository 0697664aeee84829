"""Task kinds: how a task's examples become a loss, what trainable state a task adds, and how
it is scored after each stage.

The run loop, the strategies and the report see a task only through its kind: `prepare`
tokenises its splits, `add` gives it its trainable state (the classification kind: a linear
head of its own; the prompted kind: none, it trains through the model's LM head), `collate`
batches its rows, `loss` is its training loss on a batch, `score` its measurements after a
stage (the first is its primary metric: the accuracy matrix's entry). What a kind asks of a task
definition (its fields, their checks, its metrics) is its `sources.kinds.KindSpec`, whose
`runtime` names the class here; `run.kinds.KINDS` loads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...sources.kinds import KINDS as SPECS
from ...sources.kinds import KindSpec

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch import nn

    from ...sources.heads import TaskHeads
    from ...sources.tasks import TaskConfig
    from ..data import Batching, PreparedTask


@dataclass(frozen=True)
class Score:
    """One measurement of a task after a stage: a record of records.jsonl."""

    metric: str  # accuracy, ...
    value: float
    n: int  # examples scored
    baseline: float | None = None  # what a trivial predictor scores (the majority class)
    per_example: list[float] | None = None  # each eval example's score (accuracy: 1 correct, 0 not), in order
    generations: list[str] | None = None  # the greedy generations it scored, in order (generations.jsonl)


class TaskKind:
    """A kind's run-time side, named by its `KindSpec.runtime` (`sources.kinds`)."""

    name: str = ""
    zero_shot: bool = False  # its baseline is the base model's score, measured once per experiment

    @property
    def spec(self) -> KindSpec:
        """What the kind asks of a task definition (fields, checks, metrics)."""
        return SPECS.get(self.name)

    @property
    def metric(self) -> str:
        """The default primary metric, the accuracy matrix's entries."""
        return self.spec.metrics[0]

    @property
    def has_head(self) -> bool:
        """`add` gives the task a head of its own (in heads.safetensors)."""
        return self.spec.has_head

    def describe(self, task: PreparedTask) -> str:
        """How `prepare`'s message shows the task, after its split sizes."""
        return f"{task.num_classes} classes, majority baseline {task.majority:.3f}"

    def prepare(self, task: TaskConfig, train: Dataset, eval: Dataset, tokenizer: Any, max_length: int,
                bos_id: int | None, where: str, val: Dataset | None = None) -> PreparedTask:
        """Tokenise a task's (subsetted) splits, checking what this kind needs of them (`val`: the
        validation rows, with `eval.validation`)."""
        raise NotImplementedError

    def add(self, heads: TaskHeads, task: PreparedTask, hidden: int, seed: int) -> list[nn.Module]:
        """Give the task its trainable state before the stage that learns it; return the new modules."""
        return []

    def collate(self, task: PreparedTask, rows: list[int], batching: Batching) -> dict[str, torch.Tensor]:
        """Rows of the task's training split as one padded batch on the device."""
        from ..data import collate

        return collate(task.train, rows, batching.pad_id, batching.device, batching.padding_side)

    def loss(self, model: nn.Module, heads: TaskHeads, task: PreparedTask, batch: dict[str, torch.Tensor],
             pooling: str, reduction: str = "mean") -> torch.Tensor:
        """The training loss on a collated batch of the task's rows."""
        raise NotImplementedError

    def score(self, model: nn.Module, heads: TaskHeads, task: PreparedTask, batch_size: int,
              batching: Batching) -> list[Score]:
        """The task's measurements on its eval split; the first is the primary metric."""
        raise NotImplementedError
