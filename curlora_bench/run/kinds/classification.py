"""Classification through a linear head of the task's own: the CURLoRA paper's protocol.

Each task gets a seeded `Linear(hidden, num_classes)` on the body's hidden state at the last
real token (the paper protocol: position -1 of the padded batch while training), trained with
the adapter during its stage and frozen after it; it is scored by accuracy, beside the
majority-class baseline of its eval split.
"""

from __future__ import annotations

from torch import nn

from ...core.errors import BenchError
from ...sources.heads import classify
from ..data import PreparedTask, encode, task_data
from ..evaluate import predictions
from .base import Score, TaskKind


class Classification(TaskKind):
    name = "classification"

    def prepare(self, task, train, eval, tokenizer, max_length, bos_id, where, val=None):
        num_classes = task.num_classes or max(train["label"]) + 1
        distinct = sorted(set(train["label"]))
        if num_classes < 2 or len(distinct) < 2:
            raise BenchError(f"{where}: the train labels are all {distinct[0]}: a classifier needs at least 2 "
                             "classes in its training data (check the label column and label_map)")
        bad = [y for y in eval["label"] if y >= num_classes]
        if bad:
            raise BenchError(f"{where}: eval label {bad[0]} but the train labels give {num_classes} classes; set num_classes")
        splits = {name: encode(tokenizer, ds, task.text, max_length, bos_id) for name, ds in
                  (("train", train), ("eval", eval), ("val", val)) if ds is not None}
        for split_name, split in splits.items():
            empty = next((k for k, ids in enumerate(split.ids) if len(ids) == (1 if bos_id is not None else 0)), None)
            if empty is not None:
                raise BenchError(f"{where}.{split_name}: example {empty + 1} of the split (after subsetting) has "
                                 f"no text: its {' and '.join(task.text)} tokenise(s) to nothing")
        if val is not None and any(y >= num_classes for y in val["label"]):
            raise BenchError(f"{where}: a validation label is {max(val['label'])} but the train labels give "
                             f"{num_classes} classes; set num_classes")
        return PreparedTask(task.name, num_classes, splits["train"], splits["eval"],
                            task_data(task, splits["train"], splits["eval"]), self, splits.get("val"))

    def add(self, heads, task, hidden, seed):
        return [heads.add(task.name, hidden, task.num_classes, seed=seed)]

    def loss(self, model, heads, task, batch, pooling, reduction="mean"):
        logits = classify(model, heads, task.name, batch["input_ids"], batch["attention_mask"], pooling)
        return nn.functional.cross_entropy(logits.float(), batch["labels"], reduction=reduction)

    def score(self, model, heads, task, batch_size, batching):
        preds = predictions(model, heads, task.name, task.eval, batch_size, batching.device, batching.pad_id,
                            padding_side=batching.padding_side)
        correct = [int(p == y) for p, y in zip(preds, task.eval.labels)]
        return [Score(self.metric, sum(correct) / len(correct), len(correct), task.majority, correct)]
