"""Simple baselines of the embedded classification tasks, shown on their cards.

A bag-of-words multinomial naive Bayes in plain Python (no dependency, the same number on every
machine): lower-cased words, add-one smoothing, class priors from train; ties go to the lower
class. It says how much of a task a word count already solves, beside the majority baseline.
"""

from __future__ import annotations

import math
import re
from collections import Counter


def bag(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


def naive_bayes_accuracy(train_texts: list[str], train_labels: list[int], eval_texts: list[str],
                         eval_labels: list[int]) -> float:
    """Accuracy on eval of a multinomial naive Bayes over word counts, fitted on train."""
    classes = sorted(set(train_labels))
    counts = {c: Counter() for c in classes}
    for text, label in zip(train_texts, train_labels):
        counts[label].update(bag(text))
    vocab = set().union(*counts.values())
    prior = Counter(train_labels)
    logp = {}
    for c in classes:
        total = sum(counts[c].values()) + len(vocab)
        logp[c] = (math.log(prior[c] / len(train_labels)), {w: math.log((n + 1) / total) for w, n in counts[c].items()},
                   math.log(1 / total))

    def predict(text: str) -> int:
        words = [w for w in bag(text) if w in vocab]
        return max(classes, key=lambda c: (logp[c][0] + sum(logp[c][1].get(w, logp[c][2]) for w in words), -c))

    return sum(predict(t) == y for t, y in zip(eval_texts, eval_labels)) / max(len(eval_labels), 1)
