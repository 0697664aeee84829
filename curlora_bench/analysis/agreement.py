"""Do two ways of running the same methods agree? (`curlora-bench agree A B`)

Two experiment folders whose runs differ in one setting (bf16 against fp32, say) are paired run
by run: the same label, seed and task order. Per label and quantity (plasticity, final average
accuracy, forgetting, log perplexity drift) the report gives both means, the mean paired
difference (B minus A) with its 95% t-interval, how many pairs agree in sign, the exact sign-flip
p, and, for a quantity with a margin, an equivalence test: two one-sided tests at 5%, i.e. the
90% t-interval of the paired differences inside ±margin (drift: a relative margin, ±log(1 + m)
on the log scale). "equivalent" is a claim the data support; "not shown" is not a difference.

A count-based score (accuracy, exact match) moves in steps of one eval example, and two runs that
agree closely can give exactly the same score on every seed: a standard deviation of 0 and a
zero-width interval that would pass any margin. The intervals therefore use a standard deviation of
at least the quantity's resolution (`resolution`: one example of the largest eval set, over the
tasks the quantity averages); `tests/test_calibration.py` checks the test's level with and without
lattice-valued differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core import metrics
from ..core.errors import BenchError
from .markdown import agree_text, p_text, shown, with_ci
from .points import SeedTest

QUANTITIES = {"plasticity": "plasticity", "average_accuracy": "final avg accuracy", "forgetting": "forgetting",
              "perplexity_drift": "perplexity drift"}
MARGIN_KEYS = {"plasticity": "plasticity", "accuracy": "average_accuracy", "forgetting": "forgetting",
               "drift": "perplexity_drift"}


@dataclass
class Agreement:
    label: str
    quantity: str
    a: float  # mean over the pairs (analysis scale: log for drift)
    b: float
    test: SeedTest  # of b - a per pair
    margin: float | None  # on the analysis scale

    @property
    def log(self) -> bool:
        return self.quantity == "perplexity_drift"

    @property
    def equivalent(self) -> bool | None:
        if self.margin is None or self.test.ci90 is None:
            return None
        return -self.margin < self.test.ci90[0] and self.test.ci90[1] < self.margin


def parse_margins(specs: list[str]) -> dict[str, float]:
    """`plasticity=0.01`, `forgetting=0.01`, `drift=0.05` (relative) -> quantity -> margin on the analysis scale."""
    out = {}
    for spec in specs:
        key, _, value = spec.partition("=")
        if key not in MARGIN_KEYS:
            raise BenchError(f"--margin {spec!r}: expected one of {', '.join(MARGIN_KEYS)}=VALUE")
        try:
            m = float(value)
        except ValueError:
            raise BenchError(f"--margin {spec!r}: {value!r} is not a number") from None
        if not 0 < m < 1 or not math.isfinite(m):
            raise BenchError(f"--margin {spec!r}: a margin is a number between 0 and 1")
        out[MARGIN_KEYS[key]] = math.log(1 + m) if key == "drift" else m
    return out


def value(summary, quantity: str) -> float | None:
    if summary.status != "complete":
        return None
    if quantity == "plasticity":
        return metrics.plasticity(summary.score_matrix)
    v = summary.metrics.get(quantity)
    if v is None:
        return None
    return math.log(v) if quantity == "perplexity_drift" else v


def _counted(metric: str) -> bool:
    """Each example scores 0 or 1 (accuracy, exact match, ...): the task's score moves in steps of one."""
    known = metrics.TASK_METRICS.get(metric)
    return known is not None and known.binary


def resolution(summary, quantity: str) -> float | None:
    """The smallest step `quantity` can take in this run: one example of the largest eval set over the
    tasks it averages (plasticity and final average accuracy: every task; forgetting: all but the
    last). None where the quantity is continuous (drift; a task scored by ROUGE-L or chrF)."""
    tasks = list(summary.tasks)
    if quantity == "perplexity_drift" or not all(_counted(summary.primary(t)) for t in tasks):
        return None
    if any(t not in summary.data for t in tasks):
        return None
    averaged = len(tasks) - 1 if quantity == "forgetting" else len(tasks)
    return 1 / (max(1, averaged) * max(summary.data[t].eval_records for t in tasks))


def agreements(a_runs: list, b_runs: list, margins: dict[str, float]) -> list[Agreement]:
    """Every label both folders ran, paired by seed and order (see the module's doc)."""
    def key(run):
        return run.summary.label, run.summary.seed, tuple(run.summary.tasks)

    a_by = {key(r): r.summary for r in a_runs}
    b_by = {key(r): r.summary for r in b_runs}
    shared = sorted(set(a_by) & set(b_by), key=repr)
    if not shared:
        raise BenchError("agree: the two folders share no run (the same label, seed and task order)")
    out = []
    for label in dict.fromkeys(k[0] for k in shared):
        keys = [k for k in shared if k[0] == label]
        for q in QUANTITIES:
            both = [(k, value(a_by[k], q), value(b_by[k], q)) for k in keys]
            kept = [(k, x, y) for k, x, y in both if x is not None and y is not None]
            if not kept:
                continue
            pairs = [(x, y) for _, x, y in kept]
            steps = [resolution(s, q) for k, _, _ in kept for s in (a_by[k], b_by[k])]
            step = None if any(r is None for r in steps) else min(steps)
            out.append(Agreement(label, q, sum(x for x, _ in pairs) / len(pairs), sum(y for _, y in pairs) / len(pairs),
                                 SeedTest.of([y - x for x, y in pairs], step), margins.get(q)))
    return out


def agreement_markdown(rows: list[Agreement], a_name: str, b_name: str) -> str:
    lines = [f"| point | quantity | n | {a_name} | {b_name} | difference [95% CI] | 90% CI | seeds agreeing | "
             "p (exact) | within the margin (TOST) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r.test
        ci90 = "-" if t.ci90 is None else f"[{shown(t.ci90[0], r.log, True)}, {shown(t.ci90[1], r.log, True)}]"
        verdict = "-"
        if r.equivalent is not None:
            margin = f"±{(math.exp(r.margin) - 1) * 100:.0f}%" if r.log else f"±{r.margin:g}"
            verdict = f"{'equivalent' if r.equivalent else 'not shown'} ({margin})"
        lines.append(f"| {r.label} | {QUANTITIES[r.quantity]} | {t.n} | {shown(r.a, r.log)} | {shown(r.b, r.log)} | "
                     f"{with_ci(t.mean, t.ci95, r.log)} | {ci90} | {agree_text(*t.agree, ('higher', 'lower'))} | "
                     f"{p_text(t.p_value)} | {verdict} |")
    notes = (f"_Paired run by run (the same label, seed and task order): {b_name} minus {a_name}; drift as "
             f"{b_name}'s over {a_name}'s. difference: mean of the paired differences, 95% t-interval; 90% CI: "
             "the interval the equivalence test reads (two one-sided tests at 5%: equivalent where it lies "
             "inside ±margin; a count-based score's intervals use a standard deviation of at least one eval example's "
             "step). p (exact): the exact sign-flip test of a difference (never below 2/2^n)._")
    return "\n".join(lines) + "\n\n" + notes + "\n"
