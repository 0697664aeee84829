"""`curlora-bench plan`: from pilot runs, the seeds and eval examples the exact test needs to detect
an effect at the power asked, for every comparison the report would print (`analysis/power.py`)."""

from __future__ import annotations

import math

from .markdown import NAMES, mde_cell, ratio, with_ci
from .paired import quantity_name
from .points import MATCHED
from .power import Design, design


def effect_text(effect: float, log: bool) -> str:
    return ratio(math.exp(effect)) if log else f"{effect:.3f}"


def _needs(d: Design) -> tuple[str, str]:
    here = "over 1000" if d.seeds_here is None else str(d.seeds_here)
    if not d.with_examples:
        return here, "-"
    cells = [f"{size:,}: {'-' if n is None else n}" for size, n in d.with_examples.items()]
    return here, "; ".join(cells)


def plan_markdown(to, effect: float | None = None, power: float = 0.8, alpha: float = 0.05,
                  tests: int | None = None, paired: list | None = None) -> str:
    """The design table: per matched row (and curve comparison) of the trade-off `to`, the effect
    (`effect`: forgetting in accuracy, drift as a relative change; None: each row's observed
    difference), the spread it had, its MDE now, and the seeds needed with and without eval noise;
    `tests`: the Holm family of the table to be run (None: as many tests as this table has).
    With `paired` (`plan --pair`: the report's `PairedDifference`s of the chosen pairs) the rows are
    those pairs' tested differences instead, on their own Holm family."""
    if paired is not None:  # one family: the chosen pairs' tested differences, seeds only
        rows = [(f"{d.column} vs {d.baseline} (paired by seed)", d.quantity, quantity_name(d.quantity), d, None)
                for d in paired if d.p_value is not None]
        curves, examples = [], None
        matched_family = curve_family = tests or len(rows)
        family_text = f"{matched_family} paired differences"
        empty = "the chosen pairs share no seed"
    else:
        rows = [(f"{m.column} vs {m.other} at {m.plasticity:.3f}", q, NAMES[q], m.tests[q], m.eval_se.get(q))
                for m in to.matched if m.in_range for q in MATCHED if q in m.tests]
        curves, examples = to.curves, to.eval_examples
        matched_family = tests or sum(t.p_value is not None for _, _, _, t, _ in rows)
        curve_family = tests or sum(c.test.p_value is not None for c in curves)
        rows += [(f"{c.family} vs {c.other} over {c.lo:.3f}–{c.hi:.3f} (curves)", c.quantity, NAMES[c.quantity],
                  c.test, None) for c in curves]
        family_text = f"{matched_family} matched rows" + (f", {curve_family} curve comparisons" if curves else "")
        empty = "no point is matched within another family's range in every seed"
    out = [f"| comparison | quantity | n | observed [95% CI] | effect | MDE now | seeds for it (these eval examples) | "
           f"seeds for it with eval-example noise, by eval examples per task (now {to.eval_examples or '-'}) |",
           "|---|---|---|---|---|---|---|---|"]
    for k, (name, q, label, test, eval_se) in enumerate(rows):
        log = q == "perplexity_drift"
        family = matched_family if k < len(rows) - len(curves) else curve_family
        wanted = abs(test.mean) if effect is None else (math.log(1 + effect) if log else effect)
        d = design(test, wanted, family, eval_se, examples, alpha, power)
        if d is None:
            out.append(f"| {name} | {label} | {test.n} | {with_ci(test.mean, test.ci95, log)} | "
                       f"{effect_text(wanted, log)} | - | - (one seed: no spread) | - |")
            continue
        here, with_eval = _needs(d)
        out.append(f"| {name} | {label} | {test.n} | {with_ci(test.mean, test.ci95, log)} | "
                   f"{effect_text(wanted, log)} | {mde_cell(d.mde_seeds, test.n, log)} | {here} | {with_eval} |")
    first_step = f"(Holm's first step over {tests} tests, as asked" if tests else f"(Holm's first step: {family_text}"
    notes = [f"The exact two-sided sign-flip test at power {power:g}, at α = {alpha:g} / the table's tests "
             + first_step + "). effect: " + ("each row's observed difference" if effect is None else
                                             f"{effect:g} (forgetting: in accuracy; drift: a relative change)")
             + ". seeds for it: from the spread of one seed's difference, on the same eval examples as now (the "
             "test's claim is about those examples). With eval-example noise (a claim about the task): the "
             "standard error from resampling the eval examples, scaled to N examples per task; '-' where "
             "that noise alone hides the effect whatever the seeds. Drift has no eval-example noise of its "
             "own (only through where the point sits on the plasticity axis)."
             + (" Paired by seed (`--pair`): the chosen pairs' differences, seeds only (their eval-example "
                "noise is not resampled: '-')." if paired is not None else "")]
    if not rows:
        return f"No comparison to plan: {empty}.\n"
    return "\n".join(out) + "\n\n" + "\n".join(f"_{n}_" for n in notes) + "\n"
