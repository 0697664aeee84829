"""Online elastic weight consolidation and its F = 1 special case, an L2 pull.

- `ewc` (Kirkpatrick et al. 2017, online form of Schwarz et al. 2018): after each stage, the
  diagonal empirical Fisher of the trainable tensors on that stage's training data (squared
  mini-batch gradients, averaged over batches, as Avalanche's EWC plugin) is folded into
  F <- decay * F + F_new and the weights are anchored (theta*); later stages add
  `lambda/2 * sum F (theta - theta*)^2` to every step's loss.
- `l2`: the same penalty with F = 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.errors import BenchError
from .base import Strategy


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable tensors by name (the adapter's; task heads live outside the model)."""
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


def diagonal_fisher(ctx, task: str) -> dict[str, torch.Tensor]:
    """Mean over the task's training batches (length-sorted, no randomness) of squared gradients."""
    params = trainable(ctx.model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    if not params:
        return fisher
    ctx.model.eval()
    groups = ctx.train_batches(task)
    for idx in groups:
        loss = ctx.loss(task, idx, autocast=False)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                fisher[name] += g.detach().pow(2)
    return {n: f / len(groups) for n, f in fisher.items()}


class EWC(Strategy):
    name = "ewc"
    help = "online elastic weight consolidation, diagonal Fisher (Kirkpatrick et al. 2017; Schwarz et al. 2018)"
    options_spec = {
        "lambda": (float, None, "weight L of the penalty L/2 * sum F (theta - theta*)^2"),
        "decay": (float, 1.0, "online EWC: F <- decay * F + F_new after each stage (Schwarz et al. 2018)"),
    }
    uses_fisher = True

    def __init__(self, options, seed):
        super().__init__(options, seed)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._penalty: Callable[[], torch.Tensor] | None = None

    @classmethod
    def check(cls, options, where):
        if options.get("decay", 1.0) > 1:
            raise BenchError(f"{where}.decay: must be <= 1, got {options['decay']!r}")

    def penalty(self, model: nn.Module) -> Callable[[], torch.Tensor] | None:
        """The regulariser added to every step's loss, or None (first stage: nothing anchored)."""
        if not self.anchor:
            return None
        params, lam = trainable(model), self.options["lambda"]
        fisher = self.fisher if self.uses_fisher else None
        return lambda: quadratic_penalty(params, self.anchor, fisher, lam)

    def before_stage(self, ctx) -> None:
        self._penalty = self.penalty(ctx.model)  # after the adapter's own before_stage (OSF re-wraps)

    def step(self, ctx, loss, examples):
        return loss if self._penalty is None else loss + self._penalty()

    def after_stage(self, ctx) -> None:
        self._penalty = None
        if self.uses_fisher:
            decay = self.options["decay"]
            for task in ctx.tasks:
                new = diagonal_fisher(ctx, task.name)
                self.fisher = {n: decay * self.fisher[n] + f if n in self.fisher else f for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in trainable(ctx.model).items()}

    def state_dict(self):
        return {**{f"fisher.{n}": f for n, f in self.fisher.items()}, **{f"anchor.{n}": a for n, a in self.anchor.items()}}

    def load_state_dict(self, tensors, tasks, device):
        self.fisher = {k.removeprefix("fisher."): v.to(device) for k, v in tensors.items() if k.startswith("fisher.")}
        self.anchor = {k.removeprefix("anchor."): v.to(device) for k, v in tensors.items() if k.startswith("anchor.")}

    def summary(self, tasks):
        floats = sum(v.numel() for v in [*self.fisher.values(), *self.anchor.values()])
        return {**super().summary(tasks), "memory_floats": floats}


class L2(EWC):
    name = "l2"
    help = "L2 pull towards the weights after the previous stage (EWC with F = 1)"
    options_spec = {"lambda": (float, None, "weight L of the penalty L/2 * sum (theta - theta*)^2 (EWC with F = 1)")}
    uses_fisher = False
