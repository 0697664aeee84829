"""What the training loop and the plugins (adapter, strategy) see of the stage in flight."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config.experiment import ExecutionConfig, TrainConfig
from ..config.regimes import Stage
from ..core.protocol import Protocol
from ..sources.heads import TaskHeads
from .data import Batching, PreparedTask, batches
from .train import autocast


@dataclass
class StageContext:
    """One stage of one run (`core.hooks.StageContext` is what plugins may rely on)."""

    model: nn.Module
    modules: list[str]
    method: Any  # the adapter's options (AdapterConfig)
    heads: TaskHeads
    stage: Stage
    tasks: list[PreparedTask]  # the stage's
    by_name: dict[str, PreparedTask]  # every task of the run
    train: TrainConfig
    execution: ExecutionConfig
    batching: Batching
    protocol: Protocol
    seed: int
    where: str
    step_task: PreparedTask | None = None  # the step in flight's task and batch (set by `train_step`)
    step_batch: dict[str, torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    def collate(self, task: PreparedTask, rows: list[int]) -> dict[str, torch.Tensor]:
        """Rows of a task's training split as one batch, as its kind batches them."""
        return task.kind.collate(task, rows, self.batching)

    def mixed_precision(self):
        """The stage's forward passes' context: bf16 autocast under `precision: bf16`, else nothing."""
        return autocast(self.batching.device, self.train.precision)

    def batch_loss(self, task: PreparedTask, batch: dict[str, torch.Tensor], reduction: str = "mean",
                   mixed: bool = True) -> torch.Tensor:
        """The task's training loss on a collated batch, through its kind (under bf16 autocast if asked)."""
        kind = task.kind
        with self.mixed_precision() if mixed else contextlib.nullcontext():
            return kind.loss(self.model, self.heads, task, batch, self.protocol.train_pooling, reduction)

    def loss(self, task: str, rows: list[int], reduction: str = "mean", autocast: bool = True) -> torch.Tensor:
        """The training loss of rows of a task's training split (replay's, EWC's Fisher's)."""
        t = self.by_name[task]
        return self.batch_loss(t, self.collate(t, rows), reduction, mixed=autocast)

    def train_batches(self, task: str) -> list[list[int]]:
        """The task's training rows in length-sorted batches of the stage's batch size (no randomness)."""
        return batches([len(s) for s in self.by_name[task].train.ids], self.batch_size, shuffle=False)

