"""CURLoRA's layer and its sampling: the torch half of `adapters/curlora.py`."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def sampling_probabilities(norms_sq: torch.Tensor, sampling: str, eps: float) -> torch.Tensor:
    """Column (or row) sampling distribution from squared norms."""
    p = norms_sq / norms_sq.sum()
    if sampling == "normal":
        return p
    if sampling == "uniform":
        return torch.full_like(p, 1.0 / p.numel())
    inv = 1.0 / (p + eps)
    return inv / inv.sum()


def cur_indices(
    weight: torch.Tensor, rank: int, sampling: str, eps: float, replacement: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample r column and r row indices of `weight`; return (cols, rows, q_cols, q_rows)."""
    w = weight.detach().to(torch.float64)
    q_cols = sampling_probabilities(w.pow(2).sum(dim=0), sampling, eps)
    q_rows = sampling_probabilities(w.pow(2).sum(dim=1), sampling, eps)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    cols = torch.multinomial(q_cols.cpu(), rank, replacement=replacement, generator=gen)
    rows = torch.multinomial(q_rows.cpu(), rank, replacement=replacement, generator=gen)
    return cols, rows, q_cols.float(), q_rows.float()


def random_cr(weight: torch.Tensor, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The control for the CUR selection: C (m x r) and R (r x n) Gaussian, each entry with W's
    RMS entry as its scale (so their columns and rows are as long as W's on average), from a
    generator seeded by `seed`."""
    w = weight.detach()
    scale = float(w.double().pow(2).mean().sqrt())
    gen = torch.Generator(device="cpu").manual_seed(seed)
    m, n = w.shape
    c = torch.randn(m, rank, generator=gen, dtype=torch.float64) * scale
    r = torch.randn(rank, n, generator=gen, dtype=torch.float64) * scale
    return c.to(w.dtype).to(w.device), r.to(w.dtype).to(w.device)


class CURLoRALayer(nn.Module):
    """base(x) + alpha * x (C U R), computed factored: never the m x n product.

    C = W[:, cols] and R = W[rows, :] of the *stored* weight W (out x in for nn.Linear,
    in x out for GPT-2 Conv1D), so the update has the stored weight's shape and orientation;
    `c`/`r`, when given, replace them (the random control, `cr: random`).
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, cols, rows, q_cols, q_rows, c=None, r=None):
        super().__init__()
        self.base_layer = base
        self.alpha = alpha
        self.transposed = isinstance(base, Conv1D)  # Conv1D: y = x W; Linear: y = x W^T
        w = base.weight.detach()
        self.register_buffer("curlora_C", (w[:, cols] if c is None else c).clone().contiguous())
        self.register_buffer("curlora_R", (w[rows, :] if r is None else r).clone().contiguous())
        self.register_buffer("curlora_col_idx", cols.clone())
        self.register_buffer("curlora_row_idx", rows.clone())
        # sampling distributions kept (non-persistent) for the drift diagnostics
        self.register_buffer("curlora_q_cols", q_cols, persistent=False)
        self.register_buffer("curlora_q_rows", q_rows, persistent=False)
        self.curlora_U = nn.Parameter(torch.zeros(rank, rank, dtype=w.dtype, device=w.device))

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def delta_weight(self) -> torch.Tensor:
        return self.alpha * (self.curlora_C @ self.curlora_U @ self.curlora_R)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        x = x.to(self.curlora_U.dtype)
        if self.transposed:  # x (.., m) @ C (m, r) @ U @ R (r, n)
            upd = ((x @ self.curlora_C) @ self.curlora_U) @ self.curlora_R
        else:  # x (.., in) @ R^T (in, r) @ U^T @ C^T (r, out)
            upd = ((x @ self.curlora_R.T) @ self.curlora_U.T) @ self.curlora_C.T
        return out + self.alpha * upd.to(out.dtype)


def kl_from_uniform(q: torch.Tensor) -> float:
    """KL(q ‖ uniform) in nats: 0 for uniform sampling, log(n) at most."""
    q = q.double()
    n = q.numel()
    nz = q[q > 0]
    return float((nz * (nz * n).log()).sum())


def sampling_stats(q: torch.Tensor, idx: torch.Tensor) -> dict:
    """Diagnostics of one CUR sampling distribution and the indices drawn from it."""
    q = q.double()
    qmin = float(q.min())
    return {
        "kl_from_uniform": kl_from_uniform(q),
        "max_min_ratio": float(q.max()) / qmin if qmin > 0 else math.inf,
        "duplicates": int(idx.numel() - torch.unique(idx).numel()),
        "indices": int(idx.numel()),
    }


def curlora_sampling(model: nn.Module, modules: list[str]) -> dict:
    """Per-module column/row sampling diagnostics of CURLoRA layers, with aggregates over modules."""
    per = {}
    for name in modules:
        m = model.get_submodule(name)
        if isinstance(m, CURLoRALayer):
            per[name] = {"columns": sampling_stats(m.curlora_q_cols, m.curlora_col_idx),
                         "rows": sampling_stats(m.curlora_q_rows, m.curlora_row_idx)}
    if not per:
        return {}
    agg = {}
    for axis in ("columns", "rows"):
        stats = [v[axis] for v in per.values()]
        agg[axis] = {
            "kl_from_uniform_mean": sum(s["kl_from_uniform"] for s in stats) / len(stats),
            "max_min_ratio_max": max(s["max_min_ratio"] for s in stats),
            "duplicates_total": sum(s["duplicates"] for s in stats),
            "indices_total": sum(s["indices"] for s in stats),
        }
    return {"summary": agg, "per_module": per}
