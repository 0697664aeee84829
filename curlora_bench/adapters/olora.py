"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual
Learning"): a fresh LoRA per task, the earlier tasks' kept frozen and still applied, and the new
LoRA's A pushed orthogonal to every earlier A. Not PEFT's "OLoRA" (a QR initialisation of one
LoRA: `{method: olora}`).

Followed from the authors' code, github.com/cmnatalie/O-LoRA (read through the public fork
github.com/zyx303/O-LoRA, which keeps the upstream block unchanged):
- `src/uie_trainer_lora.py`, `UIETrainer.training_step`, the "Regularization" block: for every
  adapted layer, `orthogonal_loss += torch.abs(torch.mm(param, param_.T)).sum()` with `param` the
  layer's `lora_A` (the earlier tasks' A's stacked, (sum r) x in) and `param_` its `loranew_A`
  (r x in); `l2_loss += torch.norm(param, p=2)` over every `loranew_` tensor (A and B, each's
  Frobenius norm, not squared); `loss = loss + orthogonal_loss * lamda_1 + l2_loss * lamda_2`.
  Here, per optimizer step: loss + lambda_orth * sum_layers sum_{s<t} ||A_s A_t^T||_1 (entrywise)
  + lambda_l2 * sum_layers (||A_t||_F + ||B_t||_F).
- `scripts/order_1.sh` (every task): `--lamda_1 0.5 --lamda_2 0`: the defaults here.
- `src/peft/tuners/lora.py` (their copy of PEFT): `loranew_A`/`loranew_B` beside `lora_A`/`lora_B`,
  both branches applied with the same scaling; `loranew_A` kaiming-uniform (a = sqrt(5)),
  `loranew_B` zero; `src/peft/utils/save_and_load.py` stacks the task's `loranew_*` onto
  `lora_*` when the task ends, which is the next task's frozen `lora_*`. Here each task's LoRA
  is kept as its own pair (the sum of their updates is the stacked pair's update).

Scaling: the update is alpha * B A, as the other low-rank methods here (their `lora_alpha / r`
is alpha). The task LoRAs live in `task_lora.TaskLoRALayer`; a stage after the first adds the
new task's LoRA in `before_stage`, and `structure_for` rebuilds that many on resume and export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.parse import positive
from .base import Adapter, RankedConfig, check_rank, module_seed, wrap_targets

if TYPE_CHECKING:
    import torch


@dataclass
class OLoRAConfig(RankedConfig):
    """O-LoRA options."""

    lambda_orth: float = field(default=0.5, metadata={
        "help": "weight of the orthogonality loss sum_{s<t} |A_s A_t^T|_1 over adapted layers (O-LoRA's lamda_1; "
                "0.5 in their scripts)"})
    lambda_l2: float = field(default=0.0, metadata={
        "help": "weight of the new LoRA's norm ||A_t||_F + ||B_t||_F (O-LoRA's lamda_2; 0 in their scripts)"})

    def default_label(self) -> str:
        label = f"o-lora-r{self.rank}"
        if self.lambda_orth != 0.5:  # O-LoRA's scripts' value is the unmarked one
            label += f"-orth{self.lambda_orth:g}"
        if self.lambda_l2 != 0:
            label += f"-l2{self.lambda_l2:g}"
        return label

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "lambda_orth", self.lambda_orth, allow_zero=True)
        positive(where, "lambda_l2", self.lambda_l2, allow_zero=True)


def task_seed(seed: int, name: str, task: int) -> int:
    """The seed of task `task`'s (1-based) A in layer `name`."""
    return module_seed(seed, name if task == 1 else f"{name}:task{task}")


def orthogonality(model, modules: list[str]) -> torch.Tensor:
    """sum over layers and earlier tasks s of ||A_s A_t^T||_1, t the newest task (0 for one task)."""
    import torch

    total = torch.zeros((), device=next(model.parameters()).device)
    for name in modules:
        layer = model.get_submodule(name)
        if layer.tasks > 1:
            old = torch.cat(list(layer.tasklora_A)[:-1], 0).float()
            total = total + (old @ layer.tasklora_A[-1].float().T).abs().sum()
    return total


def new_lora_norm(model, modules: list[str]) -> torch.Tensor:
    """sum over layers of ||A_t||_F + ||B_t||_F, t the newest task."""
    import torch

    total = torch.zeros((), device=next(model.parameters()).device)
    for name in modules:
        layer = model.get_submodule(name)
        total = total + layer.tasklora_A[-1].float().norm() + layer.tasklora_B[-1].float().norm()
    return total


class OLoRA(Adapter):
    name = "o-lora"
    config_cls = OLoRAConfig
    help = ("O-LoRA (Wang et al. 2023): a new LoRA per task, earlier ones frozen and summed, "
            "loss + lambda_orth * sum |A_old A_new^T|_1 (not PEFT's OLoRA init)")
    prefixes = ("tasklora_",)

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        from .task_lora import TaskLoRALayer, kaiming_a

        def wrap(name, module):
            layer = TaskLoRALayer(module, cfg.alpha)
            layer.add_task(kaiming_a(cfg.rank, layer.in_features, task_seed(seed, name, 1)), train_a=True)
            return layer

        self.check(model, targets, cfg, where)
        return wrap_targets(model, targets, where, wrap)

    def before_stage(self, ctx):
        from .task_lora import kaiming_a, layers

        position = ctx.stage.position
        for name, layer in layers(ctx.model, ctx.modules):
            if layer.tasks < position:  # the t-th task gets its own LoRA; the earlier ones freeze
                layer.add_task(kaiming_a(ctx.method.rank, layer.in_features, task_seed(ctx.seed, name, position)),
                               train_a=True)

    def step(self, ctx, loss, examples):
        cfg = ctx.method
        if cfg.lambda_orth:
            loss = loss + cfg.lambda_orth * orthogonality(ctx.model, ctx.modules)
        if cfg.lambda_l2:
            loss = loss + cfg.lambda_l2 * new_lora_norm(ctx.model, ctx.modules)
        return loss

    def structure_for(self, model, modules, cfg, position, where, tensors):
        from .task_lora import grow

        grow(model, modules, position, cfg.rank, train_a=True)

    def diagnostics(self, model, modules):
        import torch

        from .task_lora import layers

        with torch.no_grad():  # every pair of tasks, as the loss saw each new task against the earlier ones
            total = 0.0
            for _, layer in layers(model, modules):
                a = [x.float() for x in layer.tasklora_A]
                total += sum(float((a[s] @ a[t].T).abs().sum()) for t in range(len(a)) for s in range(t))
        return {"tasks": layers(model, modules)[0][1].tasks, "orthogonality_l1": total}
