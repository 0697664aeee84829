"""MIGU, magnitude-based gradient updating (Du et al. 2024, "Unlocking Continual Learning Abilities
in Language Models"): each step, a trained linear layer updates only the output units its
outputs were large on.

As the authors' code (wenyudu/MIGU@3f3b9f0) does it:
- which magnitudes: a forward hook on every linear layer sums |output| over every position of
  the step's batch (padding included), per output unit: `torch.sum(output.reshape(-1,
  hidden_dim).abs(), dim=0)`, accumulated over the step's forward passes and reset after the
  optimizer step (src/uie_trainer_ft.py lines 445-463 and 597; src/uie_trainer_lora.py lines
  444-461 hook PEFT LoRA's `lora_A.default` and `lora_B.default`);
- the threshold rule: a unit's gradient is kept where its magnitude is at least the
  `threshold`-quantile of its layer's magnitudes, `activation >= torch.quantile(activation,
  ini_threshold)` (src/accelerate_local.py lines 21-29; `ini_threshold` 0.7 in
  scripts/standard_benchmark_ft.sh and scripts/standard_benchmark_lora.sh): about the top
  1 - threshold of the units keep theirs;
- which parameters: the layer's weight gradient, row by row over its output units
  (`module.weight.grad *= importance_mask.unsqueeze(dim=-1)`, lines 13-18), after backward
  and before clipping and the optimizer step (lines 32-59, `backward_full_tuning`, called
  where the trainer's backward is); biases are not masked;
- when: from the second task on (`is_first_task`, lines 36 and uie_trainer_ft.py line 443):
  the first stage trains as it would without MIGU.

Here "every linear layer" is every `nn.Linear` (and transformers' `Conv1D`, GPT-2's, whose
weight is stored transposed: its columns are masked) whose weight trains: PEFT LoRA's and
DoRA's `lora_A` / `lora_B`, and the target matrices under `full`. A method that trains no
such layer (CURLoRA's U, VeRA's scaling vectors) is refused before its first step. The
published LoRA path (`backward_lora_tuning`, lines 61-111) masks only under a clustering
variant that the paper's MIGU does not use; the full-tuning rule above is applied to the LoRA
matrices it hooks. The magnitudes of a layer recomputed under gradient checkpointing are
counted twice, which leaves its quantile mask unchanged. Nothing is kept between steps, so
nothing is saved with a checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import BenchError
from .base import Strategy


def trained_linears(model: nn.Module) -> dict[str, tuple[nn.Module, int]]:
    """Every linear layer whose weight trains, by name: (layer, the weight's output-unit axis)."""
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or not weight.requires_grad or weight.dim() != 2:
            continue
        if isinstance(module, nn.Linear):
            out[name] = (module, 0)
        elif type(module).__name__ == "Conv1D":  # transformers' GPT-2 layer: x @ weight, (in, out)
            out[name] = (module, 1)
    return out


def importance_mask(magnitude: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where a unit's magnitude is at least the `threshold`-quantile of the layer's, else 0."""
    return (magnitude >= torch.quantile(magnitude, threshold)).to(magnitude.dtype)


class MIGU(Strategy):
    name = "migu"
    help = ("magnitude-based gradient updating: from the second stage on, a trained linear layer's weight "
            "gradient is kept only on the output units with the largest output magnitudes (Du et al. 2024)")
    options_spec = {
        "threshold": (float, 0.7, "quantile of a layer's output magnitudes (summed |output| per unit over the "
                                  "batch) below which a unit's weight gradient is zeroed (MIGU's ini_threshold)"),
    }

    def __init__(self, options, seed):
        super().__init__(options, seed)
        self.layers: dict[str, tuple[nn.Module, int]] = {}
        self.magnitude: dict[str, torch.Tensor] = {}
        self.handles: list = []

    @classmethod
    def suffix(cls, options):
        return f"+migu{options['threshold']:g}"

    @classmethod
    def check(cls, options, where):
        if options["threshold"] > 1:
            raise BenchError(f"{where}.threshold: must be a quantile in (0, 1], got {options['threshold']!r}")

    def record(self, name: str):
        def hook(module, args, output):
            if torch.is_grad_enabled():  # training's forward passes, not a frozen model's (LwF's old outputs)
                total = output.detach().float().abs().reshape(-1, output.shape[-1]).sum(0)
                self.magnitude[name] = self.magnitude[name] + total if name in self.magnitude else total
        return hook

    def before_stage(self, ctx) -> None:
        layers = trained_linears(ctx.model)
        if not layers:
            raise BenchError(f"{ctx.where}.strategy: migu masks the gradients of trained linear layers, and this "
                             "method trains none (it suits LoRA, DoRA and full fine-tuning)")
        if ctx.stage.number == 1:  # the first task trains unmasked
            return
        self.layers, self.magnitude = layers, {}
        self.handles = [module.register_forward_hook(self.record(name)) for name, (module, _) in layers.items()]

    def after_backward(self, ctx) -> None:
        for name, magnitude in self.magnitude.items():
            module, axis = self.layers[name]
            grad = module.weight.grad
            if grad is None:
                continue
            mask = importance_mask(magnitude, self.options["threshold"]).to(grad.dtype)
            grad.mul_(mask.unsqueeze(1) if axis == 0 else mask.unsqueeze(0))
        self.magnitude = {}

    def after_stage(self, ctx) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.layers, self.magnitude = [], {}, {}
