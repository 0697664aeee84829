"""The statistics a reviewer accepts, as pure functions (each pinned by a test on a hand-made case).

- Ratios (perplexity drift) on the log scale: geometric means and t-intervals of log(drift),
  shown back-transformed, so an interval of a ratio never goes below 0 and one run at x5 does
  not make an interval of [-3.4, 8.6].
- Holm's step-down adjustment for a family of tests.
- The minimum detectable effect of a paired comparison at its n, and the n that detects a
  stated effect (two-sided t, 80% power).
- The exact McNemar test of two classifiers on the same examples.
- The floor of an exact sign-flip test at n pairs.
- Percentile intervals of a resampled statistic, expanded for small samples (Hesterberg 2015:
  resampling n values underestimates spread by sqrt((n-1)/n)).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def log_values(values: Sequence[float]) -> list[float]:
    """log of positive ratios (a non-positive one is no ratio: refused)."""
    if any(v <= 0 for v in values):
        raise ValueError(f"a ratio must be positive, got {min(values)}")
    return [math.log(v) for v in values]


def t_half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


def geometric(values: Sequence[float], confidence: float = 0.95) -> tuple[float, tuple[float, float] | None]:
    """Geometric mean of ratios and the back-transformed t-interval of the mean of their logs."""
    logs = log_values(values)
    m = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(m), None
    half = t_half_width(statistics.stdev(logs), len(logs), confidence)
    return math.exp(m), (math.exp(m - half), math.exp(m + half))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's adjusted p-values (family-wise error control), in the input's order; None stays None."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test at level `alpha` detects with
    probability `power`, given the per-pair sd of the differences and n pairs (None for n < 2)."""
    if n < 2:
        return None
    from scipy import stats

    df = n - 1
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n)


def pairs_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8, limit: int = 10_000) -> int | None:
    """The fewest pairs whose MDE is at most `effect` (None: more than `limit`, or no effect)."""
    if effect <= 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, limit + 1):
        if mde(sd, n, alpha, power) <= effect:
            return n
    return None


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: of the b + c examples the two disagree on, b went one way."""
    n = b + c
    if n == 0:
        return 1.0
    from scipy import stats

    return float(min(1.0, 2 * stats.binom.cdf(min(b, c), n, 0.5)))


def sign_flip_floor(n: int) -> float:
    """The smallest two-sided p-value an exact sign-flip (permutation) test reaches with n pairs."""
    return min(1.0, 2 / 2**n)


def resampling_floor(n: int) -> float:
    """The smallest two-sided p a resampling of n seeds can resolve: twice the chance that a draw
    repeats one seed n times (its most extreme mean), 2 / n^n (0.074 at n = 3, 0.0006 at n = 5)."""
    return min(1.0, 2 / n**n)


def expanded_percentiles(estimate: float, draws: Sequence[float], n: int,
                         confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of resampled `draws` around `estimate`, their spread expanded by
    sqrt(n / (n - 1)) for resampling n seeds; None without draws or with n < 2."""
    if not draws or n < 2:
        return None
    k = math.sqrt(n / (n - 1))
    lo, hi = quantile(draws, (1 - confidence) / 2), quantile(draws, (1 + confidence) / 2)
    return estimate + k * (lo - estimate), estimate + k * (hi - estimate)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (NumPy's default)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
