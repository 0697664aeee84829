"""The learning-forgetting trade-off: does a method forget less *at the same learning*?

Every report column (one method point: its settings, seeds pooled) becomes a `Point` with its
plasticity (mean accuracy of each task right after it was learned: the diagonal of the accuracy
matrix; optionally its gain over head-only at the same head learning rate), final average
accuracy, forgetting, perplexity drift (on the log scale: a ratio) and trainable parameters,
each as a mean with its 95% t-interval over seeds. Per method family the Pareto frontier keeps
the points no other point of the family beats on both plasticity (higher) and drift (lower).

The matched-plasticity verdict reads, for each point of family X, the log drift and the
forgetting family Y reaches at the same plasticity, interpolated linearly along Y's frontier,
and the difference. Its uncertainty comes from resampling (`resample`): in each draw every
point's seeds are resampled (the same draw for points that share their seeds, so pairing is
kept), every run's eval examples too when the runs kept their per-example scores (the same
examples for every run), each point's deviation expanded by sqrt(n/(n-1)) for the small-sample
narrowness of the bootstrap (Hesterberg 2015), then every frontier is recomputed and the point
matched again. So the interval carries the noise of both coordinates of every point, of the
interpolation weights and of which points make a frontier. Reported per point and family: the
observed difference, its 95% interval, the probability that the point is inside the other
family's range, that it is better, a two-sided bootstrap p, and the minimum detectable effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config.regimes import SEQUENTIAL
from ..core import metrics
from . import stats

QUANTITIES = ("plasticity", "final_accuracy", "forgetting", "perplexity_drift")
LOG = ("perplexity_drift",)  # ratios: analysed on the log scale
MATCHED = ("perplexity_drift", "forgetting")  # what the verdict compares at matched plasticity
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
    path: tuple | None = None  # points of one duration path share it (the entry but its epochs)
    epochs: int | None = None


@dataclass
class Resampled:
    """One matched quantity's resampling: over the draws in which the point was in range."""

    ci95: tuple[float, float] | None  # of the difference (X minus Y; log ratio for drift)
    ci90: tuple[float, float] | None  # for an equivalence test (TOST) against a margin
    p_better: float | None  # P(X forgets less than Y at X's plasticity)
    p_value: float | None  # two-sided bootstrap p, 2 min(P(diff < 0), P(diff > 0)), never below the resampling's floor
    mde: float | None  # smallest true difference detectable at 80% power at this n (t quantiles, resampled SE)
    draws: int  # draws in range


@dataclass
class Matched:
    """Point `column` of family X against family `other` at the point's plasticity."""

    column: str
    other: str
    plasticity: float
    in_range: bool
    n: int = 0  # the fewest seeds among the point and the other family's frontier
    values: dict[str, float] = field(default_factory=dict)  # quantity -> Y's value there (analysis scale)
    differences: dict[str, float] = field(default_factory=dict)  # X - Y (log ratio for drift)
    p_in_range: float | None = None  # over the draws
    resampled: dict[str, Resampled] = field(default_factory=dict)


@dataclass
class TradeOff:
    points: list[Point]
    frontiers: dict[str, list[str]]  # family -> its frontier's columns, by plasticity
    matched: list[Matched]
    axis: str = "plasticity"  # or "gain over head-only"
    drift_corpus: str | None = None  # None: the primary corpus
    eval_resampled: bool = False  # eval examples were resampled too (every run kept its scores)
    draws: int = 0
    notes: list[str] = field(default_factory=list)


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
    A = summary.accuracy_matrix
    complete = summary.status == "complete"
    values = {
        "plasticity": metrics.plasticity(A) if complete else None,
        "final_accuracy": summary.metrics.get("average_accuracy") if complete else None,
        "forgetting": summary.metrics.get("forgetting") if complete else None,
        "perplexity_drift": log_drift(summary, corpus) if complete else None,
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


def frontier(points: list[Point]) -> list[Point]:
    """The points no other beats on both plasticity and perplexity drift, by plasticity."""
    usable = {p.column: p for p in points if p.stats["plasticity"] and p.stats["perplexity_drift"]}
    xy = {c: (p.stats["plasticity"].mean, p.stats["perplexity_drift"].mean) for c, p in usable.items()}
    return [usable[c] for c in frontier_of(xy)]


def interpolate(front: list[Point], x: float, quantity: str) -> float | None:
    """`quantity` (analysis scale) along a frontier at plasticity x; None outside it."""
    if any(p.stats[quantity] is None for p in front):
        return None
    return interpolate_at([(p.stats["plasticity"].mean, p.stats[quantity].mean) for p in front], x)


# ---- the trade-off -----------------------------------------------------------------------------

def tradeoff(columns: list, plasticity: str = "absolute", corpus: str | None = None,
             draws: int = DRAWS, scores: dict | None = None, seed: int = 0) -> TradeOff | None:
    """The trade-off of a report's measured columns; None when no column has plasticity.

    `plasticity`: "absolute", or "gain" over head-only at the same head learning rate;
    `corpus`: the drift's corpus (None: the primary); `scores`: column name -> each run's
    per-example scores (to resample eval examples too); `draws`: resampling draws (0: none)."""
    points = [point_of(c.name, [r.summary for r in c.runs], corpus, (scores or {}).get(c.name))
              for c in columns if c.runs]
    notes = []
    if plasticity == "gain":
        points, notes = gain_over_head_only(points, [c for c in columns if c.runs])
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
            for q in MATCHED:
                y = interpolate(fronts[other], px.mean, q)
                if y is not None and p.stats[q] is not None:
                    m.in_range = True
                    m.n = min([p.stats[q].n] + [f.stats[q].n for f in fronts[other]])
                    m.values[q] = y
                    m.differences[q] = p.stats[q].mean - y
            matched.append(m)
    eval_resampled = bool(scores) and all(r.scores for p in points for r in p.runs if r.values["plasticity"] is not None)
    to = TradeOff(points, {f: [p.column for p in front] for f, front in fronts.items()}, matched,
                  "gain over head-only" if plasticity == "gain" else "plasticity", corpus, eval_resampled, draws,
                  notes)
    if draws:
        resample(to, draws, seed)
    return to


def gain_over_head_only(points: list[Point], columns: list) -> tuple[list[Point], list[str]]:
    """Each point's plasticity minus head-only's at the same head learning rate, run by run (by
    seed and order where head-only has that run, else its mean); points without such a head-only
    point leave the trade-off, named in a note."""
    lr_of = {c.name: head_lr(c.runs[0].summary) for c in columns}
    floors = {lr_of[p.column]: p for p in points if p.family == "head-only" and p.stats["plasticity"]}
    kept, dropped = [], []
    for p in points:
        floor = floors.get(lr_of[p.column])
        if p.family == "head-only" or floor is None:
            if p.family != "head-only" and p.stats["plasticity"]:
                dropped.append(p.column)
            continue
        by_key = {r.key: r.values["plasticity"] for r in floor.runs if r.values["plasticity"] is not None}
        mean = floor.stats["plasticity"].mean
        for r in p.runs:  # resampling subtracts head-only's observed values (its own noise is left out)
            if r.values["plasticity"] is not None:
                r.offset = by_key.get(r.key, mean)
                r.values["plasticity"] -= r.offset
        p.stats["plasticity"] = Stat.of([r.values["plasticity"] for r in p.runs if r.values["plasticity"] is not None])
        kept.append(p)
    notes = [f"no head-only point at the same head learning rate, so no gain: {', '.join(dropped)}"] if dropped else []
    return kept, notes


# ---- choosing settings on validation ------------------------------------------------------------

@dataclass
class Selection:
    """Per family, the point whose runs did best on their validation rows, and its eval numbers."""

    family: str
    column: str
    candidates: int  # the family's points that had validation rows
    validation: float  # mean final average accuracy on validation
    stats: dict[str, Stat | None]  # its eval numbers (QUANTITIES)


def select_on_validation(points: list[Point], summaries: dict[str, list]) -> list[Selection]:
    """The point of each family with the highest mean validation final average accuracy (points
    whose runs kept no validation matrix, and regimes without a sequence, take no part)."""
    out = []
    for fam in dict.fromkeys(p.family for p in points):
        scored = []
        for p in points:
            runs = [s for s in summaries[p.column] if s.validation_matrix and s.status == "complete"]
            if p.family != fam or not runs or p.stats["plasticity"] is None:
                continue
            scored.append((sum(metrics.average_accuracy(s.validation_matrix) for s in runs) / len(runs), p))
        if scored:
            best, p = max(scored, key=lambda x: x[0])
            out.append(Selection(fam, p.column, len(scored), best, p.stats))
    return out


# ---- resampling --------------------------------------------------------------------------------

def _run_draws(run: RunValues, eval_idx: dict[str, np.ndarray] | None, draws: int) -> dict[str, np.ndarray]:
    """A run's QUANTITIES in every draw: recomputed from its eval examples resampled by `eval_idx`
    (task -> (draws, n) indices, shared by every run), else its observed values."""
    out = {q: np.full(draws, v, dtype=float) for q, v in run.values.items() if v is not None}
    if eval_idx is None or run.scores is None or run.values["plasticity"] is None:
        return out
    tasks = run.key[1]
    T = len(tasks)
    acc = {(i, j): s[eval_idx[tasks[j]]].mean(axis=1) for (i, j), s in run.scores.items()}
    if any((i, j) not in acc for i in range(T) for j in range(i + 1)):
        return out  # a matrix entry without its scores: keep the observed values
    out["plasticity"] = np.mean([acc[(j, j)] for j in range(T)], axis=0) - run.offset
    out["final_accuracy"] = np.mean([acc[(T - 1, j)] for j in range(T)], axis=0)
    if T > 1:
        out["forgetting"] = np.mean([np.max([acc[(i, j)] for i in range(j, T - 1)], axis=0) - acc[(T - 1, j)]
                                     for j in range(T - 1)], axis=0)
    return out


def _point_draws(points: list[Point], eval_idx, draws: int, rng: np.random.Generator) -> dict[str, dict]:
    """column -> quantity -> (draws,) means over resampled seeds (one draw per seed set, shared),
    each point's deviation from its observed mean expanded by sqrt(n / (n - 1))."""
    seed_idx: dict[tuple, np.ndarray] = {}
    out = {}
    for p in points:
        runs = [r for r in p.runs if r.values["plasticity"] is not None]
        if not runs:
            continue
        per_run = [_run_draws(r, eval_idx, draws) for r in runs]
        sig = tuple(r.key for r in runs)
        if sig not in seed_idx:
            seed_idx[sig] = rng.integers(0, len(runs), size=(draws, len(runs)))
        idx = seed_idx[sig]
        k = math.sqrt(len(runs) / (len(runs) - 1)) if len(runs) > 1 else 0.0
        out[p.column] = {}
        for q in QUANTITIES:
            if p.stats[q] is None or any(q not in d for d in per_run):
                continue
            stack = np.stack([d[q] for d in per_run])  # (runs, draws)
            chosen = stack[idx.T, np.arange(draws)].mean(axis=0)
            out[p.column][q] = p.stats[q].mean + k * (chosen - p.stats[q].mean)
    return out


def resample(to: TradeOff, draws: int, seed: int = 0) -> None:
    """Fill every `Matched` with its resampled uncertainty (see the module's doc)."""
    rng = np.random.default_rng(seed)
    eval_idx = None
    if to.eval_resampled:
        sizes = {}
        for p in to.points:
            for r in p.runs:
                for (_, j), s in (r.scores or {}).items():
                    sizes[r.key[1][j]] = len(s)
        eval_idx = {t: rng.integers(0, n, size=(draws, n)) for t, n in sorted(sizes.items())}
    d = _point_draws(to.points, eval_idx, draws, rng)
    fams: dict[str, list[str]] = {}
    for p in to.points:
        if p.column in d and "plasticity" in d[p.column] and "perplexity_drift" in d[p.column]:
            fams.setdefault(p.family, []).append(p.column)
    hits = {id(m): {"in": 0, **{q: [] for q in MATCHED}} for m in to.matched}
    for k in range(draws):
        fronts = {}
        for f, cols in fams.items():
            order = frontier_of({c: (d[c]["plasticity"][k], d[c]["perplexity_drift"][k]) for c in cols})
            fronts[f] = order
        for m in to.matched:
            if m.column not in d or "plasticity" not in d[m.column] or m.other not in fronts:
                continue
            x = d[m.column]["plasticity"][k]
            front = fronts[m.other]
            inside = False
            for q in MATCHED:
                if q not in d[m.column] or any(q not in d[c] for c in front):
                    continue
                y = interpolate_at([(d[c]["plasticity"][k], d[c][q][k]) for c in front], x)
                if y is not None:
                    inside = True
                    hits[id(m)][q].append(d[m.column][q][k] - y)
            hits[id(m)]["in"] += inside
    for m in to.matched:
        h = hits[id(m)]
        m.p_in_range = h["in"] / draws
        for q in MATCHED:
            arr = np.asarray(h[q])
            if not len(arr):
                continue
            below, ties = float(np.mean(arr < 0)), float(np.mean(arr == 0))
            p_better = below + ties / 2
            p_two = min(1.0, 2 * min(p_better, 1 - p_better))
            m.resampled[q] = Resampled(
                (stats.quantile(arr, 0.025), stats.quantile(arr, 0.975)) if m.n >= 2 else None,
                (stats.quantile(arr, 0.05), stats.quantile(arr, 0.95)) if m.n >= 2 else None,
                p_better, max(p_two, stats.resampling_floor(m.n)) if m.n >= 2 else None,
                stats.mde(float(np.std(arr)) * math.sqrt(m.n), m.n) if m.n >= 2 else None, len(arr))
