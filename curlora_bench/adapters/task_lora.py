"""A layer with one LoRA per task, summed: the torch half of `adapters/olora.py` and
`adapters/inflora.py`.

Task t's update is alpha * B_t A_t (A_t: r x in, B_t: out x r, B_t zero when it is added), and the
layer applies every task's so far: y = base(x) + alpha * sum_t x A_t^T B_t^T. Only the newest
task's tensors may train; earlier ones are kept frozen. O-LoRA trains A_t and B_t, InfLoRA only
B_t (its A_t is designed from the task's inputs). The layer also carries InfLoRA's kept subspace
(`tasklora_basis`, in x k, and whether it is the space to *remove* from the inputs or the one to
*retain*), empty for O-LoRA, so checkpoints and exports hold every piece of per-task state.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


class TaskLoRALayer(nn.Module):
    """base(x) + alpha * sum over tasks of x A_t^T B_t^T, factored (never an out x in product)."""

    def __init__(self, base: nn.Module, alpha: float):
        super().__init__()
        self.base_layer = base
        self.alpha = alpha
        self.transposed = isinstance(base, Conv1D)  # stored weight: (in, out) for Conv1D, (out, in) for Linear
        w = base.weight
        self.out_features, self.in_features = (w.shape[1], w.shape[0]) if self.transposed else tuple(w.shape)
        self.tasklora_A = nn.ParameterList()
        self.tasklora_B = nn.ParameterList()
        # InfLoRA's kept subspace of the earlier tasks' inputs (in x k; k = 0 until a task is kept)
        # and its kind: 1 = `retain` (the basis spans the space left free), 0 = `remove`
        self.register_buffer("tasklora_basis", torch.zeros(self.in_features, 0, device=w.device))
        self.register_buffer("tasklora_retain", torch.zeros((), device=w.device))

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def tasks(self) -> int:
        return len(self.tasklora_A)

    def add_task(self, a: torch.Tensor, train_a: bool) -> None:
        """A new task's LoRA: A = `a` (r x in), B = 0 (so the layer's output is unchanged); every
        earlier task's tensors frozen, the new B trainable, the new A as `train_a` says."""
        for p in (*self.tasklora_A, *self.tasklora_B):
            p.requires_grad_(False)
        w = self.base_layer.weight
        self.tasklora_A.append(nn.Parameter(a.detach().to(w.device, w.dtype).clone(), requires_grad=train_a))
        self.tasklora_B.append(nn.Parameter(torch.zeros(self.out_features, a.shape[0], device=w.device, dtype=w.dtype)))

    def delta_weight(self) -> torch.Tensor:
        """alpha * sum_t B_t A_t in the stored weight's orientation (out x in; in x out for Conv1D)."""
        a, b = torch.cat(list(self.tasklora_A), 0), torch.cat(list(self.tasklora_B), 1)
        delta = self.alpha * (b @ a)
        return delta.T if self.transposed else delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        a, b = torch.cat(list(self.tasklora_A), 0), torch.cat(list(self.tasklora_B), 1)
        upd = (x.to(a.dtype) @ a.T) @ b.T
        return out + self.alpha * upd.to(out.dtype)


def kaiming_a(rank: int, in_features: int, seed: int) -> torch.Tensor:
    """A (r x in) as PEFT's LoRA, and O-LoRA's copy of it, draws it: kaiming-uniform with
    a = sqrt(5), from a generator seeded by `seed` (never the global RNG)."""
    a = torch.empty(rank, in_features)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=torch.Generator().manual_seed(seed))
    return a


def layers(model: nn.Module, modules: list[str]) -> list[tuple[str, TaskLoRALayer]]:
    return [(name, model.get_submodule(name)) for name in modules]


def grow(model: nn.Module, modules: list[str], tasks: int, rank: int, train_a: bool) -> None:
    """Give every layer `tasks` task slots (zeros; a checkpoint's tensors are loaded into them)."""
    for _, layer in layers(model, modules):
        while layer.tasks < tasks:
            layer.add_task(torch.zeros(rank, layer.in_features), train_a)
