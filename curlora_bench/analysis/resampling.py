"""Resampling the matched-plasticity verdict (see `analysis/tradeoff.py`): seeds with the
pairing kept, eval examples when the runs kept their scores, every frontier recomputed per draw."""

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
    axis = to.frontier_quantity
    for p in to.points:
        if p.column in d and "plasticity" in d[p.column] and axis in d[p.column] and not p.off_frontier:
            fams.setdefault(p.family, []).append(p.column)
    hits = {id(m): {"in": 0, **{q: [] for q in MATCHED}} for m in to.matched}
    for k in range(draws):
        fronts = {}
        for f, cols in fams.items():
            order = frontier_of({c: (d[c]["plasticity"][k], d[c][axis][k]) for c in cols})
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
