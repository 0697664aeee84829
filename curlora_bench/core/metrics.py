"""Continual-learning metrics: pure functions, and the title and format each one's report row has.

Pure functions over the score matrix A[i][j]: the score (accuracy, or a task's primary metric)
on task j after training stage i (0-based, j <= i); entries with j > i are None. T is the number
of stages. Every metric a run summarises is declared once in `MATRIX_METRICS` (key, row title,
format, function), so adding one is one entry here; the report's rows are laid out from these in
`analysis.rows`. This module imports nothing else from the package; adapters declare their own
rows as `DiagnosticRow` data.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Matrix = Sequence[Sequence[float | None]]


def average_accuracy(A: Matrix, stage: int | None = None) -> float:
    """Mean accuracy over tasks 0..i after stage i (default: the last stage)."""
    i = len(A) - 1 if stage is None else stage
    return sum(A[i][j] for j in range(i + 1)) / (i + 1)


def plasticity(A: Matrix) -> float | None:
    """Mean accuracy of each task right after it was learned (the diagonal); None if one is missing."""
    diag = [A[j][j] for j in range(len(A))]
    return None if not diag or any(v is None for v in diag) else sum(diag) / len(diag)


def backward_transfer(A: Matrix) -> float | None:
    """BWT = mean_{j<T-1} (A[T-1][j] - A[j][j]); negative = forgetting. None for one task."""
    T = len(A)
    if T < 2:
        return None
    return sum(A[T - 1][j] - A[j][j] for j in range(T - 1)) / (T - 1)


def forgetting(A: Matrix) -> float | None:
    """Mean over j<T-1 of max_{i<T-1} A[i][j] - A[T-1][j] (Chaudhry et al. 2018; the forgetting
    rate of SAPT's and TRACE's tables, `Fgt` in SAPT's score.py). None for one task."""
    T = len(A)
    if T < 2:
        return None
    per_task = [max(A[i][j] for i in range(j, T - 1)) - A[T - 1][j] for j in range(T - 1)]
    return sum(per_task) / len(per_task)


def average_incremental(A: Matrix) -> float:
    """Avg (EasyCL's "Average Accuracy"): the mean over stages k of the mean score on tasks 0..k
    after stage k, so the whole sequence counts, not only its end."""
    return sum(average_accuracy(A, k) for k in range(len(A))) / len(A)


def backward_transfer_over_tasks(A: Matrix) -> float | None:
    """BWT as SAPT's and TRACE's code compute it: sum_{j<T-1} (A[T-1][j] - A[j][j]) divided by T
    (every task, the last one's term 0), not by T-1 as GEM's `backward_transfer`. None for one task."""
    T = len(A)
    if T < 2:
        return None
    return sum(A[T - 1][j] - A[j][j] for j in range(T - 1)) / T


def forward_transfer(A: Matrix, base: Sequence[float | None]) -> float | None:
    """FWT (GEM, Lopez-Paz & Ranzato 2017; EasyCL): mean over tasks j >= 1 of A[j-1][j] - base[j],
    the score of task j just before it is learned minus the base model's score on it. Needs the
    entries above the diagonal (tasks scored before they are learned) and `base` (zero-shot
    scores); None where one is missing or for one task."""
    T = len(A)
    if T < 2 or len(base) < T:
        return None
    terms = [A[j - 1][j] - base[j] for j in range(1, T) if A[j - 1][j] is not None and base[j] is not None]
    return sum(terms) / len(terms) if len(terms) == T - 1 else None


def perplexity_drift(initial: float | None, final: float | None) -> float | None:
    """final / initial perplexity (1.0 = unchanged); None when either is unmeasured."""
    return final / initial if initial and final else None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = statistics.fmean(values)
    return m, statistics.stdev(values) if len(values) > 1 else 0.0


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Two-sided t-distribution confidence interval of the mean; None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    m, s = mean_std(values)
    half = t_quantile((1 + confidence) / 2, n - 1) * s / math.sqrt(n)
    return m - half, m + half


@functools.cache
def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (scipy's), remembered: the report asks for the same few many times."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, tuple[float, float] | None,
                                                                       float | None]:
    """Mean of a - b over pairs, its 95% t-interval and the two-sided paired t-test p-value
    (scipy's `ttest_rel`); interval and p are None for fewer than 2 pairs, p also when every
    difference is the same (no variance: the test is undefined)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need equal, non-zero lengths, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None, None
    if len(set(diffs)) == 1:
        return mean, (mean, mean), None
    from scipy import stats

    p = float(stats.ttest_rel(a, b).pvalue)
    return mean, t_interval(diffs), None if math.isnan(p) else p


# ---- task metrics: what a task's records measure ---------------------------------------------

@dataclass(frozen=True)
class TaskMetric:
    """A per-task measurement after a stage (a record's `metric`), each example scored in [0, 1]."""

    key: str
    title: str  # in the report's rows: "<task> <title> (after <stage's task>)"
    binary: bool  # each example scores 0 or 1 (so McNemar applies to two runs' examples)


TASK_METRICS = {m.key: m for m in (
    TaskMetric("accuracy", "accuracy", True),  # classification; a choices task by log-likelihood
    TaskMetric("accuracy_norm", "accuracy (length-normalised)", True),
    TaskMetric("exact_match", "exact match", True),
    TaskMetric("rouge_l", "ROUGE-L", False),
    TaskMetric("chrf", "chrF", False),
    TaskMetric("edit_similarity", "edit similarity", False),  # TRACE's Py150
    TaskMetric("first_char", "answer-letter accuracy", True),  # TRACE's ScienceQA
)}


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the texts are equal once their surrounding whitespace is stripped, else 0.0."""
    return float(prediction.strip() == reference.strip())


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure of each prediction against its reference (the `rouge-score` package:
    its tokenizer, no stemming); the task's value is their mean."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]


def chrf(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Sentence chrF of each prediction (`sacrebleu`'s defaults), on a 0-1 scale; the task's value is
    their mean (not sacrebleu's corpus chrF), so eval examples can be resampled like any score."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [metric.sentence_score(pred, [ref]).score / 100 for pred, ref in zip(predictions, references)]


def edit_similarity(prediction: str, reference: str) -> float:
    """Indel similarity of two texts, 2·LCS / (|prediction| + |reference|) over characters, in
    [0, 1]: what fuzzywuzzy's `fuzz.ratio` computes (through python-Levenshtein's `ratio`, whose
    substitutions cost two edits), unrounded and divided by 100. TRACE scores Py150's next line of
    code with it (BeyonderXX/TRACE metrics.py `caculate_fuzz`); 0.0 when either text is empty, as
    there."""
    if not prediction or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)  # LCS lengths of the prefixes, one row at a time
    for a in prediction:
        row = [0]
        for j, b in enumerate(reference):
            row.append(previous[j] + 1 if a == b else max(previous[j + 1], row[j]))
        previous = row
    return 2 * previous[-1] / (len(prediction) + len(reference))


def first_char(prediction: str, reference: str) -> float:
    """1.0 when the first characters of the stripped texts agree (and the reference has one): TRACE's
    ScienceQA accuracy, which compares the option letter that starts each answer
    (BeyonderXX/TRACE evaluations/eval_ScienceQA.py `resolve`: `datium[0]`)."""
    p, r = prediction.strip(), reference.strip()
    return float(bool(r) and p[:1] == r[:1])


def drift_summary(per_module: dict[str, float]) -> tuple[float, float]:
    """(mean, max) of ‖ΔW‖/‖W‖ over the adapted matrices; (0, 0) when nothing is adapted."""
    vals = list(per_module.values())
    return (sum(vals) / len(vals), max(vals)) if vals else (0.0, 0.0)


# ---- how a report formats a value (a metric's and an adapter's rows declare one) ----------

Kind = str  # how a value is formatted: accuracy | perplexity | count | signed | ratio | drift (a ratio summarised on the log scale) | small | kl


@dataclass(frozen=True)
class DiagnosticRow:
    """A report row an adapter declares as data: the value at `paths[0]` of a run summary's
    `diagnostics` (a path is a tuple of keys), or the sum of the values at several paths;
    the report (`analysis.rows`) reads it."""

    name: str
    kind: Kind
    paths: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class MatrixMetric:
    """A number every run summarises from its accuracy matrix and perplexities."""

    key: str
    title: str
    kind: Kind
    compute: Callable[[Matrix, float | None, float | None], float | None]


MATRIX_METRICS = [
    MatrixMetric("average_accuracy", "Average accuracy (final)", "accuracy", lambda A, p0, p1: average_accuracy(A)),
    MatrixMetric("backward_transfer", "Backward transfer", "signed", lambda A, p0, p1: backward_transfer(A)),
    MatrixMetric("forgetting", "Forgetting", "signed", lambda A, p0, p1: forgetting(A)),
    MatrixMetric("perplexity_drift", "Perplexity drift (final/initial)", "drift",
                 lambda A, p0, p1: perplexity_drift(p0, p1)),
]


def matrix_metrics(A: Matrix, ppl0: float | None, ppl1: float | None) -> dict[str, float | None]:
    """Every `MATRIX_METRICS` value of a (possibly partial, `len(A)` stages) run; {} for none."""
    if not A:
        return {}
    square = [row[: len(A)] for row in A]
    return {m.key: m.compute(square, ppl0, ppl1) for m in MATRIX_METRICS}


# ---- general ability (lm-evaluation-harness tasks; `RunSummary.general`) ----------------------
# task -> metric -> [the base model's value, after stage 1, after stage 2, ...]
General = dict[str, dict[str, list[float | None]]]


def general_primary(metrics: Sequence[str]) -> str:
    """The metric a harness task's general ability is read on: acc_norm where the harness reports
    it (HellaSwag, ARC), else acc (WinoGrande), else the first."""
    return next((m for m in ("acc_norm", "acc") if m in metrics), metrics[0])


def general_final(values: Sequence[float | None]) -> float | None:
    """The value after the last stage that measured it (None: no stage did)."""
    after = [v for v in values[1:] if v is not None]
    return after[-1] if after else None


def general_ability(general: General | None, when: str, task: str | None = None,
                    metric: str | None = None) -> float | None:
    """`when` = before | after | drop (before - after) of one task's metric, or (task None) the
    mean over tasks of each one's primary metric."""
    if not general:
        return None
    pairs = []
    for name, by_metric in general.items():
        if task is not None and name != task:
            continue
        values = by_metric.get(metric or general_primary(list(by_metric)))
        if values is None:
            continue
        pairs.append((values[0], general_final(values)))
    if not pairs or (when != "before" and any(a is None for _, a in pairs)):
        return None
    before = sum(b for b, _ in pairs) / len(pairs)
    if when == "before":
        return before
    after = sum(a for _, a in pairs) / len(pairs)
    return after if when == "after" else before - after
