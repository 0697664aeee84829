"""The learning-forgetting trade-off: does a method forget less *at the same learning*?

Every report column (one method point: its settings, seeds pooled) becomes a `Point` with its
plasticity (mean accuracy of each task right after it was learned: the diagonal of the
accuracy matrix), final average accuracy, forgetting, perplexity drift and trainable
parameters, each as mean and 95% t-interval over seeds. Per method family the Pareto frontier
keeps the points no other point of the family beats on both plasticity (higher) and
perplexity drift (lower). The matched-plasticity verdict reads, for each point of family X,
the drift and forgetting family Y reaches at the same plasticity, interpolated linearly
along Y's frontier (or "out of Y's range"), with the difference and its uncertainty over seeds
(independent standard errors, the interpolation's weights applied to Y's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config.regimes import SEQUENTIAL
from ..core import metrics


@dataclass
class Stat:
    mean: float
    se: float  # standard error of the mean (0 for one seed)
    n: int
    ci95: tuple[float, float] | None

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        if not values:
            return None
        m, s = metrics.mean_std(values)
        return cls(m, s / math.sqrt(len(values)), len(values), metrics.t_interval(values))


@dataclass
class Point:
    column: str
    family: str
    settings_hash: str | None
    stats: dict[str, Stat | None]
    trainable_parameters: int
    on_frontier: bool = False


@dataclass
class Matched:
    """Point `column` of family X against family `other` at the point's plasticity."""

    column: str
    other: str
    plasticity: float
    in_range: bool
    values: dict[str, tuple[float, float]] = field(default_factory=dict)  # quantity -> (Y's value, its se)
    differences: dict[str, tuple[float, tuple[float, float] | None]] = field(default_factory=dict)  # X - Y, CI


@dataclass
class TradeOff:
    points: list[Point]
    frontiers: dict[str, list[str]]  # family -> its frontier's columns, by plasticity
    matched: list[Matched]


def family(method: dict, regime: str = SEQUENTIAL) -> str:
    """Points of one family differ only in their settings: lora, curlora, peft-dora, ...; a
    continual-learning strategy makes its own family (lora+ewc, lora+replay): it changes the
    algorithm, and a grid over its options (strategy.lambda) traces that family's frontier. A
    regime other than sequential (joint training) is a family of its own, named after it."""
    if regime != SEQUENTIAL:
        return regime
    name = method["method"] + (f"-{str(method['type']).lower()}" if method["method"] == "peft" else "")
    strategy = method.get("strategy")
    return name + (f"+{strategy['name']}" if isinstance(strategy, dict) and strategy.get("name") else "")


def point_of(column: str, summaries: list) -> Point:
    values = {
        "plasticity": [metrics.plasticity(s.accuracy_matrix) for s in summaries],
        "final_accuracy": [s.metrics.get("average_accuracy") for s in summaries],
        "forgetting": [s.metrics.get("forgetting") for s in summaries],
        "perplexity_drift": [s.metrics.get("perplexity_drift") for s in summaries],
    }
    ok = [s.status == "complete" for s in summaries]
    stats = {q: Stat.of([v for v, good in zip(vs, ok) if good and v is not None]) for q, vs in values.items()}
    first = summaries[0]
    return Point(column, family(first.method, first.regime), first.settings_hash, stats, first.trainable_parameters)


def frontier(points: list[Point]) -> list[Point]:
    """The points no other beats on both plasticity and perplexity drift, by plasticity."""
    usable = [p for p in points if p.stats["plasticity"] and p.stats["perplexity_drift"]]
    best = []
    for p in usable:
        x, y = p.stats["plasticity"].mean, p.stats["perplexity_drift"].mean
        dominated = any(q is not p and q.stats["plasticity"].mean >= x and q.stats["perplexity_drift"].mean <= y
                        and (q.stats["plasticity"].mean > x or q.stats["perplexity_drift"].mean < y) for q in usable)
        if not dominated:
            best.append(p)
    return sorted(best, key=lambda p: p.stats["plasticity"].mean)


def interpolate(front: list[Point], x: float, quantity: str) -> tuple[float, float] | None:
    """(value, standard error) of `quantity` along a frontier at plasticity x; None outside it."""
    xs = [p.stats["plasticity"].mean for p in front]
    if not front or x < xs[0] or x > xs[-1] or any(p.stats[quantity] is None for p in front):
        return None
    for a, b in zip(front, front[1:] or front):
        xa, xb = a.stats["plasticity"].mean, b.stats["plasticity"].mean
        if xa <= x <= xb:
            w = 0.0 if xb == xa else (x - xa) / (xb - xa)
            ya, yb = a.stats[quantity], b.stats[quantity]
            return (1 - w) * ya.mean + w * yb.mean, math.hypot((1 - w) * ya.se, w * yb.se)
    return None


def difference(x: Stat, y: tuple[float, float], n: int) -> tuple[float, tuple[float, float] | None]:
    diff = x.mean - y[0]
    se = math.hypot(x.se, y[1])
    if n < 2:
        return diff, None
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * se
    return diff, (diff - half, diff + half)


def tradeoff(columns: list) -> TradeOff | None:
    """The trade-off of a report's measured columns; None when no column has plasticity."""
    points = [point_of(c.name, [r.summary for r in c.runs]) for c in columns if c.runs]
    if not any(p.stats["plasticity"] for p in points):
        return None
    families = list(dict.fromkeys(p.family for p in points))
    fronts = {f: frontier([p for p in points if p.family == f]) for f in families}
    for front in fronts.values():
        for p in front:
            p.on_frontier = True
    # a family without plasticity (joint training: one stage) has no frontier to be matched on
    others = [f for f in families if fronts[f]]
    matched = []
    for p in points:
        px = p.stats["plasticity"]
        if px is None:
            continue
        for other in others:
            if other == p.family:
                continue
            m = Matched(p.column, other, px.mean, in_range=False)
            for q in ("perplexity_drift", "forgetting"):
                y = interpolate(fronts[other], px.mean, q)
                if y is not None and p.stats[q] is not None:
                    n = min([p.stats[q].n] + [f.stats[q].n for f in fronts[other]])
                    m.in_range = True
                    m.values[q] = y
                    m.differences[q] = difference(p.stats[q], y, n)
            matched.append(m)
    return TradeOff(points, {f: [p.column for p in front] for f, front in fronts.items()}, matched)
