"""Runs -> one table (built once) -> md, csv, latex, json or a terminal table.

Columns are points of one experiment: runs that share a settings hash (the experiment's
settings and the method's options) and a label, their seeds pooled. Rows come from the
metrics (`rows.summary_rows`) and from the methods present (`Adapter.report_rows`).
Runs of different experiments are refused, naming the settings that differ.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from rich.table import Table as RichTable

from ..adapters import ADAPTERS
from ..config.identity import comparable, differing
from ..config.regimes import REGIMES
from ..core import metrics
from ..core.errors import BenchError
from ..core.layout import PREDICTIONS
from ..store.folders import Run, experiment_labels
from ..store.schema import read_predictions
from . import rows as report_rows
from . import stats
from .leaderboard import CSV_HEADER, Leaderboard, csv_rows, leaderboard
from .leaderboard import to_data as leaderboard_data
from .leaderboard import to_markdown as board_markdown
from .markdown import (
    mcnemar_markdown,
    orders_markdown,
    paired_markdown,
    selection_markdown,
    tradeoff_markdown,
)
from .paired import (
    ExamplePairs,
    OrderSpread,
    PairedDifference,
    comparisons,
    example_pairs,
    order_spread,
    paired_differences,
)
from .rows import Row
from .tradeoff import DRAWS, Selection, TradeOff, select_on_validation, tradeoff


@dataclass
class Column:
    name: str
    runs: list[Run] = field(default_factory=list)  # none for a published (paper) column
    settings_hash: str | None = None

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.summary.status == "failed"]


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    cells: dict[tuple[str, str], list[float]]  # (row name, column name) -> values over seeds
    notes: list[str]  # what the numbers are (model, protocol, seeds, perplexity protocol)
    failures: list[str]  # one line per failed run
    tradeoff: TradeOff | None = None
    baseline: str | None = None  # the column the paired differences are taken against
    paired: list[PairedDifference] = field(default_factory=list)
    orders: list[OrderSpread] = field(default_factory=list)  # order vs seed spread, columns with > 1 order
    mcnemar: list[ExamplePairs] = field(default_factory=list)  # example by example, where runs kept their scores
    margin: float | None = None  # an equivalence margin (TOST) for the matched verdict
    selections: list[Selection] = field(default_factory=list)  # `--select-on validation`
    # the baseline column's title: the majority class, or (prompted tasks present) a baseline of either kind
    baseline_title: str = "majority"
    # what the averages average: "accuracy", or "score" where a task's primary metric is not accuracy
    score_word: str = "accuracy"
    literature: list[Row] = field(default_factory=list)  # the sequence metrics as the literature names them
    leaderboard: Leaderboard | None = None  # against the reference family's frontier, where it has one

    def values(self, row: Row, col: Column) -> list[float]:
        return self.cells.get((row.name, col.name), [])


def check_one_experiment(runs: list[Run]) -> None:
    """All runs must share the experiment settings; otherwise name the keys that differ. Keys that
    only change how a run executes (gradient checkpointing, log interval) may differ."""
    first = runs[0]
    for r in runs[1:]:
        differ = differing(comparable(first.summary.settings), comparable(r.summary.settings))
        if differ:
            raise BenchError(f"{r.path} and {first.path} are runs of different experiments (settings differ in: "
                             f"{', '.join(differ)}); report one experiment at a time")


def select_runs(runs: list[Run], labels: list[str] | None) -> list[Run]:
    """`report --method`: only the runs of these method labels (a calibration's off-design probes
    left out of a folder's report, say); every label must name some run."""
    if not labels:
        return runs
    have = list(dict.fromkeys(r.summary.label for r in runs))
    for label in labels:
        if label not in have:
            raise BenchError(f"--method {label!r}: no run of that label here (labels: {', '.join(have)})")
    return [r for r in runs if r.summary.label in labels]


def group_columns(runs: list[Run]) -> list[Column]:
    """One column per (settings hash, label); a label shared by different settings is marked."""
    groups: dict[tuple[str, str], Column] = {}
    for r in runs:
        key = (r.summary.settings_hash, r.summary.label)
        groups.setdefault(key, Column(r.summary.label, settings_hash=r.summary.settings_hash)).runs.append(r)
    columns = list(groups.values())
    labels = [c.name for c in columns]
    for c in columns:
        if labels.count(c.name) > 1:
            c.name = f"{c.name} [{c.settings_hash[:6]}]"
    return columns


@dataclass(frozen=True)
class Options:
    """How the report reads the runs (every `report` option but its format and output)."""

    baseline: str | None = None  # the column of the paired differences (default: the config's first method)
    plasticity: str = "absolute"  # or "gain": over head-only at the same head learning rate
    drift_corpus: str | None = None  # the trade-off's drift corpus (default: the primary)
    draws: int = DRAWS  # resampling draws of the matched verdict
    margin: float | None = None  # for an equivalence test
    select_on: str | None = None  # "validation": per family, the point that does best on validation
    forgetting: str = "perplexity"  # the trade-off's forgetting axis: perplexity | general | tasks
    leaderboard: bool = False  # render only the leaderboard (`analysis/leaderboard.py`)
    reference: str = "lora"  # the family the leaderboard matches every method point against
    pairs: tuple[tuple[str, str], ...] = ()  # `--pair A=B`: only these paired comparisons (A minus B)


def run_scores(run: Run) -> dict[tuple[int, int], np.ndarray] | None:
    """A run's per-example eval scores of each task's primary metric (its matrix entries),
    (matrix row, task index) -> scores; None if it kept none."""
    path = run.path / PREDICTIONS if run.path is not None else None
    if path is None or not path.is_file():
        return None
    lines = [p for p in read_predictions(path) if p.stage > 0 and p.metric == run.summary.primary(p.task)]
    if not lines:
        return None
    tasks = run.summary.tasks
    return {(p.stage - 1, tasks.index(p.task)): np.asarray(p.scores, dtype=float) for p in lines}


def build_table(runs: list[Run], baseline: str | None = None, options: Options | None = None) -> Table:
    """The report's one table: rows in the paper's order, then metrics and method diagnostics;
    paired differences against column `baseline` (default: the first)."""
    options = options or Options(baseline=baseline)
    baseline = options.baseline
    check_one_experiment(runs)
    first = runs[0].summary
    columns = group_columns(runs)
    rows = report_rows.summary_rows(first.tasks, first.baseline, first.metric)
    rows += corpus_rows(first)
    rows += report_rows.general_rows(first.general)
    rows += report_rows.intruder_rows(first)
    rows += report_rows.recovery_rows(first)
    for name in dict.fromkeys(r.summary.method["method"] for r in runs):
        rows += [report_rows.diagnostic_row(d) for d in ADAPTERS.get(name).report_rows]
    cells = {}
    for col in columns:
        for row in rows:
            vals = [row.read(r.summary) for r in col.runs]
            cells[(row.name, col.name)] = [float(v) for v in vals if v is not None]
    rows = [row for row in rows if row.paper_key or any(cells[(row.name, c.name)] for c in columns)]
    literature = report_rows.literature_rows()
    for col in columns:
        for row in literature:
            cells[(row.name, col.name)] = [float(v) for v in (row.read(r.summary) for r in col.runs) if v is not None]
    literature = [row for row in literature if any(cells[(row.name, c.name)] for c in columns)]
    for name, numbers in paper_columns(first, columns).items():
        columns.append(Column(name))
        for row in rows:
            if row.paper_key in numbers:
                cells[(row.name, name)] = [numbers[row.paper_key]]
    failures = [r.summary.error or f"{r.summary.label} seed {r.summary.seed}" for c in columns for r in c.failed]
    base, compared = comparisons(columns, baseline or first_method(runs, columns), options.pairs)
    paired = paired_differences(compared, match=bool(options.pairs))
    scores = {c.name: [run_scores(r) for r in c.runs] for c in columns if c.runs}
    scores = {k: v for k, v in scores.items() if any(x is not None for x in v)}
    notes = [describe(runs, columns)]
    if first.zero_shot:
        notes.append("baseline: a classification task's majority class; a prompted task's base model, zero-shot, "
                     "on its primary metric" + ("; the average, backward transfer and forgetting are over each "
                                                 "task's primary metric" if first.metric else ""))
    for regime in dict.fromkeys(c.runs[0].summary.regime for c in columns if c.runs):
        if REGIMES.get(regime).note:
            names = [c.name for c in columns if c.runs and c.runs[0].summary.regime == regime]
            notes.append(f"{', '.join(names)}: {REGIMES.get(regime).note}")
    to = tradeoff(columns, options.plasticity, options.drift_corpus, options.draws, scores or None,
                  forgetting=options.forgetting)
    board = None
    summaries = {c.name: [r.summary for r in c.runs] for c in columns if c.runs}
    if options.leaderboard:
        board = leaderboard(to, summaries, options.reference)  # its one-line errors, asked for
    elif to is not None and to.frontiers.get(options.reference):
        board = leaderboard(to, summaries, options.reference)
    selections = []
    if options.select_on == "validation" and to is not None:
        selections = select_on_validation(to.points, {c.name: [r.summary for r in c.runs] for c in columns if c.runs})
        if not selections:
            raise BenchError("--select-on validation: no run kept validation scores (run with eval.validation set)")
    return Table(columns, rows, cells, notes, failures, to, base, paired, order_spread(columns),
                 example_pairs(compared, scores), options.margin, selections,
                 "baseline" if first.zero_shot else "majority", report_rows.score_word(first.metric), literature,
                 board)


def corpus_rows(first) -> list[Row]:
    """Rows of the corpora after the primary one: final perplexity and drift per corpus."""
    rows = []
    for name in first.perplexities or {}:
        def read(key, name=name):
            def get(s):
                p = (s.perplexities or {}).get(name)
                if p is None:
                    return None
                return p.final if key == "final" else metrics.perplexity_drift(p.initial, p.final)
            return get
        rows += [Row(f"Final perplexity ({name})", "perplexity", read("final")),
                 Row(f"Perplexity drift ({name}, final/initial)", "drift", read("drift"))]
    return rows


def first_method(runs: list[Run], columns: list[Column]) -> str | None:
    """The column of the first method in the experiment's config.yaml (None: the first column)."""
    order = experiment_labels(runs[0].path.parent.parent)
    ranked = [c for c in columns if c.runs and c.runs[0].summary.label in order]
    return min(ranked, key=lambda c: order.index(c.runs[0].summary.label)).name if ranked else None


PAPER_MODELS = {"gpt2-large": "gpt2-large", "mistralai/mistral-7b-v0.3": "mistral-7b-v0.3"}
PAPER_TASKS = ["mrpc", "sst2", "sentiment140"]


def paper_table() -> dict[tuple[str, str], dict[str, float]]:
    """(paper model, column like LoRA-8) -> {metric: value}, from the paper's Tables 1-2."""
    text = resources.files("curlora_bench.analysis").joinpath("paper_tables.csv").read_text()
    table: dict[tuple[str, str], dict[str, float]] = {}
    for rec in csv.DictReader(io.StringIO(text)):
        for col, v in rec.items():
            if col not in ("model", "metric"):
                table.setdefault((rec["model"], col), {})[rec["metric"].replace("_wikitext2", "")] = float(v)
    return table


def paper_columns(first, columns: list[Column]) -> dict[str, dict[str, float]]:
    """The paper's published numbers for our LoRA/CURLoRA columns, when the runs reproduce its
    setting (protocol paper, its model, MRPC -> SST-2 -> Sentiment140)."""
    model = PAPER_MODELS.get(first.model.lower())
    if not model or first.tasks != PAPER_TASKS or first.protocol != "paper":
        return {}
    table = paper_table()
    out = {}
    for col in columns:
        m = col.runs[0].summary.method
        name = {"lora": "LoRA", "curlora": "CURLoRA"}.get(m["method"])
        if name and (model, f"{name}-{m.get('rank')}") in table:
            out[f"paper {col.name}"] = table[(model, f"{name}-{m.get('rank')}")]
    return out


def describe(runs: list[Run], columns: list[Column]) -> str:
    first = runs[0].summary
    ns = sorted({len(c.runs) for c in columns if c.runs})
    n_orders = max(len({tuple(r.summary.tasks) for r in c.runs}) for c in columns if c.runs)
    what = "seed(s) per method" if n_orders == 1 else f"runs per method ({n_orders} task orders × seeds, pooled)"
    parts = [f"model {first.model}", f"protocol {first.protocol}",
             f"{'/'.join(map(str, ns))} {what}" + (" (mean ± std)" if max(ns) > 1 else "")]
    ppl = next((r.summary.perplexity.protocol for r in runs if r.summary.perplexity.protocol), None)
    if ppl:
        parts.append(f"perplexity: {ppl.get('corpus')}, {ppl.get('corpus_tokens')} tokens, window {ppl.get('window')}, "
                     f"stride {ppl.get('stride')}{', BOS' if ppl.get('bos') else ''}")
    return "; ".join(parts)


# ---- cells ---------------------------------------------------------------------------------

def fmt_value(kind: str, v: float) -> str:
    if kind == "count":
        return f"{int(round(v)):,}"
    if kind == "perplexity":
        return f"{v:.2f}"
    if kind == "ratio":
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.3g}"
    if kind == "small":
        return f"{v:.2e}"
    if kind == "kl":
        return f"{v:.4f}"
    if kind == "signed":
        return f"{round(v, 3) + 0.0:+.3f}" if abs(v) < 10 else f"{v:.3g}"  # + 0.0: no "-0.000"
    return f"{v:.3f}"


def fmt_cell(kind: str, vals: list[float]) -> str:
    if not vals:
        return "-"
    if kind == "drift":  # a ratio: geometric mean ×/÷ geometric sd
        g, gsd = geometric_mean_sd(vals)
        return fmt_value("ratio", g) + (f" ×/÷ {gsd:.3f}" if len(vals) > 1 else "")
    m, s = metrics.mean_std(vals)
    if len(vals) == 1 or kind == "count":
        return fmt_value(kind, m)
    return f"{fmt_value(kind, m)} ± {fmt_value(kind, s).lstrip('+')}"


def baseline(row: Row) -> str:
    return f"{row.baseline:.3f}" if row.baseline is not None else ""


def header(col: Column) -> str:
    """A column's name, with a dagger when some of its runs failed."""
    return col.name + (" †" if col.failed else "")


def geometric_mean_sd(vals: list[float]) -> tuple[float, float]:
    m, s = metrics.mean_std(stats.log_values(vals))
    return math.exp(m), math.exp(s)


def _stats(vals: list[float], kind: str = "") -> dict:
    """A cell's numbers for csv/json: mean, sd, n, 95% t-interval (a drift's: geometric, on logs)."""
    if not vals:
        return {"mean": None, "std": None, "n": 0, "ci95": None, "values": []}
    if kind == "drift":
        g, ci = stats.geometric(vals)
        return {"mean": g, "std": geometric_mean_sd(vals)[1], "n": len(vals), "ci95": list(ci) if ci else None,
                "values": vals, "scale": "geometric"}
    m, s = metrics.mean_std(vals)
    ci = metrics.t_interval(vals)
    return {"mean": m, "std": s, "n": len(vals), "ci95": list(ci) if ci else None, "values": vals}


# ---- renderers: Table -> text ----------------------------------------------------------------

def to_markdown(t: Table) -> str:
    head = ["", t.baseline_title, *map(header, t.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in t.rows:
        lines.append("| " + " | ".join([row.name, baseline(row), *(fmt_cell(row.kind, t.values(row, c))
                                                                   for c in t.columns)]) + " |")
    notes = t.notes + [f"† FAILED {f}" for f in t.failures]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"_{n}_  " for n in notes) + "\n"
    text += paired_markdown(t) if t.paired else ""
    text += mcnemar_markdown(t) if t.mcnemar else ""
    text += orders_markdown(t) if t.orders else ""
    text += literature_markdown(t) if t.literature else ""
    if t.tradeoff and len(t.tradeoff.frontiers) > 1:
        text += tradeoff_markdown(t.tradeoff, t.margin, t.score_word)
    text += selection_markdown(t.selections, t.tradeoff.axis, t.score_word) if t.selections else ""
    return text


def literature_markdown(t: Table) -> str:
    """The sequence metrics as the literature names them, one table (mean ± sd over seeds)."""
    head = ["", *map(header, t.columns)]
    lines = ["", f"### The sequence's metrics as the literature names them ({t.score_word})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in t.literature:
        lines.append("| " + " | ".join([row.name, *(fmt_cell(row.kind, t.values(row, c)) for c in t.columns)]) + " |")
    return "\n".join(lines) + "\n\n_Definitions and sources: the concepts page, \"The literature's names\"._\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "method", "settings_hash", "mean", "std", "n", "ci95_low", "ci95_high", "majority_baseline",
                "p_value", "failed_runs"])
    for row in t.rows:
        for c in t.columns:
            st = _stats(t.values(row, c), row.kind)
            ci = st["ci95"] or [None, None]
            w.writerow([row.name, c.name, c.settings_hash, st["mean"], st["std"], st["n"], ci[0], ci[1],
                        row.baseline, None, len(c.failed)])
    for row in t.literature:
        for c in t.columns:
            st = _stats(t.values(row, c), row.kind)
            ci = st["ci95"] or [None, None]
            w.writerow([row.name, c.name, c.settings_hash, st["mean"], st["std"], st["n"], ci[0], ci[1], None, None,
                        len(c.failed)])
    for m in t.tradeoff.matched if t.tradeoff else []:
        col = next(c for c in t.columns if c.name == m.column)
        for q, test in m.tests.items():
            lo, hi = test.ci95 or (None, None)
            scale = " (log ratio)" if q == "perplexity_drift" else ""
            w.writerow([f"{q}{scale} minus {m.other}'s at matched {t.tradeoff.axis} {m.plasticity:.3f} (exact "
                        "sign-flip p, t-interval)", m.column, col.settings_hash, test.mean, test.sd, test.n, lo, hi,
                        None, test.p_value, len(col.failed)])
    for o in t.orders:
        col = next(c for c in t.columns if c.name == o.column)
        w.writerow([f"{o.quantity} sd across orders", o.column, col.settings_hash, o.order_sd, None, o.orders,
                    None, None, None, None, len(col.failed)])
        w.writerow([f"{o.quantity} sd across seeds (mean over orders)", o.column, col.settings_hash, o.seed_sd, None,
                    o.seeds, None, None, None, None, len(col.failed)])
    for d in t.paired:
        col = next(c for c in t.columns if c.name == d.column)
        lo, hi = d.ci95 or (None, None)
        scale = " (log ratio)" if d.log else ""
        w.writerow([f"{d.quantity}{scale} minus {d.baseline} (paired)", d.column, col.settings_hash, d.mean, None,
                    d.n, lo, hi, None, d.p_value, len(col.failed)])
    return buf.getvalue()


def to_json(t: Table) -> str:
    data = {
        "columns": [{"name": c.name, "settings_hash": c.settings_hash, "runs": [str(r.path) for r in c.runs],
                     "failed": [str(r.path) for r in c.failed]} for c in t.columns],
        "note": "; ".join(t.notes),
        "failures": t.failures,
        "rows": [{"row": r.name, "kind": r.kind, "majority_baseline": r.baseline,
                  "cells": {c.name: _stats(t.values(r, c), r.kind) for c in t.columns}} for r in t.rows],
        "tradeoff": tradeoff_json(t.tradeoff, t.leaderboard) if t.tradeoff else None,
        "paired": {"baseline": t.baseline, "differences": [dataclasses.asdict(d) for d in t.paired]},
        "example_pairs": [dataclasses.asdict(e) for e in t.mcnemar],
        "orders": [dataclasses.asdict(o) for o in t.orders],
        "literature": [{"row": r.name, "kind": r.kind, "cells": {c.name: _stats(t.values(r, c), r.kind)
                                                               for c in t.columns}} for r in t.literature],
    }
    return json.dumps(data, indent=2) + "\n"


def tradeoff_json(to: TradeOff, board: Leaderboard | None = None) -> dict:
    """The trade-off as data (its points without their per-run resampling material), with the
    leaderboard against the reference family where it has a frontier."""
    return {
        "axis": to.axis, "forgetting": to.forgetting, "drift_corpus": to.drift_corpus, "draws": to.draws, "eval_resampled": to.eval_resampled,
        "notes": to.notes, "frontiers": to.frontiers,
        "points": [{"column": p.column, "family": p.family, "settings_hash": p.settings_hash,
                    "trainable_parameters": p.trainable_parameters, "on_frontier": p.on_frontier,
                    "off_frontier": p.off_frontier, "epochs": p.epochs,
                    "stats": {q: dataclasses.asdict(s) if s else None for q, s in p.stats.items()}}
                   for p in to.points],
        "matched": [dataclasses.asdict(m) for m in to.matched],
        "curves": [dataclasses.asdict(c) for c in to.curves],
        "eval_examples": to.eval_examples,
        "leaderboard": leaderboard_data(board) if board else None,
    }


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "‖": r"$\|$", "Δ": r"$\Delta$", "†": r"$^\dagger$"}


def tex(s: str) -> str:
    """Escape text for LaTeX, one character at a time (so no replacement is escaped again)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    n = len(t.columns) + 2
    lines = [r"\begin{tabular}{l" + "r" * (n - 1) + "}", r"\toprule",
             " & ".join(["", t.baseline_title, *(tex(header(c)) for c in t.columns)]) + r" \\", r"\midrule"]
    for row in t.rows:
        lines.append(" & ".join([tex(row.name), baseline(row),
                                 *(tex(fmt_cell(row.kind, t.values(row, c))) for c in t.columns)]) + r" \\")
    lines.append(r"\bottomrule")
    for note in t.notes + [f"† FAILED {f}" for f in t.failures]:
        lines.append(r"\multicolumn{" + str(n) + r"}{l}{\footnotesize " + tex(note) + r"} \\")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[Table], str]] = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}


def leaderboard_markdown(t: Table) -> str:
    return "_" + "; ".join(t.notes) + "_\n" + board_markdown(t.leaderboard, t.score_word)


def leaderboard_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEADER)
    w.writerows(csv_rows(t.leaderboard))
    return buf.getvalue()


def leaderboard_json(t: Table) -> str:
    return json.dumps({"note": "; ".join(t.notes), "leaderboard": leaderboard_data(t.leaderboard)}, indent=2) + "\n"


# `report --leaderboard`: the leaderboard alone, in these formats
LEADERBOARD_FORMATS: dict[str, Callable[[Table], str]] = {"md": leaderboard_markdown, "csv": leaderboard_csv,
                                                          "json": leaderboard_json}


def render(runs: list[Run], fmt: str, baseline: str | None = None, options: Options | None = None) -> str:
    if options is not None and options.leaderboard:
        if fmt not in LEADERBOARD_FORMATS:
            raise BenchError(f"--leaderboard: format {fmt!r} not available (formats: {', '.join(LEADERBOARD_FORMATS)})")
        return LEADERBOARD_FORMATS[fmt](build_table(runs, baseline, options))
    return FORMATS[fmt](build_table(runs, baseline, options))


def rich_table(runs: list[Run]) -> RichTable:
    t = build_table(runs)
    table = RichTable(title="Forgetting table", caption="\n".join(t.notes + [f"† FAILED {f}" for f in t.failures]))
    table.add_column("")
    table.add_column(t.baseline_title, justify="right", style="dim")
    for c in t.columns:
        table.add_column(header(c), justify="right")
    for row in t.rows:
        table.add_row(row.name, baseline(row), *(fmt_cell(row.kind, t.values(row, c)) for c in t.columns))
    return table
