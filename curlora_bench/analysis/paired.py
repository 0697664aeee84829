"""Paired comparisons: every method against a baseline column on the runs they share.

Two runs pair when they have the same seed and the same task order (every method of an
experiment runs the same seeds and orders, so their data subsets, heads and batch orders
match); the difference per pair removes what the pair shares. Per quantity: the mean difference
(method minus baseline), its 95% t-interval, how many pairs agree in sign, the exact two-sided
sign-flip (permutation) p of the differences (never below 2 / 2^n: a t-test's smaller p at a few
pairs leans on normality the data cannot show), its Holm-adjusted value over the whole table, the
exact test's minimum detectable effect after Holm (at alpha / m, `analysis/power.py`) and n, the
number of pairs. Perplexity drift, a ratio, is
compared on the log scale: the mean of log(drift_method / drift_baseline), shown as a ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import metrics
from ..core.errors import BenchError
from ..core.metrics import TASK_METRICS
from . import stats
from .points import SeedTest, adjust_family

# summary.metrics keys compared, with their report names
QUANTITIES = {"average_accuracy": "final average accuracy", "forgetting": "forgetting",
              "perplexity_drift": "perplexity drift"}
LOG = ("perplexity_drift",)  # ratios: compared as log ratios


# `report --pair`: how far apart a pair's plasticities are, beside the tested quantities (the match,
# shown, never in the Holm family: a pair is chosen because its plasticities are alike)
MATCH = "plasticity"


def quantity_name(quantity: str, word: str = "accuracy") -> str:
    """A QUANTITIES key's report name, its average named by `word` (accuracy or score)."""
    if quantity == MATCH:
        return "plasticity (the match, not tested)"
    return QUANTITIES[quantity].replace("accuracy", word)


def _value(summary, quantity: str) -> float | None:
    if quantity == MATCH:
        return metrics.plasticity(summary.score_matrix)
    return summary.metrics.get(quantity)


@dataclass
class PairedDifference:
    column: str
    baseline: str
    quantity: str  # a key of QUANTITIES
    n: int  # pairs
    mean: float | None  # column minus baseline (a ratio: the mean log ratio)
    ci95: tuple[float, float] | None
    p_value: float | None  # exact two-sided sign-flip test of the per-pair differences
    p_holm: float | None = None  # Holm-adjusted over every difference of the table
    mde: float | None = None  # smallest true difference the exact test detects at 80% power after Holm (inf: none)
    log: bool = False  # mean and interval are of log ratios (show exp: a ratio)
    agree: tuple[int, int] = (0, 0)  # pairs above 0, below 0
    sd: float | None = None  # of one pair's difference


def pair_key(summary) -> tuple:
    """What makes two runs a pair: the seed and the order the tasks were trained in."""
    return summary.seed, tuple(summary.tasks)


def parse_pairs(items: list[str]) -> tuple[tuple[str, str], ...]:
    """`report --pair A=B ...` as (A, B) pairs; one line naming the bad value otherwise."""
    pairs = []
    for item in items:
        a, sep, b = item.partition("=")
        if not sep or not a.strip() or not b.strip():
            raise BenchError(f"--pair {item!r}: expected COLUMN=COLUMN (e.g. curlora-r8-lr0.01=lora-r8-lr5e-4)")
        pairs.append((a.strip(), b.strip()))
    return tuple(pairs)


def comparisons(columns: list, baseline: str | None,
                pairs: tuple[tuple[str, str], ...] = ()) -> tuple[str | None, list[tuple]]:
    """(the baseline's name, the (column, against) comparisons of the report's paired sections):
    every other measured column against `baseline` (None: the first), or, with `pairs` ((column,
    other), `report --pair`), only those, and no one baseline (None)."""
    measured = [c for c in columns if c.runs]
    if pairs:
        by_name = {c.name: c for c in measured}
        for a, b in pairs:
            for name in (a, b):
                if name not in by_name:
                    raise BenchError(f"--pair {a}={b}: no column {name!r} with finished runs (columns: "
                                     f"{', '.join(by_name) or 'none'})")
            if a == b:
                raise BenchError(f"--pair {a}={b}: a column against itself")
        return None, [(by_name[a], by_name[b]) for a, b in pairs]
    if len(measured) < 2:
        return None, []
    if baseline is None:
        base = measured[0]
    else:
        base = next((c for c in measured if c.name == baseline), None)
        if base is None:
            raise BenchError(f"--baseline {baseline!r}: no such column (columns: "
                             f"{', '.join(c.name for c in measured)})")
    return base.name, [(c, base) for c in measured if c is not base]


def paired_differences(pairs: list[tuple], match: bool = False) -> list[PairedDifference]:
    """Each (column, against) comparison's differences (`comparisons`), Holm over all of them; with
    `match` (`report --pair`) each also with its plasticity difference (shown, not tested)."""
    quantities = (MATCH, *QUANTITIES) if match else tuple(QUANTITIES)
    out: list[PairedDifference] = []
    tests: dict[int, SeedTest] = {}  # position in `out` -> its test (the Holm family)
    for col, base in pairs:
        for q in quantities:
            ours = {pair_key(r.summary): _value(r.summary, q) for r in col.runs if r.summary.status == "complete"}
            theirs = {pair_key(r.summary): _value(r.summary, q) for r in base.runs if r.summary.status == "complete"}
            keys = sorted(k for k in ours if k in theirs and ours[k] is not None and theirs[k] is not None)
            if not keys:
                out.append(PairedDifference(col.name, base.name, q, 0, None, None, None, log=q in LOG))
                continue
            a, b = [ours[k] for k in keys], [theirs[k] for k in keys]
            if q in LOG:
                a, b = stats.log_values(a), stats.log_values(b)
            test = SeedTest.of([x - y for x, y in zip(a, b)])
            up, down, _ = test.agree
            tested = q != MATCH
            if tested:
                tests[len(out)] = test
            out.append(PairedDifference(col.name, base.name, q, len(keys), test.mean, test.ci95,
                                        test.p_value if tested else None, log=q in LOG, agree=(up, down),
                                        sd=test.sd))
    adjust_family(list(tests.values()))  # over every tested difference of the table
    for i, test in tests.items():
        out[i].p_holm, out[i].mde = test.p_holm, test.mde
    return out


@dataclass
class OrderSpread:
    """How much of a column's spread comes from the task order and how much from the seed."""

    column: str
    quantity: str
    orders: int
    seeds: int  # per order (the most any order has)
    mean: float
    order_sd: float  # standard deviation of the per-order means
    seed_sd: float | None  # mean over orders of the standard deviation over seeds; None with one seed


def order_spread(columns: list) -> list[OrderSpread]:
    """Per column that ran more than one task order, per quantity: order spread vs seed spread."""
    out = []
    for col in columns:
        runs = [r for r in col.runs if r.summary.status == "complete"]
        if len({tuple(r.summary.tasks) for r in runs}) < 2:
            continue
        for q in QUANTITIES:
            by_order: dict[tuple, list[float]] = {}
            for r in runs:
                v = r.summary.metrics.get(q)
                if v is not None:
                    by_order.setdefault(tuple(r.summary.tasks), []).append(v)
            if len(by_order) < 2:
                continue
            means = [metrics.mean_std(v)[0] for v in by_order.values()]
            within = [metrics.mean_std(v)[1] for v in by_order.values() if len(v) > 1]
            out.append(OrderSpread(col.name, q, len(by_order), max(len(v) for v in by_order.values()),
                                   metrics.mean_std(means)[0], metrics.mean_std(means)[1],
                                   sum(within) / len(within) if within else None))
    return out


@dataclass
class ExamplePairs:
    """Two columns on the same eval examples of one task after the final stage, summed over the
    runs they share: the exact McNemar test of the discordant examples."""

    column: str
    baseline: str
    task: str
    runs: int
    both: int  # examples both got right
    ours: int  # only the column got right
    theirs: int  # only the baseline got right
    p_value: float
    p_holm: float | None = None


def example_pairs(pairs: list[tuple], scores: dict) -> list[ExamplePairs]:
    """Per (column, against) comparison (`comparisons`) and task, McNemar over the final stage's
    per-example scores (`scores`: column -> per run (as `column.runs`), {(row, task index): scores}
    or None), Holm over all of them."""
    def finals(col):
        out = {}
        for run, s in zip(col.runs, scores.get(col.name) or []):
            if s is None or run.summary.status != "complete":
                continue
            tasks = run.summary.tasks
            out[pair_key(run.summary)] = {t: s.get((len(tasks) - 1, j)) for j, t in enumerate(tasks)}
        return out

    out = []
    for col, base in pairs:
        if not scores.get(base.name):
            continue
        ours, theirs = finals(col), finals(base)
        for task in col.runs[0].summary.tasks:
            if not TASK_METRICS[col.runs[0].summary.primary(task)].binary:
                continue  # McNemar counts examples right in one run and wrong in the other: 0/1 scores only
            both = a_only = b_only = runs = 0
            for key, mine in ours.items():
                a, b = mine.get(task), theirs.get(key, {}).get(task)
                if a is None or b is None or len(a) != len(b):
                    continue
                runs += 1
                both += int(((a > 0) & (b > 0)).sum())
                a_only += int(((a > 0) & (b <= 0)).sum())
                b_only += int(((a <= 0) & (b > 0)).sum())
            if runs:
                out.append(ExamplePairs(col.name, base.name, task, runs, both, a_only, b_only,
                                        stats.mcnemar_exact(a_only, b_only)))
    for e, adjusted in zip(out, stats.holm([e.p_value for e in out])):
        e.p_holm = adjusted
    return out
