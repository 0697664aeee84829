"""The trade-off's points: each report column's values over its runs, the families they belong
to, and the plain-number frontier and interpolation both the observed verdict and every
resampling draw use (`analysis/tradeoff.py` assembles them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config.regimes import SEQUENTIAL
from ..core import metrics
from . import stats

QUANTITIES = ("plasticity", "final_accuracy", "forgetting", "perplexity_drift", "general_drop")
LOG = ("perplexity_drift",)  # ratios: analysed on the log scale
# what the verdict compares at matched plasticity (general_drop where the runs measured `general:`)
MATCHED = ("perplexity_drift", "forgetting", "general_drop")
# `report --forgetting`: the trade-off's forgetting axis (what its frontiers minimise) -> its quantity
FORGETTING = {"perplexity": "perplexity_drift", "general": "general_drop", "tasks": "forgetting"}
DRAWS = 2000


@dataclass
class Stat:
    """Mean, standard error and 95% t-interval over seeds, on the analysis scale (log for ratios)."""

    mean: float
    se: float  # standard error of the mean (0 for one seed)
    n: int
    ci95: tuple[float, float] | None
    log: bool = False

    @classmethod
    def of(cls, values: list[float], log: bool = False) -> Stat | None:
        if not values:
            return None
        values = stats.log_values(values) if log else values
        m, s = metrics.mean_std(values)
        return cls(m, s / math.sqrt(len(values)), len(values), metrics.t_interval(values), log)

    @property
    def shown(self) -> float:
        """The mean as read: a geometric mean for a ratio."""
        return math.exp(self.mean) if self.log else self.mean

    @property
    def shown_ci(self) -> tuple[float, float] | None:
        if self.ci95 is None:
            return None
        return (math.exp(self.ci95[0]), math.exp(self.ci95[1])) if self.log else self.ci95


@dataclass
class RunValues:
    """One run of a point: its identity in the pairing, its values, and what resampling needs."""

    key: tuple  # (seed, task order): runs of different points with equal keys share seed and data
    values: dict[str, float | None]  # QUANTITIES, on the analysis scale
    matrix: list[list[float | None]]
    scores: dict[tuple[int, int], np.ndarray] | None = None  # (row, task) -> each eval example's score
    offset: float = 0.0  # subtracted from plasticity (gain over head-only: head-only's)


@dataclass
class Point:
    column: str
    family: str
    settings_hash: str | None
    stats: dict[str, Stat | None]
    trainable_parameters: int
    runs: list[RunValues] = field(default_factory=list, repr=False)
    on_frontier: bool = False
    off_frontier: bool = False  # one seed where others have several: kept off every frontier (see tradeoff)
    path: tuple | None = None  # points of one duration path share it (the entry but its epochs)
    epochs: int | None = None  # None: the run's settings do not record it (then it joins no path)


@dataclass
class SeedTest:
    """The exact test of one comparison from its per-seed differences: the primary statistic of every
    matched row, curve comparison and paired difference (on the analysis scale: log ratios for drift).

    The estimate is the mean of the differences; the interval a t-interval on them; p the exact
    two-sided sign-flip (permutation) p, which never goes below 2 / 2^n. With `resolution` (the
    smallest step the differences can take: one eval example of a count-based score), the intervals
    use a standard deviation of at least that step: differences on a lattice can all be equal (sd 0,
    a zero-width interval) by the lattice's coarseness rather than the process's precision."""

    diffs: list[float]
    mean: float
    sd: float | None  # standard deviation of one difference (None for one)
    ci95: tuple[float, float] | None  # t-interval of the mean
    ci90: tuple[float, float] | None  # for an equivalence test (two one-sided tests at 5%)
    p_value: float | None  # exact sign-flip, two-sided
    p_holm: float | None = None  # Holm-adjusted over the table it is printed in
    mde: float | None = None  # the smallest true difference it detects at 80% power after Holm (inf: none at n)

    @classmethod
    def of(cls, diffs: list[float], resolution: float | None = None) -> SeedTest:
        n = len(diffs)
        mean = float(np.mean(diffs))
        if n < 2:
            return cls(list(diffs), mean, None, None, None, None)
        sd = float(np.std(diffs, ddof=1))
        spread = max(sd, resolution or 0.0)
        ci = (mean - stats.t_half_width(spread, n), mean + stats.t_half_width(spread, n))
        ci90 = (mean - stats.t_half_width(spread, n, 0.90), mean + stats.t_half_width(spread, n, 0.90))
        return cls(list(diffs), mean, sd, ci, ci90, stats.sign_flip_p(diffs))

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def agree(self) -> tuple[int, int, int]:
        """(seeds above 0, below 0, n)."""
        return stats.agreeing(self.diffs)


def adjust_family(tests: list[SeedTest], alpha: float = 0.05) -> None:
    """One table's tests: Holm's adjustment over their p, and each one's MDE at Holm's first step,
    alpha / (the tests with a p)."""
    family = sum(t.p_value is not None for t in tests)
    for t, p_holm in zip(tests, stats.holm([t.p_value for t in tests])):
        t.p_holm = p_holm
        t.mde = None if t.sd is None else stats.exact_mde(t.sd, t.n, alpha / max(1, family))


@dataclass
class Resampled:
    """One matched quantity's bootstrap (seeds and, where kept, eval examples; every frontier
    recomputed per draw): descriptive only, never a p-value. Over the draws in which the point
    lay within the other family's frontier (`draws` of them; `Matched.p_in_range` their share)."""

    p_better: float | None  # share of those draws in which X forgets less than Y at X's plasticity
    draws: int  # draws in range
    ci95: tuple[float, float] | None = None  # percentile interval of the drawn differences (descriptive)


@dataclass
class Matched:
    """Point `column` of family X against family `other` at the point's plasticity, seed by seed:
    each seed's run of the point against the other family's frontier drawn through the same seed's
    runs (the frontier's means where one of its points lacks that seed: `mean_frontier` seeds).
    Matched (`in_range`) only where every seed of the point lies within its seed's frontier."""

    column: str
    other: str
    plasticity: float  # the point's mean plasticity
    in_range: bool
    n: int = 0  # the point's seeds (with plasticity)
    seeds_in_range: int = 0
    mean_frontier: int = 0  # seeds matched against the frontier of means (the frontier lacks the seed)
    values: dict[str, float] = field(default_factory=dict)  # quantity -> Y's value there, mean over seeds
    differences: dict[str, float] = field(default_factory=dict)  # X - Y, mean over seeds (log ratio for drift)
    tests: dict[str, SeedTest] = field(default_factory=dict)  # quantity -> exact test of the per-seed differences
    p_in_range: float | None = None  # share of bootstrap draws in range
    resampled: dict[str, Resampled] = field(default_factory=dict)
    eval_se: dict[str, float] = field(default_factory=dict)  # quantity -> standard error from eval examples alone


@dataclass
class TradeOff:
    points: list[Point]
    frontiers: dict[str, list[str]]  # family -> its frontier's columns, by plasticity
    matched: list[Matched]
    axis: str = "plasticity"  # or "gain over head-only"
    drift_corpus: str | None = None  # None: the primary corpus
    forgetting: str = "perplexity"  # the forgetting axis (FORGETTING)
    eval_resampled: bool = False  # eval examples were resampled too (every run kept its scores)
    draws: int = 0
    notes: list[str] = field(default_factory=list)
    eval_examples: int | None = None  # eval examples per task (the fewest), where they were resampled
    curves: list = field(default_factory=list)  # `curves.CurveComparison`s: fitted curves over a shared range

    @property
    def frontier_quantity(self) -> str:
        return FORGETTING[self.forgetting]


def family(method: dict, regime: str = SEQUENTIAL) -> str:
    """Points of one family differ only in their settings: lora, curlora, peft-dora, ...; a
    continual-learning strategy makes its own family (lora+ewc, lora+replay): it changes the
    algorithm, and a grid over its options (strategy.lambda) traces that family's frontier.
    CURLoRA's random-C/R control is a family of its own (curlora+randcr). A regime other than
    sequential (joint training) is a family of its own, named after it."""
    if regime != SEQUENTIAL:
        return regime
    name = method["method"] + (f"-{str(method['type']).lower()}" if method["method"] == "peft" else "")
    if method.get("cr") == "random":
        name += "+randcr"
    strategy = method.get("strategy")
    return name + (f"+{strategy['name']}" if isinstance(strategy, dict) and strategy.get("name") else "")


def effective_train(summary, key: str):
    """A train setting of a run as it ran: the method's own `train:` over the experiment's."""
    own = (summary.method.get("train") or {})
    return own[key] if key in own else (summary.settings.get("train") or {}).get(key)


def head_lr(summary) -> float | None:
    """The rate the run's task heads learned at (`train.head_lr`, else `train.lr`)."""
    return effective_train(summary, "head_lr") or effective_train(summary, "lr")


def log_drift(summary, corpus: str | None) -> float | None:
    if corpus is None:
        drift = summary.metrics.get("perplexity_drift")
    else:
        p = (summary.perplexities or {}).get(corpus)
        drift = metrics.perplexity_drift(p.initial, p.final) if p else None
    return math.log(drift) if drift else None


def run_values(summary, corpus: str | None, scores=None) -> RunValues:
    A = summary.score_matrix
    complete = summary.status == "complete"
    values = {
        "plasticity": metrics.plasticity(A) if complete else None,
        "final_accuracy": summary.metrics.get("average_accuracy") if complete else None,
        "forgetting": summary.metrics.get("forgetting") if complete else None,
        "perplexity_drift": log_drift(summary, corpus) if complete else None,
        # the drop of the `general:` harness tasks' average (before - after the last stage)
        "general_drop": metrics.general_ability(summary.general, "drop") if complete else None,
    }
    return RunValues((summary.seed, tuple(summary.tasks)), values, A, scores)


def point_of(column: str, summaries: list, corpus: str | None = None, scores: list | None = None) -> Point:
    runs = [run_values(s, corpus, scores[k] if scores else None) for k, s in enumerate(summaries)]
    point_stats = {}
    for q in QUANTITIES:
        vals = [r.values[q] for r in runs if r.values[q] is not None]
        point_stats[q] = Stat.of([math.exp(v) for v in vals] if q in LOG else vals, log=q in LOG)
    first = summaries[0]
    entry = {k: v for k, v in first.method.items() if k != "label"}
    train = {k: v for k, v in (entry.get("train") or {}).items() if k != "epochs"}
    path = (family(first.method, first.regime), repr(sorted({**entry, "train": train}.items())))
    return Point(column, family(first.method, first.regime), first.settings_hash, point_stats,
                 first.trainable_parameters, runs, path=path, epochs=effective_train(first, "epochs"))


# ---- frontiers and interpolation (plain numbers: the observed means, or one draw's) ----------------

def frontier_of(xy: dict[str, tuple[float, float]]) -> list[str]:
    """The names no other beats on both x (higher) and y (lower), by x."""
    best = [p for p, (x, y) in xy.items()
            if not any(q != p and xq >= x and yq <= y and (xq > x or yq < y) for q, (xq, yq) in xy.items())]
    return sorted(best, key=lambda p: xy[p][0])


def interpolate_at(front: list[tuple[float, float]], x: float) -> float | None:
    """y along a frontier of (x, y) points, linearly between neighbours; None outside its range."""
    if not front or x < front[0][0] or x > front[-1][0]:
        return None
    for (xa, ya), (xb, yb) in zip(front, front[1:] or front):
        if xa <= x <= xb:
            w = 0.0 if xb == xa else (x - xa) / (xb - xa)
            return (1 - w) * ya + w * yb
    return None


def frontier(points: list[Point], quantity: str = "perplexity_drift") -> list[Point]:
    """The points no other beats on both plasticity and `quantity` (the forgetting axis: perplexity
    drift, general-ability drop or task forgetting; lower is better), by plasticity."""
    usable = {p.column: p for p in points if p.stats["plasticity"] and p.stats[quantity] and not p.off_frontier}
    xy = {c: (p.stats["plasticity"].mean, p.stats[quantity].mean) for c, p in usable.items()}
    return [usable[c] for c in frontier_of(xy)]


def interpolate(front: list[Point], x: float, quantity: str) -> float | None:
    """`quantity` (analysis scale) along a frontier at plasticity x; None outside it."""
    if any(p.stats[quantity] is None for p in front):
        return None
    return interpolate_at([(p.stats["plasticity"].mean, p.stats[quantity].mean) for p in front], x)


# ---- matching seed by seed: the exact test's differences -------------------------------------------

def seed_curve(front: list[Point], key: tuple, quantity: str) -> list[tuple[float, float]] | None:
    """The frontier through one seed's runs, (plasticity, quantity) sorted by plasticity; None where
    a frontier point lacks that seed's run."""
    curve = []
    for f in front:
        run = next((r for r in f.runs if r.key == key and r.values["plasticity"] is not None
                    and r.values.get(quantity) is not None), None)
        if run is None:
            return None
        curve.append((run.values["plasticity"], run.values[quantity]))
    return sorted(curve)


def match_by_seed(point: Point, front: list[Point], other: str) -> Matched:
    """`point` against the frontier `front` of family `other`, seed by seed (see `Matched`)."""
    runs = [r for r in point.runs if r.values["plasticity"] is not None]
    m = Matched(point.column, other, point.stats["plasticity"].mean, in_range=False, n=len(runs))
    inside: set[tuple] = set()
    for q in MATCHED:
        if point.stats[q] is None or any(f.stats[q] is None for f in front):
            continue
        means = [(f.stats["plasticity"].mean, f.stats[q].mean) for f in front]
        diffs, theirs, lacking = [], [], 0
        for r in runs:
            curve = seed_curve(front, r.key, q)
            if curve is None:
                lacking += 1
                curve = means
            y = interpolate_at(curve, r.values["plasticity"]) if r.values.get(q) is not None else None
            if y is not None:
                inside.add(r.key)
                diffs.append(r.values[q] - y)
                theirs.append(y)
        m.mean_frontier = max(m.mean_frontier, lacking)
        if diffs and len(diffs) == len(runs):
            m.tests[q] = SeedTest.of(diffs)
            m.values[q] = float(np.mean(theirs))
            m.differences[q] = m.tests[q].mean
    m.seeds_in_range = len(inside)
    m.in_range = bool(m.tests) and m.seeds_in_range == m.n
    if not m.in_range:
        m.tests, m.values, m.differences = {}, {}, {}
    return m
