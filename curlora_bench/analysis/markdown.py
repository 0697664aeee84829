"""The report's statistics sections in Markdown: paired differences, task order against seed,
example-level McNemar tests, the learning–forgetting trade-off and its matched-plasticity verdict.

Ratios (perplexity drift) are shown as ratios: geometric means and back-transformed intervals
(×1.013 [×1.002, ×1.025]); a difference of drifts is their ratio, method over the other.
"""

from __future__ import annotations

import math

from . import stats
from .paired import quantity_name
from .tradeoff import MATCHED, TradeOff, duration_paths

NAMES = {"perplexity_drift": "perplexity drift", "forgetting": "forgetting", "general_drop": "general-ability drop"}


def p_text(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}" if p >= 1e-4 else "<1e-4"


def ratio(v: float) -> str:
    return f"×{v:.3f}" if v < 1000 else f"×{v:.3g}"


def shown(value: float, log: bool, signed: bool = False) -> str:
    """A value on the analysis scale as read: a ratio for a log, else a (signed) number."""
    if log:
        return ratio(math.exp(value))
    return f"{round(value, 3) + 0.0:+.3f}" if signed else f"{value:.3f}"


def with_ci(value: float, ci: tuple[float, float] | None, log: bool, signed: bool = True) -> str:
    text = shown(value, log, signed)
    return text + (f" [{shown(ci[0], log, signed)}, {shown(ci[1], log, signed)}]" if ci else "")


def mde_text(mde: float | None, log: bool) -> str:
    if mde is None:
        return "-"
    return ratio(math.exp(mde)) if log else f"{mde:.3f}"


def section(title: str, header: list[str], rows: list[list]) -> list[str]:
    """A `###` section with one Markdown table (its lines, a blank line first)."""
    return ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def paired_markdown(t) -> str:
    """Each method minus the baseline on the runs they share (same seed and task order)."""
    lines = section(f"Paired differences against {t.baseline} (same seeds and orders; method minus baseline, "
                    "drift as method / baseline)",
                    ["method", "quantity", "n", "difference [95% CI]", "p (paired t)", "p (Holm)", "MDE (80% power)"],
                    [[d.column, quantity_name(d.quantity, t.score_word), d.n, "-" if d.mean is None else with_ci(d.mean, d.ci95, d.log),
                      p_text(d.p_value), p_text(d.p_holm), mde_text(d.mde, d.log)] for d in t.paired])
    ns = [d.n for d in t.paired if d.n]
    notes = ["Holm's adjustment runs over every p of this table. MDE: the smallest true difference a paired "
             "t-test at α = 0.05 detects with 80% power at this n and this spread; a smaller one may well be "
             "there, undetected, where the interval includes no difference."]
    if ns and min(ns) < 6:
        n = min(ns)
        notes.append(f"With n = {n} pairs an exact sign-flip test cannot give p below "
                     f"{stats.sign_flip_floor(n):.3g}; the t-test's smaller p values lean on normality.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"_{n}_  " for n in notes) + "\n"


def orders_markdown(t) -> str:
    """Spread due to the task order (sd of the per-order means) beside spread due to the seed."""
    lines = section("Task order vs seed (seeds and orders pooled above)",
                    ["method", "quantity", "orders", "seeds per order", "mean", "sd across orders",
                     "sd across seeds (mean over orders)"],
                    [[o.column, quantity_name(o.quantity, t.score_word), o.orders, o.seeds, f"{o.mean:.3f}", f"{o.order_sd:.3f}",
                      "-" if o.seed_sd is None else f"{o.seed_sd:.3f}"] for o in t.orders])
    return "\n".join(lines) + "\n"


def mcnemar_markdown(t) -> str:
    """Each method against the baseline example by example on the final stage, per task."""
    lines = section(f"Example by example against {t.baseline} (final stage, same eval examples; exact McNemar, "
                    "discordant pairs summed over the shared seeds)",
                    ["method", "task", "runs", "both right", "only method right", "only baseline right", "p", "p (Holm)"],
                    [[m.column, m.task, m.runs, m.both, m.ours, m.theirs, p_text(m.p_value), p_text(m.p_holm)]
                     for m in t.mcnemar])
    return "\n".join(lines) + "\n"


def _stat(s) -> str:
    if s is None:
        return "-"
    if s.log:
        return with_ci(s.mean, s.ci95, True)
    return f"{s.mean:.3f}" + (f" [{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]" if s.ci95 else "")


def tradeoff_markdown(to: TradeOff, effect: float = 0.02, margin: float | None = None, word: str = "accuracy") -> str:
    """The trade-off per method point, each family's frontier, and the matched-plasticity verdict
    (`word`: what the final average averages, accuracy or score)."""
    corpus = f" on {to.drift_corpus}" if to.drift_corpus else ""
    general = any(p.stats["general_drop"] for p in to.points)
    quantities = ["plasticity", "final_accuracy", "forgetting", "perplexity_drift", *(["general_drop"] if general else [])]
    axis = f"; frontiers on {NAMES[to.frontier_quantity]}" if to.forgetting != "perplexity" else ""
    lines = ["", f"### Learning vs forgetting (seeds pooled: mean [95% CI]; drift{corpus}: geometric{axis})", "",
             f"| point | family | n | {to.axis} | final avg {word} | forgetting | perplexity drift | "
             + ("general-ability drop | " if general else "") + "trainable | frontier |",
             "|---" * (len(quantities) + 5) + "|"]
    for p in to.points:
        n = max((s.n for s in p.stats.values() if s), default=0)
        lines.append(f"| {p.column} | {p.family} | {n} | " + " | ".join(_stat(p.stats[q]) for q in quantities) +
                     f" | {p.trainable_parameters:,} | {'✓' if p.on_frontier else ''} |")
    lines += ["", *(f"_{n}_  " for n in to.notes)] if to.notes else []
    lines += duration_lines(to)
    lines += matched_lines(to, effect, margin)
    return "\n".join(lines) + "\n"


def duration_lines(to: TradeOff) -> list[str]:
    """Families' points that differ only in their epochs, as paths over training duration."""
    paths = duration_paths(to)
    if not paths:
        return []
    lines = ["", "### Over training duration (the same entry trained for more epochs per task)", "",
             "| family | point | epochs | " + to.axis + " | forgetting | perplexity drift |", "|---|---|---|---|---|---|"]
    for pts in paths:
        for p in pts:
            lines.append(f"| {p.family} | {p.column} | {p.epochs} | {_stat(p.stats['plasticity'])} | "
                         f"{_stat(p.stats['forgetting'])} | {_stat(p.stats['perplexity_drift'])} |")
    return lines


def matched_lines(to: TradeOff, effect: float, margin: float | None) -> list[str]:
    if len(to.frontiers) < 2:
        return []
    resampled = "seeds" + (" and eval examples" if to.eval_resampled else "")
    how = (f"{to.draws} draws resampling {resampled}, every frontier recomputed in each" if to.draws
           else "not resampled: no intervals")
    lines = ["", f"### At matched {to.axis} (the other family's frontier, interpolated; {how})", ""]
    inside = [m for m in to.matched if m.in_range]
    if not inside:
        lines.append("No point falls within another family's plasticity range, so nothing is matched: a family "
                     "measured at one setting spans a single plasticity; a grid over learning rates or ranks "
                     "(configs/sweep.yaml) gives it a range.")
    else:
        head = (f"| point | vs | quantity | at {to.axis} | P(in range) | theirs | difference [95% CI] | "
                "P(better) | p | p (Holm) | MDE | seeds for " + f"{effect:g} |")
        if margin is not None:
            head += f" within ±{margin:g} (TOST) |"
        lines += [head, "|---" * (head.count("|") - 1) + "|"]
    rows = [(m, q) for m in inside for q in MATCHED if q in m.differences]
    holm = stats.holm([m.resampled[q].p_value if q in m.resampled else None for m, q in rows])
    for (m, q), p_holm in zip(rows, holm):
        log = q == "perplexity_drift"
        r = m.resampled.get(q)
        ci = r.ci95 if r else None
        cells = [m.column, m.other, NAMES[q], f"{m.plasticity:.3f}",
                 "-" if m.p_in_range is None else f"{m.p_in_range:.2f}", shown(m.values[q], log),
                 with_ci(m.differences[q], ci, log), "-" if r is None else f"{r.p_better:.2f}",
                 p_text(r.p_value if r else None), p_text(p_holm), mde_text(r.mde if r else None, log),
                 seeds_needed(r, m.n, effect, log)]
        if margin is not None:
            cells.append(tost(r, margin, log))
        lines.append("| " + " | ".join(cells) + " |")
    if inside:
        lines += ["", "_difference: the point minus the other family at the point's plasticity (drift: the point's "
                  "over theirs). P(in range): the share of draws in which the point lies within the other "
                  "family's frontier; interval, P(better: less drift or forgetting) and p are over those "
                  "draws; p is never below what resampling n seeds resolves, 2/n^n (0.074 at n = 3): at so few "
                  "seeds the resampled interval rests on a handful of distinct seed draws and is approximate. "
                  "Holm's adjustment runs over every p of this table. MDE: the smallest true difference "
                  "detectable with 80% power at α = 0.05 (t quantiles at n - 1 degrees of freedom, the resampled "
                  "standard error). seeds for E: the seeds per point at which E (drift: a relative change) "
                  "would be detectable so, from the same spread._  "]
    outside: dict[str, list[str]] = {}
    for m in to.matched:
        if not m.in_range:
            chance = f", in range in {m.p_in_range:.0%} of draws" if m.p_in_range else ""
            outside.setdefault(f"{m.column} ({m.plasticity:.3f})", []).append(m.other + chance)
    if outside:
        lines += ["", "Out of the other family's plasticity range (not matched): " + "; ".join(
            f"{point} vs {', '.join(others)}" for point, others in outside.items()) + "."]
    return lines


def seeds_needed(r, n: int, effect: float, log: bool) -> str:
    """Seeds per point at which `effect` becomes detectable at 80% power, from the resampled
    standard error scaled by sqrt(n / n') (t quantiles at n' - 1 degrees of freedom)."""
    if r is None or r.mde is None or n < 2:
        return "-"
    e = math.log(1 + effect) if log else effect
    per_seed_sd = r.mde / (stats.mde(1.0, n) or 1)  # the spread of one seed's difference
    needed = stats.pairs_needed(per_seed_sd, e)
    if needed is None:
        return "-"
    needed = max(needed, next(k for k in range(2, 100) if stats.resampling_floor(k) <= 0.05))  # p can get there
    return f"≤{n}" if needed <= n else f"{needed}"


def tost(r, margin: float, log: bool) -> str:
    """Equivalence (two one-sided tests at 5%): the 90% interval inside ±margin (drift: ratio ×(1 ± m))."""
    if r is None or r.ci90 is None:
        return "-"
    lo, hi = (math.log(1 - margin), math.log(1 + margin)) if log else (-margin, margin)
    return "equivalent" if lo < r.ci90[0] and r.ci90[1] < hi else "not shown"


def selection_markdown(selections, axis: str = "plasticity", word: str = "accuracy") -> str:
    """Settings chosen on the validation rows, reported on the eval rows (never chosen on them)."""
    lines = section(f"Chosen on validation (per family: the point of highest validation final average {word}; "
                    "its eval numbers)",
                    ["family", "chosen", "of points", "validation final avg", f"eval {axis}", "eval final avg",
                     "eval forgetting", "eval perplexity drift"],
                    [[sel.family, sel.column, sel.candidates, f"{sel.validation:.3f}",
                      *(_stat(sel.stats[q]) for q in ("plasticity", "final_accuracy", "forgetting", "perplexity_drift"))]
                     for sel in selections])
    return "\n".join(lines) + "\n"
