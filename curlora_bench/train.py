"""One stage of training: the adapter and the current task's head, AdamW, warm-up + schedule."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_scheduler

from .data import Split, batches, collate
from .modeling import TaskHeads, classify


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"loss is {value} at step {step}")
        self.step = step


@dataclass
class StageStats:
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


def train_stage(
    model: nn.Module,
    heads: TaskHeads,
    task: str,
    split: Split,
    cfg,
    device: torch.device,
    seed: int,
    pad_id: int,
    pooling: str = "last",
    steps_in_examples: bool = False,
    progress=None,
    padding_side: str = "right",
) -> StageStats:
    """Train adapter + `task`'s head for cfg.epochs over `split`.

    `steps_in_examples` reproduces the paper's scheduler bug (total steps counted in
    examples instead of batches); the standard protocol counts optimizer steps.
    `cfg.dropout == "model"` trains with the model's own dropout on (the paper's
    `model.train()`); otherwise the body stays in eval mode. Either way it ends in eval mode.
    """
    head = heads.heads[task]
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(split) / cfg.batch_size)
    total = cfg.epochs * (len(split) if steps_in_examples else steps_per_epoch)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    gen = torch.Generator().manual_seed(seed)
    lengths = [len(s) for s in split.ids]
    head.train()
    if cfg.dropout == "model":
        model.train()
    step, seen, tokens, loss_sum = 0, 0, 0, 0.0
    loss_value = float("nan")
    ema = None
    start = time.perf_counter()
    bar = progress.add_task(f"train {task}", total=cfg.epochs * steps_per_epoch) if progress else None
    for _epoch in range(cfg.epochs):
        for idx in batches(lengths, cfg.batch_size, shuffle=True, generator=gen):
            batch = collate(split, idx, pad_id, device, padding_side)
            with autocast(device, cfg.precision):
                logits = classify(model, heads, task, batch["input_ids"], batch["attention_mask"], pooling)
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
            ema = loss_value if ema is None else 0.9 * ema + 0.1 * loss_value
            if bar is not None:
                progress.update(bar, advance=1, description=f"train {task} loss {ema:.3f}")
    model.eval()
    head.eval()
    head.requires_grad_(False)  # earlier heads are never trained again
    if bar is not None:
        progress.remove_task(bar)
    return StageStats(step, seen, loss_value, loss_sum / max(step, 1), time.perf_counter() - start, tokens)
