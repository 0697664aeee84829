"""InfLoRA (Liang & Li 2024, "InfLoRA: Interference-Free Low-Rank Adaptation for Continual
Learning", CVPR), adapted to causal LMs: a LoRA per task whose A is designed, not trained, so
that the task's update lies outside the subspace the earlier tasks' inputs occupy; only B trains.

Followed from the authors' code, github.com/liangyanshuo/InfLoRA (commit e08b00e):
- `models/vit_inflora.py` lines 191-194 and 244-249: per task t a pair (A_t: r x in, B_t: in x r
  -> here out x r), the layer applying sum_t B_t A_t (no scaling: alpha = 1 is theirs); lines
  236-238: the input covariance `cur_matrix`, the mean of x x^T over every token of the task's
  training inputs.
- `methods/inflora.py` lines 93-108: only the current task's B (and the head) train; lines
  116-158, before the task trains: the covariance of its inputs, projected by the kept
  subspace (`remove`: M = C - U U^T C; `retain`: M = U U^T C; the first task: M = C), and
  A_t = (top r left singular vectors of M)^T / sqrt(3); lines 188-207, after it trained: the
  covariance again, folded into the kept subspace by `update_DualGPM` (lines 321-412) with the
  threshold (lame - lamb) * t / total_sessions + lamb for the t-th task (0-based), lamb = 0.95 and
  lame = 1.0 in `configs/cifar100_inflora.json` (the defaults here: `gpm_threshold`,
  `gpm_threshold_last`).

Adapted, and why:
- their ViT adapts the key and value maps of each attention block and reads its input (the
  block's normalised tokens); here every adapted linear layer (the run's `target_modules`) gets its
  own A's, B's and subspace, from its own input, since a causal LM's targets differ in input
  (an attention projection reads the residual stream, a down projection the MLP's hidden units);
- the covariance is the mean of x x^T over the real tokens of the stage's training rows
  (padding left out: a ViT has none), each batch run through the transformer body in eval mode,
  with position ids that count real tokens;
- the first task: their code marks a basis of r >= n/2 top directions `retain` (the free space),
  which its own summary then asserts against; here it is kept as `remove` and the summary's
  swap (a basis over half the dimension becomes its complement, `retain`) applies as for any
  later task;
- their SVDs run in float32 (numpy); here in float64, the basis kept in float32 as theirs.
The covariances are in x in per adapted layer, held together while the stage's rows run: the
memory of `target_modules`' input widths squared (float64), besides the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import BenchError
from .base import Adapter, RankedConfig, check_rank, module_seed, wrap_targets


@dataclass
class InfLoRAConfig(RankedConfig):
    """InfLoRA options."""

    gpm_threshold: float = field(default=0.95, metadata={
        "help": "share of the input energy the kept subspace covers after the first task (InfLoRA's lamb; 0.95)"})
    gpm_threshold_last: float = field(default=1.0, metadata={
        "help": "the share it rises to, linearly over the run's tasks: (last - first) * t / tasks + first for "
                "the t-th task, 0-based (InfLoRA's lame; 1.0)"})

    def default_label(self) -> str:
        label = f"inflora-r{self.rank}"
        if (self.gpm_threshold, self.gpm_threshold_last) != (0.95, 1.0):  # InfLoRA's configs' values: unmarked
            label += f"-gpm{self.gpm_threshold:g}" + (f"-{self.gpm_threshold_last:g}" if self.gpm_threshold_last != 1.0 else "")
        return label

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("gpm_threshold", "gpm_threshold_last"):
            value = getattr(self, key)
            if isinstance(value, bool) or not 0 < value <= 1:
                raise BenchError(f"{where}.{key}: must be in (0, 1], got {value!r}")


def threshold(cfg: InfLoRAConfig, position: int, tasks: int) -> float:
    """DualGPM's threshold after the `position`-th task (1-based) of `tasks`."""
    return (cfg.gpm_threshold_last - cfg.gpm_threshold) * (position - 1) / tasks + cfg.gpm_threshold


class InfLoRA(Adapter):
    name = "inflora"
    config_cls = InfLoRAConfig
    help = ("InfLoRA (Liang & Li 2024): a LoRA per task, A designed from the task's inputs outside the "
            "earlier tasks' input subspace (DualGPM), only B trains")
    prefixes = ("tasklora_",)

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        from .task_lora import TaskLoRALayer, kaiming_a

        def wrap(name, module):
            layer = TaskLoRALayer(module, cfg.alpha)
            # their init_param draws A kaiming-uniform; the first stage replaces it by the designed A
            layer.add_task(kaiming_a(cfg.rank, layer.in_features, module_seed(seed, name)), train_a=False)
            return layer

        self.check(model, targets, cfg, where)
        return wrap_targets(model, targets, where, wrap)

    def _covariances(self, ctx):
        from .task_lora import input_covariances

        def batches():
            for task in ctx.tasks:
                for rows in ctx.train_batches(task.name):
                    batch = ctx.collate(task, rows)
                    yield batch["input_ids"], batch["attention_mask"]

        return input_covariances(ctx.model, ctx.modules, batches())

    def before_stage(self, ctx):
        import torch

        from .task_lora import design_a, layers

        position, covs = ctx.stage.position, self._covariances(ctx)
        for name, layer in layers(ctx.model, ctx.modules):
            a = design_a(covs[name], layer.tasklora_basis, bool(layer.tasklora_retain), ctx.method.rank, position == 1)
            if layer.tasks < position:
                layer.add_task(a, train_a=False)
            else:  # the first task's A, drawn at attach
                with torch.no_grad():
                    layer.tasklora_A[-1].copy_(a)

    def after_stage(self, ctx):
        from .task_lora import layers, update_dualgpm

        position, covs = ctx.stage.position, self._covariances(ctx)
        level = threshold(ctx.method, position, len(ctx.by_name))
        for name, layer in layers(ctx.model, ctx.modules):
            basis, retain = update_dualgpm(covs[name], layer.tasklora_basis, bool(layer.tasklora_retain), level,
                                           position == 1)
            layer.tasklora_basis = basis.to(layer.tasklora_basis)
            layer.tasklora_retain.fill_(float(retain))

    def structure_for(self, model, modules, cfg, position, where, tensors):
        import torch

        from .task_lora import grow, layers

        grow(model, modules, position, cfg.rank, train_a=False)
        for name, layer in layers(model, modules):
            saved = tensors.get(f"{name}.tasklora_basis")
            if saved is not None:  # the kept subspace's width, for the checkpoint's values to load into
                layer.tasklora_basis = torch.zeros(saved.shape, dtype=layer.tasklora_basis.dtype,
                                                   device=layer.tasklora_basis.device)

    def diagnostics(self, model, modules):
        from .task_lora import layers

        kept = [(layer.tasklora_basis.shape[1], layer.in_features, bool(layer.tasklora_retain))
                for _, layer in layers(model, modules)]
        # the dimension of the earlier tasks' input subspace an update must avoid, per layer
        protected = [n - k if retain else k for k, n, retain in kept]
        return {"tasks": layers(model, modules)[0][1].tasks,
                "protected_fraction_mean": sum(p / n for p, (_, n, _) in zip(protected, kept)) / len(kept),
                "retain_layers": sum(r for _, _, r in kept)}
