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


def orientation(base: nn.Module) -> tuple[bool, int, int]:
    """(transposed, out_features, in_features) of a Linear or Conv1D layer: its stored weight is
    (in, out) for Conv1D, (out, in) for Linear."""
    transposed = isinstance(base, Conv1D)
    rows, cols = base.weight.shape
    return (transposed, cols, rows) if transposed else (transposed, rows, cols)


class TaskLoRALayer(nn.Module):
    """base(x) + alpha * sum over tasks of x A_t^T B_t^T, factored (never an out x in product)."""

    def __init__(self, base: nn.Module, alpha: float):
        super().__init__()
        self.base_layer = base
        self.alpha = alpha
        self.transposed, self.out_features, self.in_features = orientation(base)
        w = base.weight
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


# -- InfLoRA's designed A and its DualGPM subspace (github.com/liangyanshuo/InfLoRA) --------------
def design_a(cov: torch.Tensor, basis: torch.Tensor, retain: bool, rank: int, first: bool) -> torch.Tensor:
    """InfLoRA's A for a new task (r x in) from the input covariance `cov` (in x in) of the task's
    inputs to the layer: the top `rank` left singular vectors of the covariance with the kept
    subspace `basis` (in x k) projected out (`remove`) or kept alone (`retain`), over sqrt(3)
    (`methods/inflora.py`, `_train`, lines 122-158; the first task: the covariance itself)."""
    m = cov.double()
    if not first:
        p = basis.double() @ basis.double().T
        m = p @ m if retain else m - p @ m
    u = torch.linalg.svd(m, full_matrices=False).U
    return u[:, :rank].T / math.sqrt(3)


def _svd(m: torch.Tensor, full: bool = False):
    return torch.linalg.svd(m, full_matrices=full)


def update_dualgpm(cov: torch.Tensor, basis: torch.Tensor, retain: bool, threshold: float,
                   first: bool) -> tuple[torch.Tensor, bool]:
    """The kept subspace after a task, InfLoRA's `update_DualGPM` (`methods/inflora.py`, lines
    321-412) on one layer: `cov` the task's input covariance, `basis` (in x k) and `retain` the
    subspace so far. Returns the new (basis, retain). `remove`: the basis spans the earlier
    tasks' inputs, grown by the new task's residual directions until `threshold` of its energy
    is covered; once it is over half the dimension it is swapped for its complement, `retain`:
    the basis spans the space still free, shrunk by the directions the new task needs."""
    cov, basis = cov.double(), basis.double()
    n = cov.shape[0]
    if first:
        u, s, _ = _svd(cov)
        ratio = s**2 / (s**2).sum()
        r = int((torch.cumsum(ratio, 0) < threshold).sum())
        # their first-task branch marks a basis of r >= n/2 top directions `retain`, which the
        # summary's assertion then refuses; kept as `remove` here, the swap below takes its complement
        basis, retain = u[:, : max(r, 1)], False
    elif not retain:
        total = (_svd(cov).S ** 2).sum()
        u, s, _ = _svd(cov - basis @ basis.T @ cov)
        ratio = s**2 / total
        accumulated, r = float((total - (s**2).sum()) / total), 0
        for value in ratio.tolist():
            if accumulated >= threshold:
                break
            accumulated += value
            r += 1
        if r:
            basis = torch.cat([basis, u[:, :r]], 1)[:, :n]
    else:
        total = (_svd(cov).S ** 2).sum()
        u, s, _ = _svd(basis @ basis.T @ cov)
        ratio = s**2 / total
        accumulated, r = float((s**2).sum() / total), 0
        for value in ratio.tolist():
            if accumulated < 1 - threshold:
                break
            accumulated -= value
            r += 1
        if r:
            k = basis.shape[1]
            basis = _svd(basis - u[:, :r] @ u[:, :r].T @ basis, full=True).U[:, : k - r]
    if not retain and basis.shape[1] > n / 2:  # the "Gradient Constraints Summary" swap
        basis, retain = _svd(basis, full=True).U[:, basis.shape[1]:], True
    return basis, retain


def input_covariances(model: nn.Module, modules: list[str], batches) -> dict[str, torch.Tensor]:
    """Each adapted layer's mean x x^T (in x in) over the real (non-padding) tokens of `batches`,
    (input_ids, attention_mask) pairs run through the model's transformer body in eval mode."""
    from ..sources.models import backbone

    sums: dict[str, torch.Tensor] = {}
    mask: list[torch.Tensor] = []

    def hook(name):
        def keep(_module, args):
            x = args[0].detach()
            x = x[mask[0]] if x.shape[:-1] == mask[0].shape else x.reshape(-1, x.shape[-1])
            x = x.double()
            sums[name] = sums[name] + x.T @ x if name in sums else x.T @ x
        return keep

    handles = [model.get_submodule(name).register_forward_pre_hook(hook(name)) for name in modules]
    was_training, tokens = model.training, 0
    model.eval()
    try:
        with torch.no_grad():
            for ids, attention in batches:
                mask[:] = [attention.bool()]
                backbone(model)(input_ids=ids, attention_mask=attention, use_cache=False,
                                position_ids=(attention.long().cumsum(-1) - 1).clamp(min=0))
                tokens += int(attention.sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: s / max(tokens, 1) for name, s in sums.items()}
