"""Comparing two families' trade-off curves over the plasticity range they share.

Matching one point against another family's frontier interpolates along a chord between two of
its points; where the curve is convex (LoRA's log drift rises faster as it learns more) the chord
overstates it between its points. Where both families have at least `MIN_POINTS` points, this
compares their *curves*: per seed, each family's points (that seed's runs) are fitted by a
straight line in plasticity on the analysis scale (log drift; forgetting), by least squares, and
the seed's statistic is the mean difference of the two lines over the shared range [lo, hi] (the
overlap of the families' mean-plasticity ranges, the same for every seed), which for two lines is
their difference at the range's midpoint. The per-seed statistics get the exact sign-flip test
and a t-interval (`points.SeedTest`), like every other comparison.

Why a line: with three to five points per family and seed, a line is the richest fit that the
data determine stably (a quadratic through three noisy points swings widely between them), and
its error under curvature is smallest at the middle of the range, where the statistic reads it.
The price: it averages the curve over each family's whole range, so it says "over this range,
on average", not "at every plasticity"; the matched rows give the latter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .points import MATCHED, Point, SeedTest

MIN_POINTS = 3


@dataclass
class CurveComparison:
    family: str
    other: str
    quantity: str
    lo: float  # the shared plasticity range
    hi: float
    points: tuple[int, int]  # points fitted per family
    test: SeedTest  # per seed: mean of (family's line - other's line) over [lo, hi]


def _line(points: list[Point], key: tuple, quantity: str) -> tuple[float, float] | None:
    """(intercept, slope) of `quantity` on plasticity over the points' runs of seed `key` (None where
    fewer than MIN_POINTS of them ran that seed)."""
    xy = []
    for p in points:
        run = next((r for r in p.runs if r.key == key and r.values["plasticity"] is not None
                    and r.values.get(quantity) is not None), None)
        if run is not None:
            xy.append((run.values["plasticity"], run.values[quantity]))
    if len(xy) < MIN_POINTS or len({x for x, _ in xy}) < 2:
        return None
    x, y = np.array(xy).T
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean()) / (dx @ dx))  # least squares
    return float(y.mean() - slope * x.mean()), slope


def compare_curves(points: list[Point], families: list[str]) -> list[CurveComparison]:
    """Every ordered pair of families with at least MIN_POINTS points each over an overlapping range
    (each unordered pair once, in the order the families come), per matched quantity."""
    by_family = {f: [p for p in points if p.family == f and p.stats["plasticity"] and not p.off_frontier]
                 for f in families}
    out = []
    for i, a in enumerate(families):
        for b in families[i + 1:]:
            pa, pb = by_family[a], by_family[b]
            if len(pa) < MIN_POINTS or len(pb) < MIN_POINTS:
                continue
            xa = [p.stats["plasticity"].mean for p in pa]
            xb = [p.stats["plasticity"].mean for p in pb]
            lo, hi = max(min(xa), min(xb)), min(max(xa), max(xb))
            if hi <= lo:
                continue
            mid = (lo + hi) / 2
            keys = sorted({r.key for p in pa for r in p.runs} & {r.key for p in pb for r in p.runs}, key=repr)
            for q in MATCHED:
                diffs = []
                for key in keys:
                    la, lb = _line(pa, key, q), _line(pb, key, q)
                    if la is not None and lb is not None:
                        diffs.append((la[0] + la[1] * mid) - (lb[0] + lb[1] * mid))
                if diffs:
                    out.append(CurveComparison(a, b, q, lo, hi, (len(pa), len(pb)), SeedTest.of(diffs)))
    return out
