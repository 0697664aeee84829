"""How far an adapter moved the weights: ‖ΔW‖_F / ‖W‖_F per adapted matrix.

The critique this answers: a method can keep perplexity flat simply because its update barely
moves the weights. The relative change per matrix puts every method on the same scale.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def in_features(module: nn.Module) -> int:
    w = module.weight
    return w.shape[0] if isinstance(module, Conv1D) else w.shape[1]


@torch.inference_mode()
def effective_weight(module: nn.Module) -> torch.Tensor:
    """The linear map a layer applies, as an (in, out) matrix: module(I) - module(0).

    Works for any layer whatever its parameterisation (PEFT LoRA/DoRA/VeRA/PiSSA wrappers,
    CURLoRA, a plain Linear or Conv1D trained in place); the bias cancels.
    """
    weight = getattr(module, "base_layer", module).weight
    n = in_features(getattr(module, "base_layer", module))
    eye = torch.eye(n, dtype=weight.dtype, device=weight.device)
    return module(eye) - module(torch.zeros_like(eye[:1]))


def snapshot(model: nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    """Effective weights at init (on CPU), to measure later changes against.

    Layers with an exact `delta_weight()` (CURLoRA) need none: their frozen base is the reference.
    """
    out = {}
    for name in modules:
        m = model.get_submodule(name)
        if not hasattr(m, "delta_weight"):
            out[name] = effective_weight(m).float().cpu()
    return out


@torch.inference_mode()
def relative_drift(model: nn.Module, modules: list[str], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """‖ΔW‖_F / ‖W0‖_F for each adapted module, ΔW the change of its effective weight since init."""
    was_training = model.training
    model.eval()
    out = {}
    for name in modules:
        m = model.get_submodule(name)
        if hasattr(m, "delta_weight"):
            delta, w0 = m.delta_weight().float(), m.base_layer.weight.float()
        else:
            w0 = reference[name]
            delta = effective_weight(m).float().cpu() - w0
        out[name] = float(delta.norm() / w0.norm())
    model.train(was_training)
    return out


@torch.inference_mode()
def weight_pair(model: nn.Module, name: str, reference: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(W0, W) of one adapted module as (out, in) float matrices on CPU: its weight at init and now
    (the base plus the exact delta where the layer has one, else the effective weight)."""
    m = model.get_submodule(name)
    if hasattr(m, "delta_weight"):
        base = m.base_layer
        w0 = base.weight.float()
        w = w0 + m.delta_weight().float()
        if isinstance(base, Conv1D):  # stored (in, out)
            w0, w = w0.T, w.T
        return w0.cpu(), w.cpu()
    return reference[name].T, effective_weight(m).float().cpu().T


def intruder_dimensions(w0: torch.Tensor, w: torch.Tensor, top_k: int, epsilons: list[float]) -> list[int]:
    """For each threshold, how many of the `top_k` highest-ranking left singular vectors of the
    fine-tuned `w` are intruder dimensions: their largest absolute cosine similarity with every
    left singular vector of the pre-trained `w0` is below it (Shuttleworth et al. 2024, "LoRA vs
    Full Fine-tuning: An Illusion of Equivalence", Definition 1; the same test as PEFT's
    `peft/tuners/lora/intruders.py`, `reduce_intruder_dimension`: `(U_merged.T @ U_base).abs()
    .max(dim=1)` over the first top_k). `w0`, `w`: (out, in)."""
    u0 = torch.linalg.svd(w0.float(), full_matrices=False).U  # fp32: a cosine against a threshold
    u = torch.linalg.svd(w.float(), full_matrices=False).U[:, :top_k]
    best = (u.T @ u0).abs().max(dim=1).values
    return [int((best < eps).sum()) for eps in epsilons]
