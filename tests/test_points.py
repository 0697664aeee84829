"""analysis/points.py on hand-made numbers whose answers are worked out in the comments."""

from __future__ import annotations

import math

import pytest

from curlora_bench.analysis import stats
from curlora_bench.analysis.points import (
    Point,
    RunValues,
    SeedTest,
    Stat,
    adjust_family,
    family,
    frontier,
    frontier_of,
    interpolate,
    interpolate_at,
    match_by_seed,
    seed_curve,
)

T975_2 = 4.302652729911275  # t quantile 0.975 at 2 degrees of freedom


def test_stat_of_three_values():
    s = Stat.of([1.0, 2.0, 3.0])
    # mean 2, sd 1, se 1/sqrt(3), interval 2 +- t(0.975, 2) / sqrt(3)
    assert (s.mean, s.n, s.log) == (2.0, 3, False)
    assert s.se == pytest.approx(1 / math.sqrt(3))
    assert s.ci95 == pytest.approx((2 - T975_2 / math.sqrt(3), 2 + T975_2 / math.sqrt(3)))
    assert s.shown == 2.0 and s.shown_ci == s.ci95


def test_stat_of_ratios_is_on_the_log_scale():
    s = Stat.of([math.e, math.e**3], log=True)
    assert s.mean == pytest.approx(2.0) and s.shown == pytest.approx(math.e**2)  # the geometric mean
    lo, hi = s.ci95
    assert s.shown_ci == pytest.approx((math.exp(lo), math.exp(hi)))


def test_stat_of_one_or_no_value():
    one = Stat.of([0.5])
    assert (one.mean, one.se, one.n, one.ci95, one.shown_ci) == (0.5, 0.0, 1, None, None)
    assert Stat.of([]) is None


def test_seed_test_of_three_differences():
    t = SeedTest.of([1.0, 2.0, 3.0])
    # of the 8 sign flips, |sum| >= 6 for +++ and --- only: p = 2/8
    assert (t.mean, t.sd, t.n, t.p_value) == (2.0, 1.0, 3, 0.25)
    assert t.ci95 == pytest.approx((2 - T975_2 / math.sqrt(3), 2 + T975_2 / math.sqrt(3)))
    assert t.ci90[0] > t.ci95[0] and t.ci90[1] < t.ci95[1]
    assert t.agree == (3, 0, 3)


def test_seed_test_of_one_difference_has_no_test():
    t = SeedTest.of([-0.5])
    assert (t.mean, t.sd, t.ci95, t.ci90, t.p_value, t.agree) == (-0.5, None, None, None, None, (0, 1, 1))


def test_adjust_family_holm_and_mde():
    a, b, c, one = SeedTest.of([1.0, 2.0, 3.0]), SeedTest.of([2.0, 4.0, 6.0]), SeedTest.of([1.0, -1.0, 1.0, 1.0]), \
        SeedTest.of([1.0])
    # p: 0.25, 0.25 and (|sum| >= 2 for 10 of the 16 flips) 0.625; Holm over the three with a p
    assert c.p_value == 0.625
    adjust_family([a, b, c, one])
    assert (a.p_holm, b.p_holm, c.p_holm, one.p_holm) == (0.75, 0.75, 0.75, None)
    assert a.mde == stats.exact_mde(1.0, 3, 0.05 / 3) and b.mde == stats.exact_mde(2.0, 3, 0.05 / 3)
    assert one.mde is None


@pytest.mark.parametrize(("method", "regime", "name"), [
    ({"method": "lora"}, "sequential", "lora"),
    ({"method": "peft", "type": "DORA"}, "sequential", "peft-dora"),
    ({"method": "curlora", "cr": "random"}, "sequential", "curlora+randcr"),
    ({"method": "lora", "strategy": {"name": "ewc", "lambda": 1}}, "sequential", "lora+ewc"),
    ({"method": "lora", "strategy": None}, "sequential", "lora"),
    ({"method": "lora"}, "joint", "joint"),
])
def test_family(method, regime, name):
    assert family(method, regime) == name


def test_frontier_of_keeps_what_nothing_beats_on_both_axes():
    xy = {"a": (0.5, 1.0), "b": (0.7, 2.0), "c": (0.4, 1.5), "d": (0.7, 2.5), "e": (0.5, 1.0)}
    # c is beaten by a (higher x, lower y), d by b (same x, higher y); a and e tie: neither beats the other
    assert frontier_of(xy) == ["a", "e", "b"]
    assert frontier_of({}) == []


@pytest.mark.parametrize(("x", "y"), [(0.0, 0.0), (0.25, 2.5), (1.0, 10.0), (1.5, 12.5), (2.0, 15.0),
                                      (-0.1, None), (2.1, None)])
def test_interpolate_at(x, y):
    got = interpolate_at([(0.0, 0.0), (1.0, 10.0), (2.0, 15.0)], x)
    assert got == (None if y is None else pytest.approx(y))


def test_interpolate_at_one_point_or_none():
    assert interpolate_at([(0.5, 3.0)], 0.5) == 3.0
    assert interpolate_at([(0.5, 3.0)], 0.6) is None
    assert interpolate_at([], 0.5) is None


def point(column: str, runs: dict[int, tuple[float, float | None]], fam: str = "f") -> Point:
    """A point of `family` whose seed k ran at (plasticity, log drift) = runs[k]."""
    values = [RunValues((k, ("a", "b")), {"plasticity": p, "perplexity_drift": d, "forgetting": None,
                                          "final_accuracy": None, "general_drop": None}, [])
              for k, (p, d) in runs.items()]
    st = {q: Stat.of([r.values[q] for r in values if r.values[q] is not None])
          for q in ("plasticity", "perplexity_drift", "forgetting", "final_accuracy", "general_drop")}
    return Point(column, fam, None, st, 0, values)


def test_frontier_and_interpolate_over_points():
    lo, hi = point("lo", {0: (0.4, 0.1), 1: (0.4, 0.3)}), point("hi", {0: (0.6, 0.3), 1: (0.6, 0.5)})
    worse = point("worse", {0: (0.4, 0.5), 1: (0.4, 0.5)})
    off = point("off", {0: (0.9, 0.0)})
    off.off_frontier = True
    front = frontier([hi, worse, lo, off])
    assert [p.column for p in front] == ["lo", "hi"]
    # the means: (0.4, 0.2) and (0.6, 0.4); halfway between them 0.3
    assert interpolate(front, 0.5, "perplexity_drift") == pytest.approx(0.3)
    assert interpolate(front, 0.5, "forgetting") is None  # not measured
    assert seed_curve(front, (1, ("a", "b")), "perplexity_drift") == [(0.4, 0.3), (0.6, 0.5)]
    assert seed_curve(front, (7, ("a", "b")), "perplexity_drift") is None


def test_match_by_seed_against_each_seeds_frontier():
    lo, hi = point("lo", {0: (0.4, 0.1), 1: (0.4, 0.3)}, "g"), point("hi", {0: (0.6, 0.3), 1: (0.6, 0.5)}, "g")
    x = point("x", {0: (0.5, 0.1), 1: (0.5, 0.2)})
    m = match_by_seed(x, [lo, hi], "g")
    # seed 0: its frontier gives 0.2 at 0.5, difference -0.1; seed 1: 0.4, difference -0.2
    assert m.in_range and (m.n, m.seeds_in_range, m.mean_frontier) == (2, 2, 0)
    assert m.tests["perplexity_drift"].diffs == pytest.approx([-0.1, -0.2])
    assert m.differences["perplexity_drift"] == pytest.approx(-0.15)
    assert m.values["perplexity_drift"] == pytest.approx(0.3)
    assert set(m.tests) == {"perplexity_drift"}  # forgetting and general drop were not measured


def test_match_by_seed_falls_back_to_the_frontier_of_means_for_a_missing_seed():
    lo, hi = point("lo", {0: (0.4, 0.1), 1: (0.4, 0.3)}, "g"), point("hi", {0: (0.6, 0.3), 1: (0.6, 0.5)}, "g")
    x = point("x", {0: (0.5, 0.1), 2: (0.5, 0.2)})
    m = match_by_seed(x, [lo, hi], "g")
    # seed 2 has no runs on the frontier: the means' frontier, 0.3 at 0.5
    assert m.in_range and m.mean_frontier == 1
    assert m.tests["perplexity_drift"].diffs == pytest.approx([-0.1, -0.1])


def test_a_seed_outside_the_frontier_leaves_the_point_unmatched():
    lo, hi = point("lo", {0: (0.4, 0.1), 1: (0.4, 0.3)}, "g"), point("hi", {0: (0.6, 0.3), 1: (0.6, 0.5)}, "g")
    x = point("x", {0: (0.5, 0.1), 1: (0.7, 0.2)})
    m = match_by_seed(x, [lo, hi], "g")
    assert not m.in_range and m.seeds_in_range == 1
    assert (m.tests, m.values, m.differences) == ({}, {}, {})
