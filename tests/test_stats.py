"""Each statistic of the report, pinned on hand-made numbers whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curlora_bench.analysis import stats


def test_geometric_mean_and_interval_of_ratios():
    g, (lo, hi) = stats.geometric([1.0, 1.21])
    assert g == pytest.approx(1.1)
    half = 12.7062047 * (math.log(1.21) / math.sqrt(2)) / math.sqrt(2)  # t(0.975, 1) sd / sqrt(n)
    assert (lo, hi) == pytest.approx((1.1 * math.exp(-half), 1.1 * math.exp(half)), rel=1e-6)
    g, ci = stats.geometric([0.98, 5.38, 1.18])  # one run at x5.4: the interval stays a ratio interval
    assert ci[0] > 0 and g == pytest.approx((0.98 * 5.38 * 1.18) ** (1 / 3))
    assert stats.geometric([1.3]) == (pytest.approx(1.3), None)
    with pytest.raises(ValueError):
        stats.geometric([1.0, 0.0])


def test_holm_on_a_textbook_case():
    # sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert stats.holm([]) == []


def test_mde_and_pairs_needed_follow_the_t_power_formula():
    from scipy import stats as sp

    sd, n = 0.02, 3
    expected = (sp.t.ppf(0.975, 2) + sp.t.ppf(0.8, 2)) * sd / math.sqrt(3)
    assert stats.mde(sd, n) == pytest.approx(expected)
    assert stats.mde(sd, 1) is None
    k = stats.pairs_needed(sd, 0.02)
    assert stats.mde(sd, k) <= 0.02 < stats.mde(sd, k - 1)
    assert stats.pairs_needed(sd, 0.0) is None and stats.pairs_needed(0.0, 0.01) == 2


def test_exact_mcnemar_and_the_floors():
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 * 0.5**5)
    assert stats.mcnemar_exact(3, 3) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    from scipy import stats as sp

    assert stats.mcnemar_exact(2, 9) == pytest.approx(sp.binomtest(2, 11, 0.5).pvalue)
    assert stats.sign_flip_floor(3) == 0.25 and stats.sign_flip_floor(6) == pytest.approx(1 / 32)
    assert stats.resampling_floor(3) == pytest.approx(2 / 27) and stats.resampling_floor(5) == pytest.approx(2 / 3125)


def test_quantiles_and_expanded_percentiles():
    assert stats.quantile([3, 1, 2, 4], 0.5) == pytest.approx(np.quantile([3, 1, 2, 4], 0.5))
    assert stats.quantile(list(range(101)), 0.025) == pytest.approx(2.5)
    draws = list(np.linspace(-1, 1, 1001))
    lo, hi = stats.expanded_percentiles(0.0, draws, n=3)
    assert (lo, hi) == pytest.approx((-0.95 * math.sqrt(1.5), 0.95 * math.sqrt(1.5)))
    assert stats.expanded_percentiles(0.0, draws, n=1) is None
