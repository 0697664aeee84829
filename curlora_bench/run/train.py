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
from .data import Batching, PreparedTask, batches, collate
from .spec import Protocol


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"loss is {value} at step {step}")
        self.step = step


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
    on_step: Callable[[int, float], None] | None = None,
) -> TrainStats:
    """Train adapter + `task`'s head for cfg.epochs over its training split.

    Under the paper protocol the scheduler's length is counted in examples instead of
    batches (the reference code's bug) and logits are read at position -1 of the padded batch. `cfg.dropout == "model"` trains with
    the model's own dropout on (the reference's `model.train()`); otherwise the body stays in
    eval mode. Either way it ends in eval mode.
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
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(step + 1, loss_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(idx)
            tokens += int(batch["attention_mask"].sum())
            loss_sum += loss_value
            if on_step is not None:
                on_step(step, loss_value)
    model.eval()
    head.eval()
    head.requires_grad_(False)  # earlier heads are never trained again
    return TrainStats(step, seen, loss_value, loss_sum / max(step, 1), time.perf_counter() - start, tokens)
