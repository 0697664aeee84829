"""The one hook vocabulary of the run loop, shared by adapters and strategies (as Avalanche's
plugin triggers): `before_stage`, `step`, `after_backward`, `after_step` and `after_stage`.

The run calls every plugin of a run (its adapter, then its strategy) at each trigger, with the
stage's `StageContext`. A plugin overrides only the triggers it needs:
- `before_stage(ctx)`: before a stage trains (PEFT OSF re-wraps its layers; replay draws its
  sampler; EWC builds its penalty);
- `step(ctx, loss, examples) -> loss`: every optimizer step, before backward: the mean loss over
  the step's `examples` training examples, returned changed or as it is (replay mixes in
  remembered examples, EWC adds its penalty, LwF its distillation on `ctx.step_batch`);
- `after_backward(ctx)`: every optimizer step, after backward and before clipping and the
  optimizer step: the trainable tensors' `.grad` hold the step's gradients (MIGU masks them);
- `after_step(ctx)`: every optimizer step, after AdamW and the scheduler stepped, while the
  step's gradients are still in place (AdaLoRA's rank allocator, `adapters/peft_named.py`);
- `after_stage(ctx)`: after the stage trained, before it is evaluated (replay keeps examples of
  the task just learned; EWC its Fisher and anchors).
"""

from __future__ import annotations

from typing import Any, Protocol


class StageContext(Protocol):
    """What a plugin sees of the stage in flight (the run's `run.context.StageContext`)."""

    model: Any  # the adapted model
    modules: list[str]  # the adapted modules' names
    method: Any  # the adapter's options (its AdapterConfig)
    stage: Any  # the `config.regimes.Stage` in flight
    tasks: list[Any]  # this stage's PreparedTasks
    by_name: dict[str, Any]  # every task of the run by name
    batch_size: int  # the stage's training batch size
    seed: int  # the run seed
    where: str  # the method's place in the config, for error messages
    step_task: Any  # during a step: the PreparedTask its batch is of (else None)
    step_batch: dict[str, Any] | None  # during a step: its collated batch, as the task's kind collated it

    def mixed_precision(self) -> Any:
        """The context the stage's forward passes run in (bf16 autocast under `precision: bf16`)."""

    def loss(self, task: str, rows: list[int], reduction: str = "mean") -> Any:
        """The task's training loss on rows of its training split, through its own task kind."""

    def train_batches(self, task: str) -> list[list[int]]:
        """The task's training rows in length-sorted batches of `batch_size` (no randomness)."""


class Plugin:
    """A participant of the run loop; every trigger does nothing by default."""

    def before_stage(self, ctx: StageContext) -> None:
        """A stage is about to train."""

    def step(self, ctx: StageContext, loss: Any, examples: int) -> Any:
        """One optimizer step's loss (mean over `examples`), before backward; return it, changed or not."""
        return loss

    def after_backward(self, ctx: StageContext) -> None:
        """The step's gradients are in `.grad`; clipping and the optimizer step come next."""

    def after_step(self, ctx: StageContext) -> None:
        """An optimizer step was taken; its gradients are still in place."""

    def after_stage(self, ctx: StageContext) -> None:
        """The stage has trained; it is evaluated next."""
