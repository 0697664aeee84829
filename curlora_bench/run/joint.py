"""Joint (multi-task) training: the upper bound a continual method is read against.

One stage over every task at once: each epoch draws every task's batches exactly as its own
stage would (shuffled, length-pooled), then interleaves all of them in a seeded random order;
each batch holds one task's examples and goes through that task's head. So the run takes as
many optimizer steps as the whole sequence, on the same examples, with one schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from transformers import get_scheduler

from ..config.experiment import TrainConfig
from ..sources.heads import TaskHeads, classify
from .data import Batching, PreparedTask, batches, collate
from .spec import Protocol
from .train import (
    StepInfo,
    TrainStats,
    autocast,
    enter_training,
    optimizer_step,
    stage_steps,
)


def joint_steps(tasks: list[PreparedTask], cfg: TrainConfig) -> int:
    """Optimizer steps of joint training: those of the whole sequence."""
    return sum(stage_steps(len(t.train), cfg) for t in tasks)


def joint_batches(tasks: list[PreparedTask], batch_size: int, generator: torch.Generator) -> list[tuple[int, list[int]]]:
    """One epoch: (task index, rows) for every task's batches, interleaved in a seeded order."""
    out = [(k, idx) for k, t in enumerate(tasks)
           for idx in batches([len(s) for s in t.train.ids], batch_size, shuffle=True, generator=generator)]
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in order]


def train_joint(model: nn.Module, heads: TaskHeads, tasks: list[PreparedTask], cfg: TrainConfig,
                batching: Batching, protocol: Protocol, seed: int,
                on_step: Callable[[StepInfo], None] | None = None) -> TrainStats:
    """Train the adapter and every task's head on the union of the tasks (see the module doc)."""
    device = batching.device
    params = [p for p in model.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = (cfg.epochs * sum(len(t.train) for t in tasks) if protocol.steps_in_examples
             else joint_steps(tasks, cfg))
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    gen = torch.Generator().manual_seed(seed)
    enter_training(model, heads, cfg)
    step, seen, tokens, loss_sum = 0, 0, 0, 0.0
    loss_value = float("nan")
    start = time.perf_counter()
    for _epoch in range(cfg.epochs):
        for k, idx in joint_batches(tasks, cfg.batch_size, gen):
            task = tasks[k]
            batch = collate(task.train, idx, batching.pad_id, device, batching.padding_side)
            with autocast(device, cfg.precision):
                logits = classify(model, heads, task.name, batch["input_ids"], batch["attention_mask"],
                                  protocol.train_pooling)
            loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
            loss_value, lr, norm_of = optimizer_step(loss, optimizer, scheduler, params, cfg, step)
            step += 1
            seen += len(idx)
            batch_tokens = int(batch["attention_mask"].sum())
            tokens += batch_tokens
            loss_sum += loss_value
            if on_step is not None:
                on_step(StepInfo(step, loss_value, lr, len(idx), batch_tokens, norm_of))
    model.eval()
    heads.eval()
    heads.requires_grad_(False)
    return TrainStats(step, seen, loss_value, loss_sum / max(step, 1), time.perf_counter() - start, tokens)
