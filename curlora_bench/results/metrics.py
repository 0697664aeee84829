"""Continual-learning metrics: pure functions over the accuracy matrix A[i][j].

A[i][j] is the accuracy on task j after training stage i (0-based, j <= i); entries with
j > i are None. T is the number of stages.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


def average_accuracy(A: Matrix, stage: int | None = None) -> float:
    """Mean accuracy over tasks 0..i after stage i (default: the last stage)."""
    i = len(A) - 1 if stage is None else stage
    return sum(A[i][j] for j in range(i + 1)) / (i + 1)


def backward_transfer(A: Matrix) -> float | None:
    """BWT = mean_{j<T-1} (A[T-1][j] - A[j][j]); negative = forgetting. None for one task."""
    T = len(A)
    if T < 2:
        return None
    return sum(A[T - 1][j] - A[j][j] for j in range(T - 1)) / (T - 1)


def forgetting(A: Matrix) -> float | None:
    """Mean over j<T-1 of max_{i<T-1} A[i][j] - A[T-1][j]. None for one task."""
    T = len(A)
    if T < 2:
        return None
    per_task = [max(A[i][j] for i in range(j, T - 1)) - A[T - 1][j] for j in range(T - 1)]
    return sum(per_task) / len(per_task)


def perplexity_drift(initial: float, final: float) -> float:
    """final / initial perplexity (1.0 = unchanged)."""
    return final / initial


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = statistics.fmean(values)
    return m, statistics.stdev(values) if len(values) > 1 else 0.0


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Two-sided t-distribution confidence interval of the mean; None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    from scipy import stats

    m, s = mean_std(values)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * s / math.sqrt(n)
    return m - half, m + half
