"""How far an adapter moved the weights: ‖ΔW‖_F / ‖W‖_F per adapted matrix, and CURLoRA's sampling.

The critique this answers: a method can keep perplexity flat simply because its update barely
moves the weights. The relative change per matrix puts every method on the same scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def in_features(module: nn.Module) -> int:
    w = module.weight
    return w.shape[0] if isinstance(module, Conv1D) else w.shape[1]


@torch.inference_mode()
def effective_delta(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(ΔW, W0) of a wrapped layer, both as (in, out): module(I) - base_layer(I).

    Works for any wrapper that keeps the frozen layer as `base_layer` (PEFT LoRA/DoRA/VeRA,
    CURLoRA), whatever its internal parameterisation; an exact `delta_weight()` is used when
    the layer has one.
    """
    base = module.base_layer
    w0 = base.weight
    if isinstance(base, Conv1D):
        w0_io = w0
    else:
        w0_io = w0.T
    if hasattr(module, "delta_weight"):
        d = module.delta_weight()
        return (d if isinstance(base, Conv1D) else d.T), w0_io
    eye = torch.eye(in_features(base), dtype=w0.dtype, device=w0.device)
    return module(eye) - base(eye), w0_io


def relative_drift(model: nn.Module, modules: list[str], reference: dict[str, torch.Tensor] | None) -> dict[str, float]:
    """‖ΔW‖_F / ‖W0‖_F for each adapted module.

    `reference` holds W0 for methods that train the weights in place (`full`); wrapped layers
    are measured against their frozen `base_layer`.
    """
    was_training = model.training
    model.eval()
    out = {}
    for name in modules:
        m = model.get_submodule(name)
        if reference is not None and name in reference:
            w0 = reference[name]
            delta = m.weight.detach().float() - w0.to(m.weight.device).float()
        elif hasattr(m, "base_layer"):
            delta, w0 = effective_delta(m)
        else:
            continue
        out[name] = float(delta.float().norm() / w0.float().norm())
    model.train(was_training)
    return out


def summarise(per_module: dict[str, float]) -> dict:
    vals = list(per_module.values())
    if not vals:
        return {"mean": 0.0, "max": 0.0, "modules": 0}
    return {"mean": sum(vals) / len(vals), "max": max(vals), "modules": len(vals)}


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
    """Per-module column/row sampling diagnostics of CURLoRA layers, with means over modules."""
    per = {}
    for name in modules:
        m = model.get_submodule(name)
        if not hasattr(m, "curlora_q_cols"):
            continue
        per[name] = {
            "columns": sampling_stats(m.curlora_q_cols, m.curlora_col_idx),
            "rows": sampling_stats(m.curlora_q_rows, m.curlora_row_idx),
        }
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
