"""I-LoRA (Ren et al. 2024, "Analyzing and Reducing Catastrophic Forgetting in Parameter Efficient
Tuning"): two LoRAs of the same shape on the same layers, a fast one trained on the current
batch and on examples replayed from an episodic memory, and a slow one that follows it as an
exponential moving average; a consistency loss pulls the fast model's hidden states on the
replayed examples up to the slow model's. The slow LoRA is the one evaluated and exported.

Followed from the authors' code, github.com/which47/LLMCL, `method/ILORA.py` (as of commit
a9dae12; the file is unchanged since 4286b97):
- `ILoRAModel.__init__` (lines 143-160): the slow LoRA is a second PEFT adapter `ema` of the
  same config (line 149, `add_adapter('ema', peft_cfg)`: its own kaiming-uniform A, zero B);
  `ema_alpha = 0.25` (line 152: the default `ema` here), `reg_weight = 1.0` (line 153:
  `consistency`), `nn.MSELoss(reduction='none')` (line 155), a replay buffer "same as ER" (157).
- `update_ema_weights` (lines 162-172), called by `CLSCallback.on_step_end` (lines 310-311)
  after every optimizer step: lambda = min(1 - 1/(step + 1), ema_alpha) (line 163) with `step`
  the trainer's `global_step` (1 at the first step; the trainer restarts it for each task's
  `train()`), and slow <- lambda * slow + (1 - lambda) * fast for every trainable tensor, A and B
  (line 171). Here `step` counts the stage's optimizer steps from 1 the same way. Their lambda
  is 0.25, not the 0.99 of a typical EMA: the slow LoRA stays close to the fast one.
- `forward` (lines 210-271): from the second task on (line 224), a replayed batch of the
  current batch's size (line 225) runs through the fast model with grad, its loss kept (lines
  229-233), and through the slow one without (lines 235-241), both with
  `output_hidden_states=True`; per hidden state (the embeddings' output and every block's, the
  last after the final norm) reg = where(fast > slow, fast, slow) (lines 242-245) and l_cons =
  the mean over every element of every hidden state of MSE(fast, reg) (lines 247-249): only a
  fast activation below the slow one is penalised, by (fast - slow)^2. The loss is
  (current loss + replayed loss) / 2 + reg_weight * l_cons (line 261); without a replayed
  batch, the current loss (line 263).
- `ILoRATrainer.continual_learning` (lines 287-296): nothing is reset between tasks.

Where their code does not do what it evidently means, the method as described is followed:
- `update_ema_weights` collects the `default` adapter's tensors by name and then updates the
  tensors whose names are among them (lines 166-171); PEFT's names carry the adapter's name
  (`lora_A.default.weight`, `lora_A.ema.weight`), so as written it rewrites the fast tensors
  with themselves and the `ema` adapter never moves from its (zero-update) initialisation.
  Here the slow LoRA is the moving average of the fast one, as the method describes;
- line 295 calls `load_ema_model`, which the class does not define (it has `update_ema_model`,
  lines 180-182, a reload of the slow adapter just saved); nothing is reloaded here.

Shape here: one adapter, `i-lora`, whose layer holds both LoRAs (`ilora_A`/`ilora_B` fast and
trainable, `ilora_slow_A`/`ilora_slow_B` buffers), with the EMA in `after_step` and the replay
and consistency loss in `step`. The method is one inseparable recipe in their code (the EMA
model exists for the consistency loss on replayed data, and the slow model is what is
evaluated), so it is one method entry with its replay options, not an adapter that only works
beside one strategy. The memory and its sampler are `strategies/replay.py`'s, reused: the same
seeded `per_task` examples of every finished task, and the same seeded draw per step, that
`strategy: {name: replay}` replays. The layer applies the slow LoRA except while a stage trains
(`before_stage` to `after_stage`), so evaluation, drift, checkpoints' loaders and exports all
see the slow one; both are checkpointed for an exact resume.

Adapted, and why:
- their buffer is one reservoir of 500 examples over everything seen, current task included
  (`Buffer`, lines 40-140, filled in `compute_loss` before the step, line 281); here it is this repo's
  per-task memory of finished tasks (`per_task`), seeded, so a replayed example is always of an
  earlier task, each scored by its own task's kind and head;
- the consistency mean is taken over real tokens only: their batches run without an attention
  mask (lines 229-241; commented out at line 256), left-padded with token 0 (lines 102-107), so the zero padding counts as tokens;
- their loss is a token mean per batch; here each batch's loss is the task kind's mean over
  examples (the replayed one over every replayed example, whatever its task);
- the hidden states are read from the task kind's own forward (one forward for the replayed
  loss and the fast hidden states, as theirs), through a hook on the transformer body.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import BenchError
from ..core.parse import positive
from .base import Adapter, RankedConfig, check_rank, module_seed, wrap_targets

if TYPE_CHECKING:
    import torch

DEFAULT_EMA = 0.25  # their `ema_alpha`
DEFAULT_CONSISTENCY = 1.0  # their `reg_weight`


@dataclass
class ILoRAConfig(RankedConfig):
    """I-LoRA options."""

    per_task: int = field(default=64, metadata={
        "help": "training examples kept of every finished task (seeded, as strategy replay keeps them), replayed "
                "from the second stage on"})
    replay_batch_size: int | None = field(default=None, metadata={
        "help": "replayed examples per step; null = the stage's batch size (theirs: the current batch's size)"})
    ema: float = field(default=DEFAULT_EMA, metadata={
        "help": "lambda of the slow LoRA's update slow <- lambda * slow + (1 - lambda) * fast after every step, "
                "capped by 1 - 1/(step + 1) (I-LoRA's ema_alpha; 0.25 in their code)"})
    consistency: float = field(default=DEFAULT_CONSISTENCY, metadata={
        "help": "weight of the consistency loss on the replayed examples' hidden states (I-LoRA's reg_weight; 1.0)"})

    def default_label(self) -> str:
        label = f"i-lora-r{self.rank}-mem{self.per_task}"
        if self.replay_batch_size is not None:
            label += f"-rb{self.replay_batch_size}"
        if self.ema != DEFAULT_EMA:
            label += f"-ema{self.ema:g}"
        if self.consistency != DEFAULT_CONSISTENCY:
            label += f"-cons{self.consistency:g}"
        return label

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "per_task", self.per_task)
        positive(where, "replay_batch_size", self.replay_batch_size)
        positive(where, "consistency", self.consistency, allow_zero=True)
        if isinstance(self.ema, bool) or not 0 <= self.ema < 1:
            raise BenchError(f"{where}.ema: must be in [0, 1), got {self.ema!r}")


def consistency_terms(fast: list[torch.Tensor], slow: list[torch.Tensor],
                      mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """I-LoRA's consistency loss summed over the real tokens (`mask`, batch x length) of every
    hidden state, and how many elements it summed: (fast - where(fast > slow, fast, slow))^2."""
    import torch

    keep = mask.bool()
    total, count = torch.zeros((), device=mask.device), 0
    for f, s in zip(fast, slow):
        f, s = f.float()[keep], s.float()[keep]
        total = total + (f - torch.where(f > s, f, s)).pow(2).sum()
        count += f.numel()
    return total, count


@contextlib.contextmanager
def hidden_states(model) -> Iterator[list]:
    """Inside the block, every forward of the model's transformer body also returns its hidden
    states, which are appended to the yielded list (one tuple per forward)."""
    from ..sources.models import backbone

    body, seen = backbone(model), []
    pre = body.register_forward_pre_hook(lambda _m, args, kwargs: (args, {**kwargs, "output_hidden_states": True}),
                                         with_kwargs=True)
    post = body.register_forward_hook(lambda _m, _args, out: seen.append(out.hidden_states))
    try:
        yield seen
    finally:
        pre.remove()
        post.remove()


def ilora_layers(model, modules: list[str]) -> list:
    return [model.get_submodule(name) for name in modules]


@contextlib.contextmanager
def applying(model, modules: list[str], slow: bool) -> Iterator[None]:
    """The layers apply the slow (or the fast) LoRA inside the block, what they applied after it."""
    layers = ilora_layers(model, modules)
    before = [layer.slow for layer in layers]
    try:
        for layer in layers:
            layer.slow = slow
        yield
    finally:
        for layer, was in zip(layers, before):
            layer.slow = was


@dataclass
class _Run:
    """What one run's adapter keeps during a stage (the adapter object is shared by runs)."""

    sample: Any = None  # the replay sampler of the stage, None without a memory
    steps: int = 0  # optimizer steps taken in the stage


class ILoRA(Adapter):
    name = "i-lora"
    config_cls = ILoRAConfig
    help = ("I-LoRA (Ren et al. 2024): a fast LoRA trained with replay and a consistency loss on the replayed "
            "hidden states, a slow LoRA its moving average (evaluated)")
    prefixes = ("ilora_",)

    def __init__(self) -> None:
        self._runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Run

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        from .ilora_layer import ILoRALayer

        self.check(model, targets, cfg, where)
        return wrap_targets(model, targets, where, lambda name, module: ILoRALayer(
            module, cfg.rank, cfg.alpha, module_seed(seed, name), module_seed(seed, name + ":slow")))

    def before_stage(self, ctx):
        from ..strategies.replay import Replay, memory_indices

        cfg = ctx.method
        replay = Replay({"per_task": cfg.per_task, "batch_size": cfg.replay_batch_size}, ctx.seed)
        replay.memory = {t.name: memory_indices(len(t.train), cfg.per_task, ctx.seed, t.name)
                         for t in list(ctx.by_name.values())[: min(ctx.stage.tasks)]}
        self._runs[ctx.model] = _Run(sample=replay.sampler(ctx.stage.number, ctx.batch_size))
        for layer in ilora_layers(ctx.model, ctx.modules):
            layer.slow = False  # the fast LoRA trains

    def step(self, ctx, loss, examples):
        """(loss + the replayed examples' loss) / 2 + consistency * l_cons, once there is a memory."""
        import torch

        run = self._runs.get(ctx.model)
        if run is None or run.sample is None:
            return loss
        replayed, rows_seen, cons, elements = 0.0, 0, 0.0, 0
        for name, rows in run.sample():
            task = ctx.by_name[name]
            batch = ctx.collate(task, rows)
            with hidden_states(ctx.model) as fast:
                replayed = replayed + ctx.batch_loss(task, batch, "sum")
            with torch.no_grad(), applying(ctx.model, ctx.modules, slow=True), hidden_states(ctx.model) as slow:
                ctx.batch_loss(task, batch, "sum")
            if len(fast) != 1 or len(slow) != 1:
                raise BenchError(f"{ctx.where}: i-lora expects one forward of the model's body per task loss")
            total, count = consistency_terms(list(fast[0]), list(slow[0]), batch["attention_mask"])
            cons, elements, rows_seen = cons + total, elements + count, rows_seen + len(rows)
        return (loss + replayed / rows_seen) / 2 + ctx.method.consistency * cons / max(elements, 1)

    def after_step(self, ctx):
        run = self._runs.setdefault(ctx.model, _Run())
        run.steps += 1
        lam = min(1 - 1 / (run.steps + 1), ctx.method.ema)
        for layer in ilora_layers(ctx.model, ctx.modules):
            layer.ema_update(lam)

    def after_stage(self, ctx):
        self._runs.pop(ctx.model, None)
        for layer in ilora_layers(ctx.model, ctx.modules):
            layer.slow = True  # evaluated, measured and exported

    def diagnostics(self, model, modules):
        import torch

        with torch.no_grad():  # how far the evaluated slow update trails the fast one
            gaps = [float((layer.update(True) - layer.update(False)).norm() / layer.update(False).norm().clamp(min=1e-12))
                    for layer in ilora_layers(model, modules)]
        return {"slow_fast_relative_gap_mean": sum(gaps) / len(gaps)}

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        """The slow LoRA in PEFT's save layout beside ours: `PeftModel.from_pretrained(base, out)`
        loads the evaluated model (y = base(x) + alpha * B A x is PEFT's LoRA at lora_alpha = alpha * r)."""
        from peft import LoraConfig
        from safetensors.torch import save_file

        peft_tensors = {}
        for name in modules:
            peft_tensors[f"base_model.model.{name}.lora_A.weight"] = tensors[f"{name}.ilora_slow_A"].contiguous()
            peft_tensors[f"base_model.model.{name}.lora_B.weight"] = tensors[f"{name}.ilora_slow_B"].contiguous()
        save_file(peft_tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
        LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha * cfg.rank, target_modules=modules, fan_in_fan_out=conv1d,
                   bias="none", base_model_name_or_path=base_model).save_pretrained(str(out))
        return {"peft_format": True, "exported_lora": "slow"}
