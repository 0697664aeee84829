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


def test_exact_sign_flip_test_on_hand_counted_cases():
    # five positive differences: only the observed pattern and its mirror reach |sum| 1.09: 2 of 32
    assert stats.sign_flip_p([0.19, 0.28, 0.15, 0.32, 0.15]) == pytest.approx(2 / 32)
    # (1, 2, 3): |sum| >= 6 only for +++ and ---; (1, 2, -3): sums with |s| >= 0 are all 8 patterns
    assert stats.sign_flip_p([1, 2, 3]) == pytest.approx(0.25) and stats.sign_flip_p([1, 2, -3]) == 1.0
    # (3, 1, 1, -1), |sum| 4: reached by +3 with at most one of the ones negative (4 patterns) and their
    # mirrors, 8 of 16; (3, 1, 1, 1), |sum| 6: by itself and its mirror only
    assert stats.sign_flip_p([3, 1, 1, -1]) == pytest.approx(8 / 16) and stats.sign_flip_p([3, 1, 1, 1]) == 2 / 16
    assert stats.sign_flip_p([0.4]) is None and stats.sign_flip_p([0.0, 0.0]) == 1.0
    batch = stats.sign_flip_pvalues(np.array([[1, 2, 3], [1, 2, -3]]))
    assert batch == pytest.approx([0.25, 1.0])
    many = np.linspace(0.1, 2.0, 18)  # beyond EXACT_UP_TO: Monte Carlo flips, still (1 + hits) / (1 + flips)
    assert stats.sign_flip_p(many) == pytest.approx(1 / (1 + stats.MONTE_CARLO_FLIPS), rel=0.5)
    assert stats.agreeing([0.1, -0.2, 0.3, 0.0]) == (2, 1, 4)


def test_floors_and_the_fewest_seeds_a_level_needs():
    assert stats.fewest_for(0.05) == 6 and stats.fewest_for(0.05 / 4) == 8 and stats.fewest_for(0.25) == 3
    assert math.isinf(stats.exact_mde(1.0, 5)) and math.isinf(stats.exact_mde(1.0, 7, alpha=0.05 / 4))
    assert stats.exact_power(10.0, 1.0, 5) == 0.0  # 2/32 > 0.05: no effect is detectable at n = 5


def test_exact_mde_is_where_the_simulated_power_is_80_percent():
    from scipy import stats as sp

    for n in (6, 8, 10):
        mde = stats.exact_mde(1.0, n)
        assert stats.exact_power(mde, 1.0, n, seed=7) == pytest.approx(0.8, abs=0.03)
        assert stats.exact_power(0.7 * mde, 1.0, n, seed=7) < 0.7
    # beyond the simulated range: the t-test's formula, continuous with the simulated one at n = 12
    t_mde = lambda n: (sp.t.ppf(0.975, n - 1) + sp.t.ppf(0.8, n - 1)) / math.sqrt(n)  # noqa: E731
    assert stats.exact_mde(1.0, 13) == pytest.approx(t_mde(13))
    assert stats.exact_mde(1.0, 12) == pytest.approx(t_mde(12), rel=0.03)
    assert stats.exact_mde(2.0, 10) == pytest.approx(2 * stats.exact_mde(1.0, 10))
    k = stats.seeds_for(1.0, 0.9)
    assert stats.exact_mde(1.0, k) <= 0.9 < stats.exact_mde(1.0, k - 1)
    assert stats.seeds_for(1.0, 0.0) is None and stats.seeds_for(0.0, 0.1) == 6


def test_exact_mcnemar_and_the_floors():
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 * 0.5**5)
    assert stats.mcnemar_exact(3, 3) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    from scipy import stats as sp

    assert stats.mcnemar_exact(2, 9) == pytest.approx(sp.binomtest(2, 11, 0.5).pvalue)
    assert stats.sign_flip_floor(3) == 0.25 and stats.sign_flip_floor(6) == pytest.approx(1 / 32)


def test_quantiles_and_expanded_percentiles():
    assert stats.quantile([3, 1, 2, 4], 0.5) == pytest.approx(np.quantile([3, 1, 2, 4], 0.5))
    assert stats.quantile(list(range(101)), 0.025) == pytest.approx(2.5)
