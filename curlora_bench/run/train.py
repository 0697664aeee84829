"""The one training loop of every regime: a stage's tasks, AdamW, warm-up + schedule, clipping.

`train_stage` trains the adapter and the state the stage's tasks added (their heads) on the
stage's batches: one task's (sequential) or every task's interleaved in one seeded order
(joint). Each step's loss goes through the task's kind, then through every plugin's `step`
hook (replay mixes in remembered examples, EWC adds its penalty), then `optimizer_step`:
backward, every plugin's `after_backward` hook (MIGU masks gradients), clipping, AdamW,
scheduler. `bench` times this same step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_scheduler

from ..config.experiment import TrainConfig
from ..sources.models import checkpointed_layers
from .data import PreparedTask, batches


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, value: float, lr: float | None = None) -> None:
        at = f" (learning rate {lr:.3g})" if lr is not None else ""
        super().__init__(f"loss is {value} at step {step}{at}")
        self.step, self.lr = step, lr


@dataclass
class StepInfo:
    """One finished optimizer step, as `train_stage` hands it to `on_step` (valid during that call)."""

    step: int  # within the stage, 1-based
    loss: float
    lr: float  # the learning rate this step used
    examples: int  # in this batch
    tokens: int  # real (unpadded) tokens in this batch
    grad_norm: Callable[[], float]  # norm of the gradients before clipping; a device sync, so on demand


def grad_norm(params: list[nn.Parameter]) -> float:
    """L2 norm of all gradients (clip_grad_norm_'s total norm), reading them only."""
    norms = [torch.linalg.vector_norm(p.grad.detach(), 2.0) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms), 2.0)) if norms else 0.0


@dataclass
class TrainStats:
    steps: int
    examples: int
    final_loss: float
    mean_loss: float
    seconds: float
    tokens: int


def autocast(device: torch.device, precision: str):
    """bf16 autocast on the device (CUDA or CPU) under `precision: bf16`, else nothing: parameters
    and optimizer state stay fp32, matmuls and their activations run in bfloat16."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enter_training(model: nn.Module, new: list[nn.Module], dropout: str | None, checkpointing: bool) -> None:
    """The modes a stage trains in: the new task state in training mode; the body too only under
    `dropout: model`, else in eval mode with, under checkpointing, its transformer layers (not
    their submodules) in training mode, as transformers checkpoints a layer only then."""
    for module in new:
        module.train()
    if dropout == "model":
        model.train()
    elif checkpointing:
        for layer in checkpointed_layers(model):
            layer.training = True


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, params: list[nn.Parameter],
                   cfg: TrainConfig, step: int,
                   after_backward: Callable[[], None] | None = None) -> tuple[float, float, Callable[[], float]]:
    """Backward, `after_backward` (the plugins' hook), then one AdamW + scheduler step on `loss`
    (the stage's `step`-th, 0-based).

    Returns the loss, the learning rate the step applied and the gradient norm before clipping
    (lazily: the value clipping returned, else read from the grads, which the step never changes).
    """
    loss_value = loss.item()
    lr = scheduler.get_last_lr()[0]  # the rate optimizer.step() applies below
    if not math.isfinite(loss_value):
        raise NonFiniteLoss(step + 1, loss_value, lr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
    optimizer.step()
    scheduler.step()
    return loss_value, lr, (lambda: float(norm)) if norm is not None else (lambda: grad_norm(params))


def stage_steps(examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of one task's training in a stage."""
    return cfg.epochs * math.ceil(examples / cfg.batch_size)


def steps_of(tasks: list[PreparedTask], cfg: TrainConfig) -> int:
    """Optimizer steps of a stage over `tasks` (joint: those of the whole sequence)."""
    return sum(stage_steps(len(t.train), cfg) for t in tasks)


def schedule_length(tasks: list[PreparedTask], cfg: TrainConfig, protocol) -> int:
    """The learning-rate schedule's length of a stage over `tasks`: its optimizer steps, or under
    the paper protocol its examples (the reference code's bug: warm-up then barely ends)."""
    return cfg.epochs * sum(len(t.train) for t in tasks) if protocol.steps_in_examples else steps_of(tasks, cfg)


def epoch_batches(tasks: list[PreparedTask], batch_size: int, interleave: bool,
                  generator: torch.Generator) -> list[tuple[int, list[int]]]:
    """One epoch of a stage: (index into `tasks`, rows) per batch. Each task's batches are drawn
    as its own stage would draw them (shuffled, length-pooled); with `interleave` every task's
    batches are then mixed in one seeded order, each batch still holding one task's examples."""
    out = [(k, idx) for k, t in enumerate(tasks)
           for idx in batches([len(s) for s in t.train.ids], batch_size, shuffle=True, generator=generator)]
    if not interleave:
        return out
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in order]


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig, total: int, heads: int = 0):
    """AdamW over `params` and its warm-up + schedule over `total` optimizer steps. With
    `train.head_lr` the last `heads` parameters (the task heads') are a group of their own at that
    rate; without it every parameter is in one group, as before the option existed."""
    split = len(params) - heads
    if cfg.head_lr is None or cfg.head_lr == cfg.lr or not heads:
        groups = params
    elif not split:  # nothing but heads trains (head-only): the logged rate is theirs
        groups = [{"params": params, "lr": cfg.head_lr}]
    else:
        groups = [{"params": params[:split]}, {"params": params[split:], "lr": cfg.head_lr}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    return optimizer, scheduler


def train_step(ctx, task: PreparedTask, rows: list[int], plugins: list, optimizer: torch.optim.Optimizer,
               scheduler, params: list[nn.Parameter], step: int) -> tuple[float, float, Callable[[], float], int]:
    """One optimizer step on `rows` of `task`'s training split: its kind's loss, every plugin's
    `step` hook (the batch in `ctx.step_task` / `ctx.step_batch` meanwhile), backward, every
    plugin's `after_backward` hook, clipping, AdamW, scheduler, every plugin's `after_step` hook.
    Returns (loss, lr, grad norm, real tokens)."""
    batch = ctx.collate(task, rows)
    loss = ctx.batch_loss(task, batch)
    ctx.step_task, ctx.step_batch = task, batch
    try:
        for plugin in plugins:
            loss = plugin.step(ctx, loss, len(rows))

        def after_backward() -> None:
            for plugin in plugins:
                plugin.after_backward(ctx)

        loss_value, lr, norm_of = optimizer_step(loss, optimizer, scheduler, params, ctx.train, step, after_backward)
        for plugin in plugins:
            plugin.after_step(ctx)
    finally:
        ctx.step_task, ctx.step_batch = None, None
    return loss_value, lr, norm_of, int(batch["attention_mask"].sum())


class StageTrainer:
    """What a stage trains with: the adapter's trainable parameters and the stage's `new` task
    state (its heads) under one AdamW and schedule of `scheduler_total` steps, the model in the
    stage's training modes. `step` is one optimizer step; `finish` ends the stage. `train_stage`
    runs a whole stage through it; `bench` times its steps."""

    def __init__(self, ctx, new: list[nn.Module], plugins: list, scheduler_total: int) -> None:
        self.ctx, self.new, self.plugins, self.steps = ctx, new, plugins, 0
        head_params = [p for m in new for p in m.parameters()]
        self.params = [p for p in ctx.model.parameters() if p.requires_grad] + head_params
        self.optimizer, self.scheduler = make_optimizer(self.params, ctx.train, scheduler_total,
                                                        heads=len(head_params))
        enter_training(ctx.model, new, ctx.train.dropout, ctx.execution.gradient_checkpointing)

    def step(self, task: PreparedTask, rows: list[int]) -> tuple[float, float, Callable[[], float], int]:
        """One optimizer step on `rows` of `task`'s training split (`train_step`)."""
        out = train_step(self.ctx, task, rows, self.plugins, self.optimizer, self.scheduler, self.params, self.steps)
        self.steps += 1
        return out

    def finish(self) -> None:
        """The model back in eval mode; the new state frozen: earlier tasks' state never trains again."""
        self.ctx.model.eval()
        for module in self.new:
            module.eval()
            module.requires_grad_(False)


def train_stage(ctx, new: list[nn.Module], plugins: list, scheduler_total: int,
                on_step: Callable[[StepInfo], None] | None = None) -> TrainStats:
    """Train the adapter and the stage's `new` task state for cfg.epochs over the stage's tasks.

    `ctx` is the stage's `StageContext`; `scheduler_total` the schedule's length (optimizer steps;
    the paper protocol counts examples). With `train.dropout: model` the body trains with its own
    dropout on (the reference's `model.train()`); otherwise it stays in eval mode. Either way it
    ends in eval mode, and the new state is frozen: earlier tasks' state never trains again.
    """
    cfg = ctx.train
    trainer = StageTrainer(ctx, new, plugins, scheduler_total)
    gen = torch.Generator().manual_seed(ctx.seed + ctx.stage.seed_offset)
    seen, tokens, loss_sum = 0, 0, 0.0
    loss_value = float("nan")
    start = time.perf_counter()
    for _epoch in range(cfg.epochs):
        for k, idx in epoch_batches(ctx.tasks, cfg.batch_size, ctx.stage.interleave, gen):
            loss_value, lr, norm_of, batch_tokens = trainer.step(ctx.tasks[k], idx)
            seen += len(idx)
            tokens += batch_tokens
            loss_sum += loss_value
            if on_step is not None:
                on_step(StepInfo(trainer.steps, loss_value, lr, len(idx), batch_tokens, norm_of))
    trainer.finish()
    step = trainer.steps
    return TrainStats(step, seen, loss_value, loss_sum / max(step, 1), time.perf_counter() - start, tokens)
