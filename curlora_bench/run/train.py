"""One stage of training: the adapter and the current task's head, AdamW, warm-up + schedule."""

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
from ..sources.heads import TaskHeads, classify
from ..sources.models import checkpointed_layers
from .data import Batching, PreparedTask, Split, batches, collate
from .spec import Protocol


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
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enter_training(model: nn.Module, head: nn.Module, cfg: TrainConfig) -> None:
    """The modes a stage trains in: the head in training mode; the body too only under
    `dropout: model`, else in eval mode with, under checkpointing, its transformer layers (not
    their submodules) in training mode, as transformers checkpoints a layer only then."""
    head.train()
    if cfg.dropout == "model":
        model.train()
    elif cfg.gradient_checkpointing:
        for layer in checkpointed_layers(model):
            layer.training = True


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, params: list[nn.Parameter],
                   cfg: TrainConfig, step: int) -> tuple[float, float, Callable[[], float]]:
    """Backward and one AdamW + scheduler step on `loss` (the stage's `step`-th, 0-based).

    Returns the loss, the learning rate the step applied and the gradient norm before clipping
    (lazily: the value clipping returned, else read from the grads, which the step never changes).
    """
    loss_value = loss.item()
    lr = scheduler.get_last_lr()[0]  # the rate optimizer.step() applies below
    if not math.isfinite(loss_value):
        raise NonFiniteLoss(step + 1, loss_value, lr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
    optimizer.step()
    scheduler.step()
    return loss_value, lr, (lambda: float(norm)) if norm is not None else (lambda: grad_norm(params))


def stage_steps(examples: int, cfg: TrainConfig) -> int:
    """Optimizer steps of one stage."""
    return cfg.epochs * math.ceil(examples / cfg.batch_size)


def train_stage(
    model: nn.Module,
    heads: TaskHeads,
    task: PreparedTask,
    cfg: TrainConfig,
    batching: Batching,
    protocol: Protocol,
    seed: int,
    on_step: Callable[[StepInfo], None] | None = None,
    replay: Callable[[], list[tuple[str, Split, list[int]]]] | None = None,
    penalty: Callable[[], torch.Tensor] | None = None,
) -> TrainStats:
    """Train adapter + `task`'s head for cfg.epochs over its training split.

    Under the paper protocol the scheduler's length is counted in examples instead of
    batches (the reference code's bug) and logits are read at position -1 of the padded batch. `cfg.dropout == "model"` trains with
    the model's own dropout on (the reference's `model.train()`); otherwise the body stays in
    eval mode. Either way it ends in eval mode.

    A strategy joins through two hooks: `replay()` gives each step's replayed rows (task, split,
    rows), classified by their own tasks' frozen heads, the loss becoming the mean over current
    and replayed examples; `penalty()` is added to every step's loss (EWC, L2).
    """
    split, device = task.train, batching.device
    head = heads.heads[task.name]
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(split) if protocol.steps_in_examples else stage_steps(len(split), cfg)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    gen = torch.Generator().manual_seed(seed)
    lengths = [len(s) for s in split.ids]
    enter_training(model, head, cfg)
    step, seen, tokens, loss_sum = 0, 0, 0, 0.0
    loss_value = float("nan")
    start = time.perf_counter()
    for _epoch in range(cfg.epochs):
        for idx in batches(lengths, cfg.batch_size, shuffle=True, generator=gen):
            batch = collate(split, idx, batching.pad_id, device, batching.padding_side)
            with autocast(device, cfg.precision):
                logits = classify(model, heads, task.name, batch["input_ids"], batch["attention_mask"],
                                  protocol.train_pooling)
            loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
            if replay is not None:
                loss = with_replayed(loss, len(idx), replay(), model, heads, batching, protocol, cfg.precision)
            if penalty is not None:
                loss = loss + penalty()
            loss_value, lr, norm_of = optimizer_step(loss, optimizer, scheduler, params, cfg, step)
            step += 1
            seen += len(idx)
            batch_tokens = int(batch["attention_mask"].sum())
            tokens += batch_tokens
            loss_sum += loss_value
            if on_step is not None:
                on_step(StepInfo(step, loss_value, lr, len(idx), batch_tokens, norm_of))
    model.eval()
    head.eval()
    head.requires_grad_(False)  # earlier heads are never trained again
    return TrainStats(step, seen, loss_value, loss_sum / max(step, 1), time.perf_counter() - start, tokens)


def with_replayed(loss: torch.Tensor, n: int, replayed: list[tuple[str, Split, list[int]]], model: nn.Module,
                  heads: TaskHeads, batching: Batching, protocol: Protocol, precision: str) -> torch.Tensor:
    """The mean cross-entropy over the current batch (mean `loss` over `n`) and the replayed rows."""
    total, count = loss * n, n
    for name, split, rows in replayed:
        batch = collate(split, rows, batching.pad_id, batching.device, batching.padding_side)
        with autocast(batching.device, precision):
            logits = classify(model, heads, name, batch["input_ids"], batch["attention_mask"],
                              protocol.train_pooling)
        total = total + nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        count += len(rows)
    return total / count
