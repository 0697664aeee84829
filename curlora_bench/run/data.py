"""Tokenise task splits once; length-bucketed batches with dynamic padding."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from ..store.schema import TaskData


@dataclass
class Split:
    """A tokenised split: token ids (no padding) and labels."""

    ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([self.ids, self.labels]).encode())
        return h.hexdigest()[:16]


@dataclass
class PreparedTask:
    """A task tokenised once per experiment, with the facts its runs record about the data."""

    name: str
    num_classes: int
    train: Split
    eval: Split
    info: TaskData
    kind: Any = None  # its task kind (a `run.kinds.TaskKind`): how it trains and is scored
    val: Split | None = None  # validation rows, with `eval.validation`
    spec: Any = None  # what its kind keeps besides the splits (the prompted kind: a `PromptSpec`)
    metric: str = "accuracy"  # its primary metric: the accuracy matrix's entries

    @property
    def majority(self) -> float:
        """Accuracy of always predicting the eval split's most frequent class."""
        return max(Counter(self.eval.labels).values()) / len(self.eval)


def task_data(task, train: Split, eval: Split) -> TaskData:
    """What a run records about a task's data: its definition's version, source and rows used."""
    return TaskData(version=task.version, source=task.path or task.builder or task.train, train_records=len(train),
                    eval_records=len(eval), train_fingerprint=train.fingerprint(), eval_fingerprint=eval.fingerprint())


@dataclass(frozen=True)
class Batching:
    """Where batches go and what pads them."""

    device: torch.device
    pad_id: int
    padding_side: str = "right"  # the tokenizer's side: left puts the real tokens last


def subsample(ds: Dataset, limit: int | None, seed: int | None) -> Dataset:
    """At most `limit` rows, drawn by a fixed seeded shuffle (the same rows for every method
    and run seed); `seed=None` takes the first rows, as the paper's code does."""
    if limit is None or limit >= len(ds):
        return ds
    if seed is None:
        return ds.select(range(limit))
    return ds.shuffle(seed=seed).select(range(limit))


def carve_validation(train: Dataset, limit: int | None, n: int, seed: int | None, per_run: bool,
                     where: str) -> tuple[Dataset, Dataset]:
    """(the rows train subsets are drawn from, `n` validation rows) out of a train split.

    Runs sharing their train subset: the validation rows are the shuffle's next `n` rows after the
    subset, so the subset is what it is without validation. Per-run subsets: the validation rows
    are the shuffle's last `n`, and every run's subset is drawn from the rest."""
    from ..core.errors import BenchError

    total = len(train)
    used = total if limit is None else min(limit, total)
    order = train if seed is None else train.shuffle(seed=seed)
    if per_run:
        if n >= total:
            raise BenchError(f"{where}: eval.validation {n} leaves no training rows of {total}; lower it or give "
                             "the task a val split")
        return order.select(range(total - n)), order.select(range(total - n, total))
    if used + n > total:
        raise BenchError(f"{where}: eval.validation {n} after {used} train rows needs {used + n} rows, the train "
                         f"split has {total}; lower train.limit or eval.validation, or give the task a val split")
    return train, order.select(range(used, used + n))


def encode(tokenizer, ds: Dataset, text_cols: list[str], max_length: int, bos_id: int | None) -> Split:
    """Tokenise one or two text columns; pairs are joined by EOS and truncated longest-first."""
    parts = [tokenizer(list(ds[c]), add_special_tokens=False)["input_ids"] for c in text_cols]
    budget = max_length - (1 if bos_id is not None else 0)
    ids = []
    for row in zip(*parts):
        if len(row) == 1:
            seq = row[0][:budget]
        else:
            a, b = list(row[0]), list(row[1])
            while len(a) + len(b) + 1 > budget:  # longest-first truncation
                (a if len(a) >= len(b) else b).pop()
            seq = a + [tokenizer.eos_token_id] + b
        ids.append(([bos_id] if bos_id is not None else []) + seq)
    return Split(ids, [int(x) for x in ds["label"]])


def batches(
    n_lengths: list[int], batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Index batches. Eval: sorted by length. Train: shuffled, then length-sorted in pools of
    50 batches so padding stays small while batch order stays random."""
    n = len(n_lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: n_lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).tolist()
    pool = batch_size * 50
    out = []
    for start in range(0, n, pool):
        chunk = sorted(perm[start : start + pool], key=lambda i: n_lengths[i])
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in order]


def collate(
    split: Split, idx: list[int], pad_id: int, device: torch.device, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """input_ids/attention_mask/labels for the given rows, padded on `padding_side` (right | left)."""
    seqs = [split.ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        cols = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
        input_ids[r, cols] = torch.tensor(s, dtype=torch.long)
        mask[r, cols] = 1
    labels = torch.tensor([split.labels[i] for i in idx], dtype=torch.long)
    non_blocking = device.type == "cuda"
    if non_blocking:
        input_ids, mask, labels = input_ids.pin_memory(), mask.pin_memory(), labels.pin_memory()
    return {
        "input_ids": input_ids.to(device, non_blocking=non_blocking),
        "attention_mask": mask.to(device, non_blocking=non_blocking),
        "labels": labels.to(device, non_blocking=non_blocking),
    }
