"""What a run is, as data: the measurement protocol and the serialisable spec of one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import AdapterConfig
from ..config.experiment import ExperimentConfig, resolved_dict
from ..core.parse import from_dict
from ..store.folders import run_dir


@dataclass(frozen=True)
class Protocol:
    """How measurements are taken: `standard` (corrected) or `paper` (the reference code's)."""

    name: str
    train_pooling: str  # "last": the last real token; "final": position -1 of the padded batch
    eval_batch_size: int | None  # None: the config's; 1: one example at a time
    steps_in_examples: bool  # scheduler length counted in examples (the reference's bug)
    first_rows: bool  # subsets: the first N rows (paper) or a seeded shuffle (standard)
    task_overrides: bool  # apply each task's `paper:` overrides (the reference's splits)
    single_window: bool  # perplexity: one window over the first max_length tokens
    padding_side: str | None  # None: the tokenizer's own side (the reference's AutoTokenizer)

    @classmethod
    def of(cls, name: str) -> Protocol:
        if name == "paper":
            return cls("paper", "final", 1, steps_in_examples=True, first_rows=True, task_overrides=True,
                       single_window=True, padding_side=None)
        return cls("standard", "last", None, steps_in_examples=False, first_rows=False, task_overrides=False,
                   single_window=False, padding_side="right")


@dataclass(frozen=True)
class RunSpec:
    """One (method, seed) of an experiment: plain data, so it can run in another process.

    `config` is the resolved config (`resolved_dict`): paths absolute, built-in tasks expanded,
    labels explicit, so parsing it again anywhere gives the same experiment.
    """

    config: dict[str, Any]
    method_index: int
    seed: int
    out: str  # the experiment folder
    order: int | None = None  # index into the config's `orders`; None: the tasks as listed

    @classmethod
    def of(cls, cfg: ExperimentConfig, method_index: int, seed: int, out: Path, order: int | None = None) -> RunSpec:
        return cls(resolved_dict(cfg), method_index, seed, str(Path(out).resolve()), order)

    def task_order(self, cfg: ExperimentConfig) -> list[str] | None:
        """The task names in this run's training order; None when it is the config's own."""
        if self.order is None:
            return None
        names = cfg.orders[self.order]
        return None if names == [t.name for t in cfg.tasks] else names

    def experiment(self) -> ExperimentConfig:
        return from_dict(ExperimentConfig, self.config, "")

    def method(self, cfg: ExperimentConfig) -> AdapterConfig:
        return cfg.methods[self.method_index]

    @property
    def where(self) -> str:
        return f"methods[{self.method_index}]"

    def folder(self, cfg: ExperimentConfig) -> Path:
        order = self.order if self.task_order(cfg) is not None else None
        return run_dir(Path(self.out), self.method(cfg).display_label, self.seed, order)
