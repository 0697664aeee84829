"""CURLoRA (Fawi 2024): fixed C and R sampled from W with inverted norm probabilities, train U."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.metrics import Row
from ..core.parse import positive
from .base import (
    Adapter,
    RankedConfig,
    check_rank,
    find_targets,
    freeze,
    module_seed,
    register,
    set_module,
)


@dataclass
class CURLoRAConfig(RankedConfig):
    """CURLoRA options."""

    eps: float = field(
        default=1e-3,
        metadata={"help": "smoothing in q = 1/(p + eps); 1e-3 as the reference code, 0 = paper formula"},
    )
    sampling: Literal["inverse", "normal", "uniform"] = field(
        default="inverse",
        metadata={"help": "inverse: q ~ 1/(p+eps) (paper); normal: q = p (classic CUR); uniform"},
    )
    replacement: bool = field(default=True, metadata={"help": "sample indices with replacement (paper)"})

    def default_label(self) -> str:
        label = f"curlora-r{self.rank}"
        if self.sampling != "inverse":
            label += f"-{self.sampling}"
        if self.eps != 1e-3 and self.sampling == "inverse":
            label += f"-eps{self.eps:g}"
        if not self.replacement:
            label += "-norepl"
        return label

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "eps", self.eps, allow_zero=True)


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


class CURLoRALayer(nn.Module):
    """base(x) + alpha * x (C U R), computed factored: never the m x n product.

    C = W[:, cols] and R = W[rows, :] of the *stored* weight W (out x in for nn.Linear,
    in x out for GPT-2 Conv1D), so the update has the stored weight's shape and orientation.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, cols, rows, q_cols, q_rows):
        super().__init__()
        self.base_layer = base
        self.alpha = alpha
        self.transposed = isinstance(base, Conv1D)  # Conv1D: y = x W; Linear: y = x W^T
        w = base.weight.detach()
        self.register_buffer("curlora_C", w[:, cols].clone().contiguous())
        self.register_buffer("curlora_R", w[rows, :].clone().contiguous())
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


def _sampling(axis: str, key: str):
    def read(s) -> float | None:
        summary = s.diagnostics.get("sampling", {}).get("summary")
        return summary[axis][key] if summary else None

    return read


def _duplicates(s) -> float | None:
    summary = s.diagnostics.get("sampling", {}).get("summary")
    return summary["columns"]["duplicates_total"] + summary["rows"]["duplicates_total"] if summary else None


@register
class CURLoRA(Adapter):
    name = "curlora"
    config_cls = CURLoRAConfig
    help = "CURLoRA: fixed C, R from W (inverted norm sampling), trains U (r x r) from zero"
    prefixes = ("curlora_",)

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        self.check(model, targets, cfg, where)
        names = find_targets(model, targets, where)
        freeze(model)
        for name in names:
            base = model.get_submodule(name)
            cols, rows, q_cols, q_rows = cur_indices(
                base.weight, cfg.rank, cfg.sampling, cfg.eps, cfg.replacement, module_seed(seed, name)
            )
            set_module(model, name, CURLoRALayer(base, cfg.rank, cfg.alpha, cols, rows, q_cols, q_rows))
        for pname, p in model.named_parameters():
            p.requires_grad_("curlora_U" in pname)
        return names

    def diagnostics(self, model, modules):
        return {"sampling": curlora_sampling(model, modules)}

    def report_rows(self):
        return [
            Row("CUR columns: KL(q ‖ uniform), mean", "kl", _sampling("columns", "kl_from_uniform_mean")),
            Row("CUR rows: KL(q ‖ uniform), mean", "kl", _sampling("rows", "kl_from_uniform_mean")),
            Row("CUR columns: max/min probability, worst matrix", "ratio", _sampling("columns", "max_min_ratio_max")),
            Row("CUR rows: max/min probability, worst matrix", "ratio", _sampling("rows", "max_min_ratio_max")),
            Row("CUR duplicate indices (columns + rows)", "count", _duplicates),
        ]

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        return {"curlora_indices": {
            name: {"columns": tensors[f"{name}.curlora_col_idx"].tolist(),
                   "rows": tensors[f"{name}.curlora_row_idx"].tolist()}
            for name in modules
        }}
