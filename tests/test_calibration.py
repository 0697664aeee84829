"""The report's tests checked by simulation under a known truth: their size (how often they reject a
true null), the coverage of their intervals, and their power against what `plan` predicts.

Each case draws at least 2,000 data sets from known distributions and runs the report's own code
on them (`SeedTest.of` for paired differences, `match_by_seed` for matched rows, `compare_curves`
for curve comparisons). Bounds allow three Monte Carlo standard errors. The measured values are
quoted on the statistics page (docs/methodology/statistics.md, "Calibration").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from curlora_bench.analysis import stats
from curlora_bench.analysis.agreement import Agreement
from curlora_bench.analysis.curves import compare_curves
from curlora_bench.analysis.points import Point, RunValues, SeedTest, Stat, match_by_seed

SETS = 2000
ALPHA = 0.05


def mcse(p: float, k: int = SETS) -> float:
    return math.sqrt(p * (1 - p) / k)


@pytest.mark.parametrize("n", [3, 5, 8, 10])
@pytest.mark.parametrize("law", ["normal", "t3"])
def test_paired_exact_test_holds_its_level_and_its_interval_covers(n, law):
    """Per-pair differences drawn symmetric about 0 (normal; heavy-tailed t with 3 degrees of
    freedom): the exact sign-flip test rejects at most alpha of them; the t-interval covers 0."""
    rng = np.random.default_rng(100 + n)
    d = rng.standard_normal((SETS, n)) if law == "normal" else rng.standard_t(3, (SETS, n))
    p = stats.sign_flip_pvalues(d)
    assert (p <= ALPHA).mean() <= ALPHA + 3 * mcse(ALPHA)
    assert p.min() >= stats.sign_flip_floor(n) - 1e-12  # never below the floor
    half = np.array([stats.t_half_width(s, n) for s in d.std(axis=1, ddof=1)])
    covered = (np.abs(d.mean(axis=1)) <= half).mean()
    if law == "normal":  # the t-interval is exact for normal differences
        assert covered >= 0.95 - 3 * mcse(0.95)
    # one data set through the report's own class gives the same p
    assert SeedTest.of(list(d[0])).p_value == pytest.approx(p[0])


def _point(rng, name, family, n, mean_x, shift=0.0, curve=lambda x: 2.0 * x, sd_x=0.02, sd_y=0.05):
    """A point of n seeds (seed s's run has key (s, order), shared across points) whose runs' log drift
    (and forgetting) lie on `curve` at their own plasticity, shifted by `shift`, plus noise."""
    xs = mean_x + sd_x * rng.standard_normal(n)
    ys = curve(xs) + shift + sd_y * rng.standard_normal(n)
    runs = [RunValues((s, ("a", "b")), {"plasticity": float(x), "final_accuracy": None, "forgetting": float(y),
                                        "perplexity_drift": float(y), "general_drop": None}, [])
            for s, (x, y) in enumerate(zip(xs, ys))]
    st = {"plasticity": Stat.of(list(xs)), "final_accuracy": None, "forgetting": Stat.of(list(ys)),
          "perplexity_drift": Stat.of(list(ys)), "general_drop": None}
    return Point(name, family, name, st, 0, runs)


def _points(rng, n, effect=0.0, curve=lambda x: 2.0 * x):
    """A LoRA frontier of three points and a CURLoRA point mid-range shifted by `effect` (0: the null,
    the point lies on the other family's curve)."""
    front = [_point(rng, f"lora-{k}", "lora", n, x, curve=curve) for k, x in enumerate((0.70, 0.80, 0.90))]
    return _point(rng, "cur", "curlora", n, 0.80, effect, curve), front


def _matched(n, effect, seed, curve=lambda x: 2.0 * x):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(SETS):
        p, front = _points(rng, n, effect, curve)
        m = match_by_seed(p, front, "lora")
        out.append(m.tests.get("perplexity_drift"))
    return out


@pytest.mark.parametrize("n", [3, 5, 8, 10])
def test_matched_rows_hold_their_level_and_cover_under_the_null(n):
    """The point lies on the other family's (linear) curve: the per-seed matched test rejects at most
    alpha of the data sets it matches, and its t-interval covers the true difference, 0."""
    tests = [t for t in _matched(n, 0.0, seed=n) if t is not None]
    assert len(tests) > 0.9 * SETS  # the point sits mid-frontier: matched in nearly every data set
    p = np.array([t.p_value for t in tests])
    assert (p <= ALPHA).mean() <= ALPHA + 3 * mcse(ALPHA, len(tests))
    covered = np.mean([t.ci95[0] <= 0 <= t.ci95[1] for t in tests])
    assert covered >= 0.95 - 3 * mcse(0.95, len(tests))


@pytest.mark.parametrize("n", [8, 10])
def test_matched_power_is_what_plan_predicts(n):
    """Against a true shift, the matched test rejects as often as `stats.exact_power` (what `plan`
    and the MDE use) predicts from the per-seed differences' true spread, within tolerance."""
    rng = np.random.default_rng(7)
    diffs = []  # the true spread of one seed's difference under this design, from many null draws
    for _ in range(400):
        p, front = _points(rng, 10, 0.0)
        test = match_by_seed(p, front, "lora").tests.get("perplexity_drift")
        diffs += test.diffs if test else []
    sd = float(np.std(diffs, ddof=1))
    effect = stats.exact_mde(sd, n)  # 80% power predicted
    tests = [t for t in _matched(n, effect, seed=1000 + n) if t is not None]
    power = np.mean([t.p_value <= ALPHA for t in tests])
    assert power == pytest.approx(0.8, abs=3 * mcse(0.8, len(tests)) + 0.04)
    assert stats.exact_power(effect, sd, n) == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("n", [8, 10])
def test_curve_comparison_holds_its_level(n):
    """Two families on one curve (three points each, interleaved plasticities): the seed-level test of
    their fitted lines over the shared range rejects at most alpha of the data sets."""
    rng = np.random.default_rng(50 + n)
    ps = []
    for _ in range(SETS):
        pts = [_point(rng, f"lora-{k}", "lora", n, x) for k, x in enumerate((0.70, 0.80, 0.90))]
        pts += [_point(rng, f"cur-{k}", "curlora", n, x) for k, x in enumerate((0.75, 0.85, 0.95))]
        comparisons = compare_curves(pts, ["lora", "curlora"])
        ps.append(next(c.test.p_value for c in comparisons if c.quantity == "perplexity_drift"))
    ps = np.array(ps)
    assert (ps <= ALPHA).mean() <= ALPHA + 3 * mcse(ALPHA)


def _declared_equivalent(d: np.ndarray, margin: float, resolution: float | None) -> np.ndarray:
    """`agree`'s decision for each data set (a row of paired differences): the 90% t-interval inside
    ±margin, through the report's own classes."""
    return np.array([Agreement("x", "plasticity", 0.0, 0.0, SeedTest.of(list(row), resolution), margin).equivalent
                     for row in d])


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("law", ["normal", "t3", "lattice"])
def test_equivalence_test_holds_its_level_at_the_margin(n, law):
    """True mean difference on the margin (equivalence false): `agree` declares "equivalent" in at
    most alpha of the data sets. lattice: differences in steps of q (one eval example), the margin
    2.5 steps, spread 0.4 of a step, so that most differences are 2 or 3 steps and all of them can
    be equal; it needs the interval's floor of one step (without it, n = 3 declares about 12%)."""
    rng = np.random.default_rng(300 + n)
    margin = 0.01
    if law == "lattice":
        q = margin / 2.5
        d, floor = q * np.round(rng.normal(2.5, 0.4, (SETS, n))), q
    else:
        noise = rng.standard_normal((SETS, n)) if law == "normal" else rng.standard_t(3, (SETS, n))
        d, floor = margin + margin * noise, None
    d = np.where(rng.random((SETS, 1)) < 0.5, d, -d)  # either side of the margin
    size = _declared_equivalent(d, margin, floor).mean()
    assert size <= ALPHA + 3 * mcse(ALPHA)
    if law == "lattice" and n == 3:
        assert _declared_equivalent(d, margin, None).mean() > ALPHA + 3 * mcse(ALPHA)
