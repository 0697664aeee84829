"""Experience replay (Rolnick et al. 2019; Chaudhry et al. 2019) from a per-task episodic memory.

After each stage, `per_task` seeded training examples of that task go into the memory; every
later training step adds a seeded draw from the memory to the batch, each remembered example
scored by its own task (its own frozen head). The step's loss becomes the mean over current
and replayed examples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.env import module_seed
from ..core.errors import BenchError
from .base import Strategy

Replayed = list[tuple[str, list[int]]]  # (task, rows of its train split) per replayed task


def memory_indices(n: int, per_task: int, seed: int, task: str) -> list[int]:
    """The `per_task` rows of a task's training split kept for replay (seeded, no repeats)."""
    gen = torch.Generator().manual_seed(module_seed(seed, "replay:" + task))
    return torch.randperm(n, generator=gen)[:per_task].tolist()


class Replay(Strategy):
    name = "replay"
    help = "experience replay from a per-task episodic memory (Rolnick et al. 2019; Chaudhry et al. 2019)"
    options_spec = {
        "per_task": (int, None, "training examples kept of every finished task (seeded), mixed into later "
                                "stages' batches through their own task's head"),
        "batch_size": (int, None, "replayed examples per step; null = the stage's batch size"),
    }
    optional = ("batch_size",)

    def __init__(self, options, seed):
        super().__init__(options, seed)
        self.memory: dict[str, list[int]] = {}  # task -> rows of its train split, in task order
        self._sample: Callable[[], Replayed] | None = None

    @classmethod
    def suffix(cls, options):
        return f"+replay{options['per_task']}"

    @classmethod
    def check_tasks(cls, options, tasks, where):
        """It must be able to keep `per_task` examples of every task it will replay."""
        for t in tasks[:-1]:  # the last task is never replayed
            if options["per_task"] > len(t.train):
                raise BenchError(f"{where}.per_task: {options['per_task']} is larger than task {t.name!r} "
                                 f"({len(t.train)} training examples)")

    def sampler(self, stage: int, batch_size: int) -> Callable[[], Replayed] | None:
        """A sampler of one replayed mini-batch per step (seeded per stage), or None (no memory yet)."""
        if not self.memory:
            return None
        pool = [(t, i) for t, rows in self.memory.items() for i in rows]
        k = min(self.options.get("batch_size") or batch_size, len(pool))
        gen = torch.Generator().manual_seed(module_seed(self.seed, f"replay-sample:{stage}"))

        def sample() -> Replayed:
            picked = [pool[i] for i in torch.randperm(len(pool), generator=gen)[:k].tolist()]
            return [(t, [i for u, i in picked if u == t]) for t in self.memory if any(u == t for u, _ in picked)]

        return sample

    def before_stage(self, ctx) -> None:
        self._sample = self.sampler(ctx.stage.number, ctx.batch_size)

    def step(self, ctx, loss, examples):
        """The mean cross-entropy over the current batch (`loss`, a mean over `examples`) and the replayed rows."""
        if self._sample is None:
            return loss
        total, count = loss * examples, examples
        for task, rows in self._sample():
            total = total + ctx.loss(task, rows, reduction="sum")
            count += len(rows)
        return total / count

    def after_stage(self, ctx) -> None:
        self._sample = None
        for task in ctx.tasks:
            self.memory[task.name] = memory_indices(len(task.train), self.options["per_task"], self.seed, task.name)

    def state_dict(self):
        return {f"replay.{t}": torch.tensor(rows, dtype=torch.long) for t, rows in self.memory.items()}

    def load_state_dict(self, tensors, tasks, device):
        self.memory = {t: tensors[f"replay.{t}"].tolist() for t in tasks if f"replay.{t}" in tensors}

    def summary(self, tasks):
        return {**super().summary(tasks), "memory_examples": sum(len(r) for r in self.memory.values()),
                "memory_tokens": sum(len(tasks[t].train.ids[i]) for t, r in self.memory.items() for i in r)}
