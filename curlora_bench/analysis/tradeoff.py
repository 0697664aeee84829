"""The learning-forgetting trade-off: does a method forget less *at the same learning*?

Every report column (one method point: its settings, seeds pooled) becomes a `Point` with its
plasticity (mean accuracy of each task right after it was learned: the diagonal of the accuracy
matrix; optionally its gain over head-only at the same head learning rate), final average
accuracy, forgetting, perplexity drift (on the log scale: a ratio) and trainable parameters,
each as a mean with its 95% t-interval over seeds. Per method family the Pareto frontier keeps
the points no other point of the family beats on both plasticity (higher) and drift (lower).

The matched-plasticity verdict compares, seed by seed, each run of a point of family X with
family Y's frontier drawn through the same seed's runs, at that run's plasticity (linear
interpolation along the frontier; log drift for drift): one difference per seed. The primary
statistics are on those differences (`points.match_by_seed`, `SeedTest`): their mean, a
t-interval, the exact two-sided sign-flip p (Holm-adjusted over the table where printed) and how
many seeds agree in sign. A point is matched only where every seed lies within its seed's
frontier. The bootstrap (`resample`: seeds and eval examples resampled, every frontier
recomputed per draw) adds descriptive numbers only: the share of draws in range and P(better);
an eval-examples-only bootstrap gives the eval-example standard error that more seeds cannot
remove (`analysis/power.py` turns both into the power of the test that is run). Where both
families have at least three points over a shared range, `analysis/curves.py` compares their
fitted curves over it, seed by seed, with the same exact test.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import metrics
from .curves import compare_curves
from .points import (
    DRAWS,
    FORGETTING,
    LOG,
    MATCHED,
    QUANTITIES,
    Matched,
    Point,
    Resampled,
    RunValues,
    Stat,
    TradeOff,
    adjust_family,
    family,
    frontier,
    frontier_of,
    head_lr,
    interpolate,
    interpolate_at,
    match_by_seed,
    point_of,
)
from .resampling import resample

__all__ = ["DRAWS", "FORGETTING", "LOG", "MATCHED", "QUANTITIES", "Matched", "Point", "Resampled", "RunValues", "Selection", "Stat",
           "TradeOff", "family", "frontier", "frontier_of", "gain_over_head_only", "interpolate", "interpolate_at",
           "duration_paths", "point_of", "resample", "select_on_validation", "tradeoff"]


# ---- the trade-off -----------------------------------------------------------------------------

def tradeoff(columns: list, plasticity: str = "absolute", corpus: str | None = None,
             draws: int = DRAWS, scores: dict | None = None, seed: int = 0,
             forgetting: str = "perplexity") -> TradeOff | None:
    """The trade-off of a report's measured columns; None when no column has plasticity.

    `plasticity`: "absolute", or "gain" over head-only at the same head learning rate;
    `corpus`: the drift's corpus (None: the primary); `scores`: column name -> each run's
    per-example scores (to resample eval examples too); `draws`: resampling draws (0: none);
    `forgetting`: the axis the frontiers minimise (perplexity drift, the general-ability drop of
    `general:`, or task forgetting; `FORGETTING`)."""
    points = [point_of(c.name, [r.summary for r in c.runs], corpus, (scores or {}).get(c.name))
              for c in columns if c.runs]
    notes = []
    if plasticity == "gain":
        points, notes = gain_over_head_only(points, [c for c in columns if c.runs])
    if not any(p.stats["plasticity"] for p in points):
        return None
    # a point of one seed cannot be resampled: on a frontier it would leave every row matched against
    # that frontier without an interval, so where other points have several seeds it stays off them
    if any(p.stats["plasticity"] and p.stats["plasticity"].n > 1 for p in points):
        thin = [p for p in points if p.stats["plasticity"] and p.stats["plasticity"].n < 2]
        for p in thin:
            p.off_frontier = True
        if thin:
            notes.append("kept off the frontiers, one seed where other points have several (it is matched, "
                         f"without an interval, but no one is matched against it): {', '.join(p.column for p in thin)}")
    families = list(dict.fromkeys(p.family for p in points))
    fronts = {f: frontier([p for p in points if p.family == f], FORGETTING[forgetting]) for f in families}
    for front in fronts.values():
        for p in front:
            p.on_frontier = True
    # a family without plasticity (joint training: one stage) has no frontier to be matched on
    others = [f for f in families if fronts[f]]
    matched = [match_by_seed(p, fronts[other], other) for p in points if p.stats["plasticity"] is not None
               for other in others if other != p.family]
    unscored = [p.column for p in points if any(not r.scores for r in p.runs if r.values["plasticity"] is not None)]
    eval_resampled = bool(scores) and not unscored
    if scores and unscored and draws:  # some runs kept their per-example scores, not all
        notes.append("eval examples not resampled (seeds only): no per-example scores (predictions.jsonl) in "
                     f"some runs of {', '.join(unscored)}")
    to = TradeOff(points, {f: [p.column for p in front] for f, front in fronts.items()}, matched,
                  "gain over head-only" if plasticity == "gain" else "plasticity", corpus, forgetting, eval_resampled,
                  draws, notes)
    to.curves = compare_curves(points, others)
    adjust(to)
    if draws:
        resample(to, draws, seed)
    return to


def adjust(to: TradeOff) -> None:
    """Holm's adjustment over each table's exact p (the matched rows; the curve comparisons), and
    each test's MDE at Holm's first step, alpha / (the table's tests)."""
    adjust_family([m.tests[q] for m in to.matched if m.in_range for q in MATCHED if q in m.tests])
    adjust_family([c.test for c in to.curves])


def duration_paths(to: TradeOff) -> list[list[Point]]:
    """Points with plasticity that differ only in their epochs (one entry trained longer), one list
    per such entry in order of epochs; an entry measured at a single duration makes no path, and a
    point whose settings do not record its epochs joins none."""
    paths: dict[tuple, list[Point]] = {}
    for p in to.points:
        if p.path is not None and p.epochs is not None and p.stats["plasticity"]:
            paths.setdefault(p.path, []).append(p)
    return [sorted(pts, key=lambda p: p.epochs) for pts in paths.values() if len({p.epochs for p in pts}) > 1]


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
