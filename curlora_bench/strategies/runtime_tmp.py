"""Continual-learning strategies at run time: what a strategy keeps between stages and how it
changes a stage's training.

- `replay` (Rolnick et al. 2019; Chaudhry et al. 2019): after each stage, `per_task` seeded
  training examples of that task go into an episodic memory; every later training step adds a
  seeded draw from the memory to the batch, each replayed example classified by its own
  task's (frozen) head. The loss is the mean over current and replayed examples.
- `ewc` (Kirkpatrick et al. 2017, online form of Schwarz et al. 2018): after each stage, the
  diagonal empirical Fisher of the trainable tensors on that stage's training data (squared
  mini-batch gradients, averaged over batches, as Avalanche's EWC plugin) is folded into
  F <- decay * F + F_new and the weights are anchored (theta*); later stages add
  `lambda/2 * sum F (theta - theta*)^2`.
- `l2`: the same penalty with F = 1.

Every random draw uses its own generator seeded from the run seed, so `naive` runs draw
exactly what they drew before strategies existed. The state (memory indices, Fisher,
anchors) is saved with every stage checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..adapters.base import module_seed
from ..run.data import Batching, PreparedTask, Split, batches, collate
from ..sources.heads import TaskHeads, classify
from .base import Strategy

Replayed = list[tuple[str, Split, list[int]]]  # (task, its train split, rows) per replayed task


def memory_indices(n: int, per_task: int, seed: int, task: str) -> list[int]:
    """The `per_task` rows of a task's training split kept for replay (seeded, no repeats)."""
    gen = torch.Generator().manual_seed(module_seed(seed, "replay:" + task))
    return torch.randperm(n, generator=gen)[:per_task].tolist()


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable tensors by name (the adapter's; heads live outside the model)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def quadratic_penalty(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                      fisher: dict[str, torch.Tensor] | None, lam: float) -> torch.Tensor:
    """lam/2 * sum F (theta - theta*)^2 over the anchored tensors (F = 1 where `fisher` is None)."""
    total = torch.zeros((), device=next(iter(anchor.values())).device) if anchor else torch.zeros(())
    for name, a in anchor.items():
        if name not in params or params[name].shape != a.shape:
            continue  # a tensor the adapter replaced between stages (PEFT OSF's re-wrap)
        sq = (params[name] - a).pow(2)
        total = total + (sq * fisher[name] if fisher is not None else sq).sum()
    return lam / 2 * total


def diagonal_fisher(model: nn.Module, heads: TaskHeads, task: PreparedTask, batch_size: int,
                    batching: Batching, pooling: str) -> dict[str, torch.Tensor]:
    """Mean over the task's training batches (length-sorted, no randomness) of squared gradients."""
    params = trainable(model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    if not params:
        return fisher
    model.eval()
    split = task.train
    groups = batches([len(s) for s in split.ids], batch_size, shuffle=False)
    for idx in groups:
        batch = collate(split, idx, batching.pad_id, batching.device, batching.padding_side)
        logits = classify(model, heads, task.name, batch["input_ids"], batch["attention_mask"], pooling)
        loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                fisher[name] += g.detach().pow(2)
    return {n: f / len(groups) for n, f in fisher.items()}


class StrategyState:
    """What a run's strategy keeps between stages, and how it joins a stage's training."""

    def __init__(self, strategy: Strategy, seed: int) -> None:
        self.strategy = strategy
        self.seed = seed
        self.memory: dict[str, list[int]] = {}  # replay: task -> rows of its train split, in task order
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    @property
    def name(self) -> str:
        return self.strategy.name

    # -- during a stage -------------------------------------------------------------------
    def penalty(self, model: nn.Module) -> Callable[[], torch.Tensor] | None:
        """The regulariser added to every step's loss, or None (naive, replay, first stage)."""
        if self.name not in ("ewc", "l2") or not self.anchor:
            return None
        params, lam = trainable(model), self.strategy.options["lambda"]
        fisher = self.fisher if self.name == "ewc" else None
        return lambda: quadratic_penalty(params, self.anchor, fisher, lam)

    def replay(self, tasks: dict[str, PreparedTask], stage: int, batch_size: int) -> Callable[[], Replayed] | None:
        """A sampler of one replayed mini-batch per step (seeded per stage), or None."""
        if self.name != "replay" or not self.memory:
            return None
        pool = [(t, i) for t, rows in self.memory.items() for i in rows]
        k = min(self.strategy.options.get("batch_size") or batch_size, len(pool))
        gen = torch.Generator().manual_seed(module_seed(self.seed, f"replay-sample:{stage}"))

        def sample() -> Replayed:
            picked = [pool[i] for i in torch.randperm(len(pool), generator=gen)[:k].tolist()]
            return [(t, tasks[t].train, [i for u, i in picked if u == t]) for t in self.memory
                    if any(u == t for u, _ in picked)]

        return sample

    # -- after a stage ------------------------------------------------------------------
    def after_stage(self, model: nn.Module, heads: TaskHeads, task: PreparedTask, batch_size: int,
                    batching: Batching, pooling: str) -> None:
        if self.name == "replay":
            self.memory[task.name] = memory_indices(len(task.train), self.strategy.options["per_task"], self.seed,
                                                    task.name)
        elif self.name in ("ewc", "l2"):
            if self.name == "ewc":
                new = diagonal_fisher(model, heads, task, batch_size, batching, pooling)
                decay = self.strategy.options["decay"]
                self.fisher = {n: decay * self.fisher[n] + f if n in self.fisher else f for n, f in new.items()}
            self.anchor = {n: p.detach().clone() for n, p in trainable(model).items()}

    # -- checkpoints and summary -----------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"replay.{t}": torch.tensor(rows, dtype=torch.long) for t, rows in self.memory.items()}
        out.update({f"fisher.{n}": f for n, f in self.fisher.items()})
        out.update({f"anchor.{n}": a for n, a in self.anchor.items()})
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor], tasks: list[str], device: torch.device) -> None:
        """Restore from a checkpoint (`tasks`: the finished ones, in order, for the memory's order)."""
        self.memory = {t: tensors[f"replay.{t}"].tolist() for t in tasks if f"replay.{t}" in tensors}
        self.fisher = {k.removeprefix("fisher."): v.to(device) for k, v in tensors.items() if k.startswith("fisher.")}
        self.anchor = {k.removeprefix("anchor."): v.to(device) for k, v in tensors.items() if k.startswith("anchor.")}

    def summary(self, tasks: dict[str, PreparedTask]) -> dict | None:
        """What the strategy kept: replayed examples and tokens, or floats of Fisher + anchors."""
        if self.name == "naive":
            return None
        out = {"name": self.name, **self.strategy.options}
        if self.name == "replay":
            out["memory_examples"] = sum(len(r) for r in self.memory.values())
            out["memory_tokens"] = sum(len(tasks[t].train.ids[i]) for t, r in self.memory.items() for i in r)
        else:
            out["memory_floats"] = sum(v.numel() for v in [*self.fisher.values(), *self.anchor.values()])
        return out
