"""Resampling the matched-plasticity verdict (see `analysis/tradeoff.py`): seeds with the
pairing kept, eval examples when the runs kept their scores, every frontier recomputed per draw.

Descriptive only: the share of draws in which a point lies within the other family's range, and
P(better) over those draws. Percentile p-values of a seed bootstrap are anti-conservative at a
few seeds (at n = 5, 13% of null data sets gave p <= 0.05), so none is computed here: the report's
p is the exact sign-flip test of the per-seed differences (`points.SeedTest`). A second,
eval-examples-only resampling (the seeds as they ran) gives each matched difference's standard
error from the eval examples alone: the part of its noise that more seeds cannot remove."""

from __future__ import annotations

import math

import numpy as np

from . import stats
from .points import (
    MATCHED,
    QUANTITIES,
    Point,
    Resampled,
    RunValues,
    TradeOff,
    frontier_of,
    interpolate_at,
)


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


def _point_draws(points: list[Point], eval_idx, draws: int, rng: np.random.Generator,
                 seeds: bool = True) -> dict[str, dict]:
    """column -> quantity -> (draws,) means over resampled seeds (one draw per seed set, shared),
    each point's deviation from its observed mean expanded by sqrt(n / (n - 1)); `seeds` False:
    every draw keeps the seeds as they ran (only eval examples are resampled)."""
    seed_idx: dict[tuple, np.ndarray] = {}
    out = {}
    for p in points:
        runs = [r for r in p.runs if r.values["plasticity"] is not None]
        if not runs:
            continue
        per_run = [_run_draws(r, eval_idx, draws) for r in runs]
        sig = tuple(r.key for r in runs)
        if sig not in seed_idx:
            seed_idx[sig] = (rng.integers(0, len(runs), size=(draws, len(runs))) if seeds
                             else np.tile(np.arange(len(runs)), (draws, 1)))
        idx = seed_idx[sig]
        k = (math.sqrt(len(runs) / (len(runs) - 1)) if len(runs) > 1 else 0.0) if seeds else 1.0
        out[p.column] = {}
        for q in QUANTITIES:
            if p.stats[q] is None or any(q not in d for d in per_run):
                continue
            stack = np.stack([d[q] for d in per_run])  # (runs, draws)
            chosen = stack[idx.T, np.arange(draws)].mean(axis=0)
            out[p.column][q] = p.stats[q].mean + k * (chosen - p.stats[q].mean)
    return out


def _matched_draws(to: TradeOff, d: dict, draws: int) -> tuple[dict, dict]:
    """Per matched row (by id): the draws in which its point lay within the other family's frontier,
    and per quantity the drawn differences (X - Y at X's drawn plasticity) in those draws."""
    fams: dict[str, list[str]] = {}
    axis = to.frontier_quantity
    for p in to.points:
        if p.column in d and "plasticity" in d[p.column] and axis in d[p.column] and not p.off_frontier:
            fams.setdefault(p.family, []).append(p.column)
    inside = {id(m): 0 for m in to.matched}
    hits = {id(m): {q: [] for q in MATCHED} for m in to.matched}
    for k in range(draws):
        fronts = {f: frontier_of({c: (d[c]["plasticity"][k], d[c][axis][k]) for c in cols}) for f, cols in fams.items()}
        for m in to.matched:
            if m.column not in d or "plasticity" not in d[m.column] or m.other not in fronts:
                continue
            x = d[m.column]["plasticity"][k]
            front = fronts[m.other]
            hit = False
            for q in MATCHED:
                if q not in d[m.column] or any(q not in d[c] for c in front):
                    continue
                y = interpolate_at([(d[c]["plasticity"][k], d[c][q][k]) for c in front], x)
                if y is not None:
                    hit = True
                    hits[id(m)][q].append(d[m.column][q][k] - y)
            inside[id(m)] += hit
    return inside, hits


EVAL_DRAWS = 400  # draws of the eval-examples-only resampling (a standard error, not a tail)


def resample(to: TradeOff, draws: int, seed: int = 0) -> None:
    """Fill every `Matched` with its bootstrap's descriptive numbers and, where eval examples are
    resampled, its eval-example standard error (see the module's doc)."""
    rng = np.random.default_rng(seed)
    eval_idx = None
    if to.eval_resampled:
        sizes = {}
        for p in to.points:
            for r in p.runs:
                for (_, j), s in (r.scores or {}).items():
                    sizes[r.key[1][j]] = len(s)
        eval_idx = {t: rng.integers(0, n, size=(draws, n)) for t, n in sorted(sizes.items())}
        to.eval_examples = min(sizes.values()) if sizes else None
    inside, hits = _matched_draws(to, _point_draws(to.points, eval_idx, draws, rng), draws)
    for m in to.matched:
        m.p_in_range = inside[id(m)] / draws
        for q in MATCHED:
            arr = np.asarray(hits[id(m)][q])
            if not len(arr):
                continue
            below, ties = float(np.mean(arr < 0)), float(np.mean(arr == 0))
            m.resampled[q] = Resampled(below + ties / 2, len(arr),
                                       (stats.quantile(arr, 0.025), stats.quantile(arr, 0.975)) if m.n >= 2 else None)
    if eval_idx is None:
        return
    few = min(draws, EVAL_DRAWS)
    only = {t: idx[:few] for t, idx in eval_idx.items()}
    _, hits = _matched_draws(to, _point_draws(to.points, only, few, rng, seeds=False), few)
    for m in to.matched:
        for q in MATCHED:
            if q in m.tests and len(hits[id(m)][q]) > 1:
                m.eval_se[q] = float(np.std(hits[id(m)][q], ddof=1))
