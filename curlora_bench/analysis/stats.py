"""The statistics a reviewer accepts, as pure functions (each pinned by a test on a hand-made case).

- Ratios (perplexity drift) on the log scale: geometric means and t-intervals of log(drift),
  shown back-transformed, so an interval of a ratio never goes below 0 and one run at x5 does
  not make an interval of [-3.4, 8.6].
- Holm's step-down adjustment for a family of tests.
- The exact sign-flip (permutation) test of per-seed differences, the p every comparison of the
  report prints, its floor at n seeds, and its power: the minimum detectable effect at n and the
  seeds that detect a stated effect (simulated exactly at small n, where the floor bites; the
  equivalent t-test's power beyond). `tests/test_calibration.py` checks size, coverage and power
  by simulation.
- The exact McNemar test of two classifiers on the same examples.
- Quantiles of resampled draws (the bootstrap's descriptive interval).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence

import numpy as np

EXACT_UP_TO = 16  # sign-flip tests of up to this many differences enumerate all 2^n sign patterns
MONTE_CARLO_FLIPS = 100_000  # beyond: this many random patterns (seeded), p = (1 + hits) / (1 + flips)
SIMULATED_POWER_UP_TO = 12  # power simulated exactly up to this n; beyond, the t-test's (asymptotically equal)


def log_values(values: Sequence[float]) -> list[float]:
    """log of positive ratios (a non-positive one is no ratio: refused)."""
    if any(v <= 0 for v in values):
        raise ValueError(f"a ratio must be positive, got {min(values)}")
    return [math.log(v) for v in values]


def t_half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    from ..core.metrics import t_quantile

    return t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)


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


def fewest_for(alpha: float) -> int:
    """The fewest differences whose sign-flip test can reach p <= alpha (5 for 0.05, 7 for 0.0125)."""
    return next(n for n in range(1, 64) if sign_flip_floor(n) <= alpha)


@functools.cache
def _signs(n: int) -> np.ndarray:
    """All 2^n sign patterns, (2^n, n), the first all +1."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1.0 - 2.0 * bits


def sign_flip_pvalues(diffs: np.ndarray) -> np.ndarray:
    """Two-sided exact sign-flip p of each row of `diffs` (data sets, n): the share of the 2^n
    ways of flipping signs whose |sum| is at least the observed |sum| (the observed arrangement
    included, so p >= 2 / 2^n). Under the null that each difference is symmetric about 0 (and
    the differences independent) the test is exact at every n: P(p <= a) <= a. The |sum| is a
    monotone function of |t| under flips, so this is the permutation version of the t-test."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=float))
    n = diffs.shape[1]
    observed = np.abs(diffs.sum(axis=1))
    tol = 1e-9 * (np.abs(diffs).sum(axis=1) + 1e-300)
    if n <= EXACT_UP_TO:
        signs = _signs(n)
        out = np.empty(len(diffs))
        step = max(1, 2**22 // len(signs))
        for i in range(0, len(diffs), step):
            sums = np.abs(diffs[i:i + step] @ signs.T)
            out[i:i + step] = (sums >= (observed[i:i + step] - tol[i:i + step])[:, None]).mean(axis=1)
        return out
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(MONTE_CARLO_FLIPS, n))
    hits = np.array([(np.abs(signs @ d) >= o - t).sum() for d, o, t in zip(diffs, observed, tol)])
    return (1 + hits) / (1 + MONTE_CARLO_FLIPS)


def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """The exact two-sided sign-flip p of one set of per-seed differences (None for n < 2: no test)."""
    if len(diffs) < 2:
        return None
    return float(sign_flip_pvalues(np.asarray([diffs], dtype=float))[0])


def agreeing(diffs: Sequence[float]) -> tuple[int, int, int]:
    """(differences above 0, below 0, n): how many seeds agree in sign."""
    return sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), len(diffs)


@functools.cache
def _standard_mde(n: int, alpha: float, power: float) -> float:
    """The smallest standardised effect (mean / sd of one difference) that the exact two-sided
    sign-flip test at level `alpha` detects with probability `power` at n normal differences;
    inf where its floor 2 / 2^n exceeds alpha (no effect is detectable). Simulated exactly (all
    sign patterns, 4,000 seeded data sets, bisection on common random numbers) up to
    SIMULATED_POWER_UP_TO; beyond, the t-test's (t(1 - alpha/2) + t(power)) / sqrt(n), which the
    permutation test equals asymptotically (checked against simulation in the tests)."""
    if n < 2 or sign_flip_floor(n) > alpha:
        return math.inf
    if n > SIMULATED_POWER_UP_TO:
        from scipy import stats as st

        return float(st.t.ppf(1 - alpha / 2, n - 1) + st.t.ppf(power, n - 1)) / math.sqrt(n)
    z = np.random.default_rng(12345).standard_normal((4000, n))

    def achieved(effect: float) -> float:
        return float((sign_flip_pvalues(z + effect) <= alpha + 1e-12).mean())

    lo, hi = 0.0, 1.0
    while achieved(hi) < power:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return math.inf
    for _ in range(16):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if achieved(mid) < power else (lo, mid)
    return hi


def exact_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference the exact sign-flip test at `alpha` detects with
    probability `power` from n differences of standard deviation sd (inf: not at this n)."""
    standard = _standard_mde(n, alpha, power)
    return math.inf if math.isinf(standard) else standard * sd


def exact_power(effect: float, sd: float, n: int, alpha: float = 0.05, sims: int = 4000, seed: int = 1) -> float:
    """The exact sign-flip test's power against a mean difference `effect` at n normal differences
    of standard deviation sd (simulated, seeded)."""
    if n < 2 or sign_flip_floor(n) > alpha:
        return 0.0
    z = np.random.default_rng(seed).standard_normal((sims, n))
    return float((sign_flip_pvalues(effect + sd * z) <= alpha + 1e-12).mean())


def seeds_for(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8, limit: int = 1000) -> int | None:
    """The fewest seeds whose exact test detects `effect` with `power` (None: more than `limit`)."""
    if effect <= 0:
        return None
    start = max(2, fewest_for(alpha))
    if sd == 0:
        return start
    for n in range(start, limit + 1):
        if exact_mde(sd, n, alpha, power) <= abs(effect):
            return n
    return None


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (NumPy's default)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
