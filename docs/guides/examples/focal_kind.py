"""A task kind of your own: classification through a head, trained with a focal loss.

The focal loss (Lin et al. 2017) scales each example's cross-entropy by (1 - p)^gamma, p the
probability of its true class, so well-classified examples count less: a common choice for
imbalanced tasks. Everything else is as the built-in classification kind: a linear head per task,
scored by accuracy beside the majority-class baseline. In the package the two classes below
live apart, as the layers ask: `FocalSpec` (what the kind asks of a task; no torch) beside the
built-in specs in curlora_bench/sources/kinds.py, with its entry in that module's `KINDS`, and
`Focal` (how it trains and is scored) in curlora_bench/run/kinds/focal.py, named by the spec's
`runtime`. A task selects it with `kind: focal`.
"""

from __future__ import annotations

from torch import nn

from curlora_bench.core.errors import BenchError
from curlora_bench.run.data import PreparedTask, encode, task_data
from curlora_bench.run.evaluate import predictions
from curlora_bench.run.kinds.base import Score, TaskKind
from curlora_bench.sources.heads import classify
from curlora_bench.sources.kinds import ClassificationSpec

GAMMA = 2.0  # 0 is plain cross-entropy


class FocalSpec(ClassificationSpec):
    """The task side: a classification task's fields, checks and metrics, under its own name."""

    name = "focal"  # what a task's `kind:` names
    help = "classification trained with a focal loss (gamma 2) instead of cross-entropy"
    metrics = ("accuracy",)  # what its records measure; the first is the primary metric (keys of TASK_METRICS)
    has_head = True  # `add` gives each task a head of its own (saved in heads.safetensors)
    runtime = "curlora_bench.run.kinds.focal:Focal"  # its run-time side, below

    def inferred(self, task):
        return False  # only a task that writes `kind: focal`


class Focal(TaskKind):
    """The run-time side: how the task's examples become a loss and how it is scored."""

    name = "focal"  # its spec's name; `self.metric` and `self.has_head` are read from the spec

    def describe(self, task):
        return f"{task.num_classes} classes, focal loss (gamma {GAMMA:g}), majority baseline {task.majority:.3f}"

    def prepare(self, task, train, eval, tokenizer, max_length, bos_id, where, val=None):
        """Tokenise the (subsetted) splits once per experiment; refuse what the kind cannot train."""
        num_classes = task.num_classes or max(train["label"]) + 1
        if len(set(train["label"])) < 2:
            raise BenchError(f"{where}: the train labels are all one class; a classifier needs two")
        if max(eval["label"]) >= num_classes:
            raise BenchError(f"{where}: an eval label is {max(eval['label'])} but there are {num_classes} classes")
        splits = {name: encode(tokenizer, ds, task.text, max_length, bos_id)
                  for name, ds in (("train", train), ("eval", eval), ("val", val)) if ds is not None}
        return PreparedTask(task.name, num_classes, splits["train"], splits["eval"],
                            task_data(task, splits["train"], splits["eval"]), self, splits.get("val"),
                            metric=self.metric)

    def add(self, heads, task, hidden, seed):
        """The task's trainable state, made before the stage that learns it (seeded)."""
        return [heads.add(task.name, hidden, task.num_classes, seed=seed)]

    # collate: the default (input_ids, attention_mask, labels, padded) fits a classification batch

    def loss(self, model, heads, task, batch, pooling, reduction="mean"):
        """Focal loss on a batch: "mean" trains, "sum" adds up replayed rows, "none" is one value per example."""
        logits = classify(model, heads, task.name, batch["input_ids"], batch["attention_mask"], pooling)
        ce = nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="none")
        focal = (1 - (-ce).exp()) ** GAMMA * ce
        if reduction == "none":
            return focal
        return focal.sum() if reduction == "sum" else focal.mean()

    def score(self, model, heads, task, batch_size, batching):
        """Accuracy on the eval split after a stage, each example's 0/1 kept for the report's tests."""
        preds = predictions(model, heads, task.name, task.eval, batch_size, batching.device, batching.pad_id,
                            padding_side=batching.padding_side)
        correct = [int(p == y) for p, y in zip(preds, task.eval.labels)]
        return [Score(self.metric, sum(correct) / len(correct), len(correct), task.majority, correct)]
