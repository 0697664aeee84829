"""The report's statistics sections in Markdown: paired differences, task order against seed,
example-level McNemar tests, the learning–forgetting trade-off and its matched-plasticity verdict.

Ratios (perplexity drift) are shown as ratios: geometric means and back-transformed intervals
(×1.013 [×1.002, ×1.025]); a difference of drifts is their ratio, method over the other.
"""

from __future__ import annotations

import math

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


def agree_text(up: int, down: int, n: int, words: tuple[str, str] = ("more", "less")) -> str:
    """How many of n seeds (or pairs) agree in sign: '5/5 more' (a tie counts for neither)."""
    if not up and not down:
        return f"{n}/{n} tied"
    return f"{up}/{n} {words[0]}" if up >= down else f"{down}/{n} {words[1]}"


def mde_cell(mde: float | None, n: int, log: bool) -> str:
    if mde is None:
        return "-"
    return f"none at n = {n}" if math.isinf(mde) else mde_text(mde, log)


def paired_markdown(t) -> str:
    """Each method minus the baseline on the runs they share (same seed and task order)."""
    chosen = t.baseline is None  # `report --pair`: the chosen pairs, each its first minus its second
    title = ("Paired differences of the chosen pairs (same seeds and orders; the first minus the second, drift "
             "as first / second)" if chosen else
             f"Paired differences against {t.baseline} (same seeds and orders; method minus baseline, "
             "drift as method / baseline)")
    lines = section(title,
                    ["pair" if chosen else "method", "quantity", "n", "difference [95% CI]", "pairs agreeing",
                     "p (exact)", "p (Holm)", "MDE"],
                    [[f"{d.column} vs {d.baseline}" if chosen else d.column, quantity_name(d.quantity, t.score_word), d.n,
                      "-" if d.mean is None else with_ci(d.mean, d.ci95, d.log),
                      agree_text(*d.agree, d.n, ("higher", "lower")) if d.n else "-",
                      p_text(d.p_value), p_text(d.p_holm), mde_cell(d.mde, d.n, d.log)] for d in t.paired])
    family = sum(d.p_value is not None for d in t.paired)
    notes = [f"difference: mean of the per-pair differences with its 95% t-interval. p (exact): the exact "
             f"two-sided sign-flip test of those differences (all 2^n sign patterns; never below 2/2^n, "
             f"0.0625 at n = 5); Holm's adjustment runs over every p of this table ({family}). MDE: the smallest "
             f"true difference this test detects with 80% power at α = 0.05/{max(family, 1)} (Holm's first step); "
             "'none' where n pairs cannot reach that level at all. A smaller difference may well be there, "
             "undetected, where the interval includes 0."]
    if chosen:
        notes.append("plasticity (the match): how far apart each pair's plasticities are, shown and not tested "
                     "(the pairs were chosen for being alike in it), so not in the Holm family.")
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
    chosen = t.baseline is None  # `report --pair`
    lines = section(("Example by example, the chosen pairs" if chosen else f"Example by example against {t.baseline}")
                    + " (final stage, same eval examples; exact McNemar, discordant pairs summed over the shared seeds)",
                    ["pair" if chosen else "method", "task", "runs", "both right",
                     "only first right" if chosen else "only method right",
                     "only second right" if chosen else "only baseline right", "p", "p (Holm)"],
                    [[f"{m.column} vs {m.baseline}" if chosen else m.column, m.task, m.runs, m.both, m.ours, m.theirs, p_text(m.p_value), p_text(m.p_holm)]
                     for m in t.mcnemar])
    return "\n".join(lines) + "\n"


def _stat(s) -> str:
    if s is None:
        return "-"
    if s.log:
        return with_ci(s.mean, s.ci95, True)
    return f"{s.mean:.3f}" + (f" [{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]" if s.ci95 else "")


def tradeoff_markdown(to: TradeOff, margin: float | None = None, word: str = "accuracy") -> str:
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
    lines += matched_lines(to, margin)
    lines += brief_lines(to)
    return "\n".join(lines) + "\n"


VERBS = {"perplexity_drift": ("drifts", "more", "less"), "forgetting": ("forgets", "more", "less"),
         "general_drop": ("loses general ability", "more", "less")}


def brief_lines(to: TradeOff) -> list[str]:
    """The matched verdict in words, one row per matched point and family: what the point learns,
    forgets and drifts, and how it compares with the other family at the same learning."""
    rows = [m for m in to.matched if m.in_range and m.tests]
    if not rows:
        return []
    by_column = {p.column: p for p in to.points}
    lines = ["", "### In brief (each point against the other family at the same learning)", "",
             "| point | learns | forgets | drifts | at the same learning as | verdict |", "|---|---|---|---|---|---|"]
    for m in rows:
        p = by_column[m.column]
        parts, significant = [], []
        for q in MATCHED:
            t = m.tests.get(q)
            if t is None or t.p_value is None:
                continue
            up, down, n = t.agree
            verb, more, less = VERBS[q]
            parts.append(f"{verb} {more if up >= down else less} in {max(up, down)}/{n} seeds (p {p_text(t.p_value)})"
                         if up or down else f"{verb} the same in every seed")
            if t.p_holm is not None and t.p_holm < 0.05:
                significant.append(verb)
        verdict = "; ".join(parts) + (": significant after Holm for " + ", ".join(significant) if significant
                                      else ": no difference significant after Holm")
        lines.append(f"| {m.column} | {_mean(p, 'plasticity')} | {_mean(p, 'forgetting')} | "
                     f"{_mean(p, 'perplexity_drift')} | {m.other} | {verdict} |")
    return lines


def _mean(point, quantity: str) -> str:
    s = point.stats.get(quantity)
    return "-" if s is None else ratio(s.shown) if s.log else f"{s.mean:.3f}"


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


def matched_lines(to: TradeOff, margin: float | None) -> list[str]:
    if len(to.frontiers) < 2:
        return []
    lines = ["", f"### At matched {to.axis} (seed by seed: each run against the other family's frontier through "
             "the same seed's runs)", ""]
    inside = [m for m in to.matched if m.in_range]
    if not inside:
        partly = any(m.seeds_in_range or (m.p_in_range or 0) >= 0.005 for m in to.matched)
        lines.append("No point lies within another family's plasticity range in every seed, so nothing is matched"
                     + (" (below: in how many seeds each was)." if partly else
                        ": a family measured at one setting spans a single plasticity; a grid over learning rates "
                        "or ranks (configs/sweep.yaml) gives it a range."))
    else:
        head = (f"| point | vs | quantity | at {to.axis} | theirs | difference [95% CI] | seeds agreeing | "
                "p (exact) | p (Holm) | MDE | P(better), bootstrap |")
        if margin is not None:
            head += f" within ±{margin:g} (TOST) |"
        lines += [head, "|---" * (head.count("|") - 1) + "|"]
    rows = [(m, q) for m in inside for q in MATCHED if q in m.tests]
    family = sum(m.tests[q].p_value is not None for m, q in rows)
    for m, q in rows:
        log = q == "perplexity_drift"
        test, r = m.tests[q], m.resampled.get(q)
        cells = [m.column, m.other, NAMES[q], f"{m.plasticity:.3f}", shown(m.values[q], log),
                 with_ci(test.mean, test.ci95, log), agree_text(*test.agree),
                 p_text(test.p_value), p_text(test.p_holm), mde_cell(test.mde, test.n, log),
                 "-" if r is None else f"{r.p_better:.2f}" + (f" of {m.p_in_range:.0%}" if m.p_in_range < 0.995 else "")]
        if margin is not None:
            cells.append(tost(test.ci90, margin, log))
        lines.append("| " + " | ".join(cells) + " |")
    if inside:
        lines += ["", "_difference: the mean over seeds of (the point's run minus the other family's frontier through "
                  "the same seed's runs, at that run's plasticity; drift: the point's over theirs), with its 95% "
                  "t-interval; theirs: the frontier's value there, mean over seeds. seeds agreeing: how many seeds' "
                  "differences have the majority's sign (more: the point drifts or forgets more). p (exact): the "
                  "exact two-sided sign-flip test of the per-seed differences (never below 2/2^n: 0.25 at n = 3, "
                  f"0.0625 at n = 5); Holm's adjustment runs over every p of this table ({family}). MDE: the "
                  f"smallest true difference this test detects with 80% power at α = 0.05/{max(family, 1)} (Holm's first "
                  "step); 'none' where n seeds cannot reach that level at all (`curlora-bench plan` gives the seeds "
                  "and eval examples a stated effect needs). P(better), bootstrap: the share of resampled draws "
                  "(seeds" + (" and eval examples" if to.eval_resampled else "") + f", {to.draws} draws, every "
                  "frontier recomputed) in which the point drifts or forgets less, over the draws in which it was "
                  "in range ('of 87%': only that share was); descriptive, not a test._  "]
    fallback = [f"{m.column} vs {m.other} ({m.mean_frontier} of {m.n})" for m in inside if m.mean_frontier]
    if fallback:
        lines += ["", "_Matched against the frontier of means in the seeds its points lack: " + "; ".join(fallback) + "._  "]
    partly: dict[str, list[str]] = {}
    beyond: dict[str, list[str]] = {}
    for m in to.matched:
        if m.in_range:
            continue
        point = f"{m.column} ({m.plasticity:.3f})"
        if m.seeds_in_range or (m.p_in_range or 0) >= 0.005:
            share = f", {m.p_in_range:.0%} of bootstrap draws" if m.p_in_range is not None else ""
            partly.setdefault(point, []).append(f"{m.other} (in range in {m.seeds_in_range} of {m.n} seeds{share})")
        else:
            beyond.setdefault(point, []).append(m.other)
    if partly:
        lines += ["", "Not matched, within the other family's plasticity range in some seeds only: " + "; ".join(
            f"{point} vs {', '.join(others)}" for point, others in partly.items()) + "."]
    if beyond:
        lines += ["", "Outside the other family's plasticity range: " + "; ".join(
            f"{point} vs {', '.join(others)}" for point, others in beyond.items()) + "."]
    lines += curve_lines(to)
    return lines


def curve_lines(to: TradeOff) -> list[str]:
    """Two families' fitted curves compared over their shared plasticity range (`analysis/curves.py`)."""
    if not to.curves:
        return []
    lines = ["", f"### Over the shared {to.axis} range (per seed, a least-squares line per family; the mean "
             "difference of the lines over the range)", "",
             "| family | vs | quantity | range | points | difference [95% CI] | seeds agreeing | p (exact) | p (Holm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in to.curves:
        log = c.quantity == "perplexity_drift"
        lines.append(f"| {c.family} | {c.other} | {NAMES[c.quantity]} | {c.lo:.3f}–{c.hi:.3f} | "
                     f"{c.points[0]}, {c.points[1]} | {with_ci(c.test.mean, c.test.ci95, log)} | "
                     f"{agree_text(*c.test.agree)} | {p_text(c.test.p_value)} | {p_text(c.test.p_holm)} |")
    lines += ["", "_difference: per seed, the family's fitted line minus the other's, averaged over the range "
              "(drift: a ratio); exact sign-flip p over the seeds both fitted, Holm over this table._  "]
    return lines


def tost(ci90: tuple[float, float] | None, margin: float, log: bool) -> str:
    """Equivalence (two one-sided tests at 5%): the 90% t-interval inside ±margin (drift: ratio ×(1 ± m))."""
    if ci90 is None:
        return "-"
    lo, hi = (math.log(1 - margin), math.log(1 + margin)) if log else (-margin, margin)
    return "equivalent" if lo < ci90[0] and ci90[1] < hi else "not shown"


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
