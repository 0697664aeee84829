"""analysis/resampling.py on hand-made trade-offs whose draws are known: one seed per point (each
draw is the observed mean), seeds that agree (every draw the same), eval scores all equal."""

from __future__ import annotations

import numpy as np
import pytest

from curlora_bench.analysis import resampling
from curlora_bench.analysis.points import Matched, Point, RunValues, Stat, TradeOff

Q = ("plasticity", "final_accuracy", "forgetting", "perplexity_drift", "general_drop")


def point(column: str, fam: str, runs: dict[int, tuple[float, float]], scores=None) -> Point:
    """Seed k ran at (plasticity, log drift) = runs[k]; `scores`: each run's eval scores."""
    values = [RunValues((k, ("a",)), {"plasticity": p, "perplexity_drift": d, "forgetting": None,
                                      "final_accuracy": None, "general_drop": None}, [[p]],
                        scores[k] if scores else None)
              for k, (p, d) in runs.items()]
    st = {q: Stat.of([r.values[q] for r in values if r.values[q] is not None]) for q in Q}
    return Point(column, fam, None, st, 0, values)


def tradeoff(x_runs: dict, eval_resampled: bool = False) -> TradeOff:
    """Family g's frontier through (0.4, 0.2) and (0.6, 0.4); point x of family f against it."""
    lo = point("lo", "g", {k: (0.4, 0.2) for k in x_runs})
    hi = point("hi", "g", {k: (0.6, 0.4) for k in x_runs})
    x = point("x", "f", x_runs)
    m = Matched("x", "g", x.stats["plasticity"].mean, in_range=True, n=len(x_runs))
    return TradeOff([lo, hi, x], {"g": ["lo", "hi"], "f": ["x"]}, [m], eval_resampled=eval_resampled)


def test_one_seed_per_point_every_draw_is_the_observed_one():
    to = tradeoff({0: (0.5, 0.1)})
    resampling.resample(to, draws=50)
    (m,) = to.matched
    # at 0.5 the frontier is at 0.3: x lies 0.2 below it in every draw
    assert m.p_in_range == 1.0
    r = m.resampled["perplexity_drift"]
    assert (r.p_better, r.draws, r.ci95) == (1.0, 50, None)  # one seed: no interval
    assert set(m.resampled) == {"perplexity_drift"}  # forgetting and general drop not measured
    assert m.eval_se == {}  # eval examples were not resampled


def test_seeds_that_agree_give_the_same_difference_in_every_draw():
    to = tradeoff({0: (0.5, 0.5), 1: (0.5, 0.5), 2: (0.5, 0.5)})
    resampling.resample(to, draws=40)
    (m,) = to.matched
    r = m.resampled["perplexity_drift"]
    # 0.2 above the frontier in every draw: never better; the interval collapses on 0.2
    assert m.p_in_range == 1.0 and r.p_better == 0.0 and r.draws == 40
    assert r.ci95 == pytest.approx((0.2, 0.2))


def test_a_tie_counts_half():
    to = tradeoff({0: (0.4, 0.2)})  # on the frontier's first point
    resampling.resample(to, draws=10)
    assert to.matched[0].resampled["perplexity_drift"].p_better == 0.5


def test_a_point_outside_the_other_frontier_is_never_in_range():
    to = tradeoff({0: (0.9, 0.1)})
    resampling.resample(to, draws=20)
    (m,) = to.matched
    assert m.p_in_range == 0.0 and m.resampled == {}


def test_the_same_seed_gives_the_same_draws():
    runs = {0: (0.45, 0.1), 1: (0.55, 0.35), 2: (0.5, 0.25)}
    a, b = tradeoff(runs), tradeoff(runs)
    resampling.resample(a, draws=200, seed=3)
    resampling.resample(b, draws=200, seed=3)
    assert a.matched[0].p_in_range == b.matched[0].p_in_range
    assert a.matched[0].resampled == b.matched[0].resampled
    lo, hi = a.matched[0].resampled["perplexity_drift"].ci95
    # per seed the frontier lies at plasticity - 0.2: differences -0.15, 0, -0.05, mean -0.0667
    assert lo <= -0.2 / 3 <= hi


def test_run_draws_recompute_plasticity_from_the_eval_scores():
    run = RunValues((0, ("a", "b")), {"plasticity": 0.0, "final_accuracy": 0.0, "forgetting": 0.0,
                                      "perplexity_drift": 0.1, "general_drop": None}, [],
                    {(0, 0): np.ones(4), (1, 0): np.zeros(4), (1, 1): np.full(4, 0.5)}, offset=0.25)
    idx = {"a": np.zeros((3, 4), dtype=int), "b": np.zeros((3, 4), dtype=int)}
    d = resampling._run_draws(run, idx, 3)
    # plasticity: mean of the diagonal (1, 0.5) less the offset; final: mean of row 1 (0, 0.5);
    # forgetting of task a: its best before the last row (1) less its last (0)
    assert d["plasticity"] == pytest.approx([0.5] * 3)
    assert d["final_accuracy"] == pytest.approx([0.25] * 3)
    assert d["forgetting"] == pytest.approx([1.0] * 3)
    assert d["perplexity_drift"] == pytest.approx([0.1] * 3)  # not from eval scores: as observed
    assert "general_drop" not in d


def test_a_matrix_entry_without_scores_keeps_the_observed_values():
    run = RunValues((0, ("a", "b")), {"plasticity": 0.7, "final_accuracy": None, "forgetting": None,
                                      "perplexity_drift": None, "general_drop": None}, [], {(0, 0): np.ones(4)})
    d = resampling._run_draws(run, {"a": np.zeros((2, 4), dtype=int)}, 2)
    assert d == {"plasticity": pytest.approx([0.7, 0.7])}


def test_eval_resampling_with_constant_scores_has_no_eval_noise():
    scores = {k: {(0, 0): np.full(6, 0.5)} for k in range(2)}
    to = tradeoff({0: (0.5, 0.1), 1: (0.5, 0.1)}, eval_resampled=True)
    to.points[2] = point("x", "f", {0: (0.5, 0.1), 1: (0.5, 0.1)}, scores)
    # the frontier's runs keep no scores: their values stay as observed
    resampling.resample(to, draws=30)
    (m,) = to.matched
    assert to.eval_examples == 6 and m.p_in_range == 1.0
    assert m.resampled["perplexity_drift"].p_better == 1.0
