"""Runs -> the paper's forgetting table (md, csv, latex, json, terminal)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from rich.table import Table as RichTable

from ..errors import BenchError
from . import metrics
from .store import RunResult


@dataclass
class Row:
    name: str
    kind: str  # perplexity | accuracy | count | metric (signed) | ratio | small | kl
    get: Callable[[dict], float | None]
    baseline: float | None = None
    cells: dict[str, list[float]] = field(default_factory=dict)
    key: str | None = None  # the paper table's metric name, for rows the paper reports


def _acc(i: int, j: int) -> Callable[[dict], float | None]:
    return lambda s: s["accuracy_matrix"][i][j]


def _metric(key: str) -> Callable[[dict], float | None]:
    return lambda s: s.get("metrics", {}).get(key)


def _drift(stage: int, key: str) -> Callable[[dict], float | None]:
    def get(s: dict) -> float | None:
        d = s.get("drift") or []
        return d[stage][key] if 0 <= stage < len(d) and d[stage].get("modules") else None

    return get


def _sampling(axis: str, key: str) -> Callable[[dict], float | None]:
    return lambda s: ((s.get("sampling") or {}).get("summary") or {}).get(axis, {}).get(key)


def _duplicates(s: dict) -> float | None:
    agg = (s.get("sampling") or {}).get("summary")
    return agg["columns"]["duplicates_total"] + agg["rows"]["duplicates_total"] if agg else None


def build_rows(runs: list[RunResult]) -> tuple[list[str], list[Row]]:
    """Rows in the paper's order, then matrix metrics and drift diagnostics; one column per
    method label (seeds pooled)."""
    tasks = runs[0].summary["tasks"]
    for r in runs[1:]:
        if r.summary["tasks"] != tasks:
            raise BenchError(
                f"{r.path}: task sequence {r.summary['tasks']} differs from {tasks}; report one experiment at a time"
            )
    majority = runs[0].summary.get("majority_baseline", {})
    rows = [Row("Initial perplexity", "perplexity", lambda s: s["perplexity"]["initial"], key="initial_ppl")]
    for i, t in enumerate(tasks):
        rows.append(Row(f"{t} accuracy (after {t})", "accuracy", _acc(i, i), majority.get(t), key=f"{t}_acc_after_{t}"))
        for j in range(i):
            rows.append(Row(f"{tasks[j]} accuracy (after {t})", "accuracy", _acc(i, j), majority.get(tasks[j]),
                            key=f"{tasks[j]}_acc_after_{t}"))
    rows += [
        Row("Final perplexity", "perplexity", lambda s: s["perplexity"]["final"], key="final_ppl"),
        Row("Trainable parameters", "count", lambda s: s["trainable_parameters"]),
        Row("Average accuracy (final)", "accuracy", _metric("average_accuracy")),
        Row("Backward transfer", "metric", _metric("backward_transfer")),
        Row("Forgetting", "metric", _metric("forgetting")),
        Row("Perplexity drift (final/initial)", "ratio", _metric("perplexity_drift")),
    ]
    for i, t in enumerate(tasks):
        rows.append(Row(f"‖ΔW‖/‖W‖ mean over matrices (after {t})", "small", _drift(i, "mean")))
    rows += [
        Row("‖ΔW‖/‖W‖ max over matrices (final)", "small", lambda s: _drift(len(s.get("drift") or []) - 1, "max")(s)),
        Row("CUR columns: KL(q ‖ uniform), mean", "kl", _sampling("columns", "kl_from_uniform_mean")),
        Row("CUR rows: KL(q ‖ uniform), mean", "kl", _sampling("rows", "kl_from_uniform_mean")),
        Row("CUR columns: max/min probability, worst matrix", "ratio", _sampling("columns", "max_min_ratio_max")),
        Row("CUR rows: max/min probability, worst matrix", "ratio", _sampling("rows", "max_min_ratio_max")),
        Row("CUR duplicate indices (columns + rows)", "count", _duplicates),
    ]
    labels = list(dict.fromkeys(r.label for r in runs))
    for row in rows:
        for label in labels:
            vals = [row.get(r.summary) for r in runs if r.label == label]
            row.cells[label] = [v for v in vals if v is not None]
    rows = [row for row in rows if any(row.cells.values()) or row.key]  # drop rows no method has
    paper = paper_columns(runs, labels)
    for col, numbers in paper.items():
        for row in rows:
            row.cells[col] = [numbers[row.key]] if row.key in numbers else []
    return labels + list(paper), rows


PAPER_MODELS = {"gpt2-large": "gpt2-large", "mistralai/mistral-7b-v0.3": "mistral-7b-v0.3"}
PAPER_TASKS = ["mrpc", "sst2", "sentiment140"]


def paper_table() -> dict[tuple[str, str], dict[str, float]]:
    """(paper model, column like LoRA-8) -> {metric: value}, from the paper's Tables 1-2."""
    text = resources.files("curlora_bench.results").joinpath("paper_tables.csv").read_text()
    table: dict[tuple[str, str], dict[str, float]] = {}
    for rec in csv.DictReader(io.StringIO(text)):
        for col, v in rec.items():
            if col not in ("model", "metric"):
                table.setdefault((rec["model"], col), {})[rec["metric"].replace("_wikitext2", "")] = float(v)
    return table


def paper_columns(runs: list[RunResult], labels: list[str]) -> dict[str, dict[str, float]]:
    """The paper's published numbers for our LoRA/CURLoRA columns, when the runs reproduce its
    setting (protocol paper, its model, MRPC -> SST-2 -> Sentiment140)."""
    s = runs[0].summary
    model = PAPER_MODELS.get(str(s.get("model", "")).lower())
    if not model or s.get("tasks") != PAPER_TASKS or any(r.summary.get("protocol") != "paper" for r in runs):
        return {}
    table = paper_table()
    out = {}
    for label in labels:
        m = next(r.summary["method"] for r in runs if r.label == label)
        name = {"lora": "LoRA", "curlora": "CURLoRA"}.get(m.get("method"))
        if name and (model, f"{name}-{m.get('rank')}") in table:
            out[f"paper {label}"] = table[(model, f"{name}-{m.get('rank')}")]
    return out


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
    if kind == "metric":
        return f"{round(v, 3) + 0.0:+.3f}" if abs(v) < 10 else f"{v:.3g}"  # + 0.0: no "-0.000"
    return f"{v:.3f}"


def fmt_cell(row: Row, label: str) -> str:
    vals = row.cells.get(label) or []
    if not vals:
        return "-"
    m, s = metrics.mean_std(vals)
    if len(vals) == 1 or row.kind == "count":
        return fmt_value(row.kind, m)
    return f"{fmt_value(row.kind, m)} ± {fmt_value(row.kind, s).lstrip('+')}"


def seeds_note(runs: list[RunResult]) -> str:
    per = {}
    for r in runs:
        per.setdefault(r.label, []).append(r.summary["seed"])
    ns = {len(v) for v in per.values()}
    protocol = {r.summary.get("protocol", "standard") for r in runs}
    ppl = next((r.summary["perplexity"]["protocol"] for r in runs if r.summary["perplexity"].get("protocol")), None)
    parts = [f"model {runs[0].summary['model']}", f"protocol {', '.join(sorted(protocol))}"]
    parts.append(f"{'/'.join(map(str, sorted(ns)))} seed(s) per method" + (" (mean ± std)" if max(ns) > 1 else ""))
    if ppl:
        parts.append(
            f"perplexity: {ppl.get('corpus')}, {ppl.get('corpus_tokens')} tokens, window {ppl.get('window')}, "
            f"stride {ppl.get('stride')}{', BOS' if ppl.get('bos') else ''}"
        )
    return "; ".join(parts)


def to_markdown(runs: list[RunResult]) -> str:
    labels, rows = build_rows(runs)
    head = ["", "majority", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        base = f"{row.baseline:.3f}" if row.baseline is not None else ""
        lines.append("| " + " | ".join([row.name, base, *(fmt_cell(row, lab) for lab in labels)]) + " |")
    failed = [f"{r.label} seed {r.summary['seed']}: {r.summary['error']}" for r in runs if r.summary.get("status") == "failed"]
    notes = [seeds_note(runs)] + [f"FAILED {f}" for f in failed]
    return "\n".join(lines) + "\n\n" + "\n".join(f"_{n}_  " for n in notes) + "\n"


def _stats(vals: list[float]) -> dict:
    if not vals:
        return {"mean": None, "std": None, "n": 0, "ci95": None, "values": []}
    m, s = metrics.mean_std(vals)
    ci = metrics.t_interval(vals)
    return {"mean": m, "std": s, "n": len(vals), "ci95": list(ci) if ci else None, "values": vals}


def to_json(runs: list[RunResult]) -> str:
    labels, rows = build_rows(runs)
    data = {
        "columns": labels,
        "note": seeds_note(runs),
        "rows": [
            {"row": r.name, "kind": r.kind, "majority_baseline": r.baseline,
             "cells": {lab: _stats(r.cells[lab]) for lab in labels}}
            for r in rows
        ],
        "runs": [str(r.path) for r in runs],
    }
    return json.dumps(data, indent=2) + "\n"


def to_csv(runs: list[RunResult]) -> str:
    labels, rows = build_rows(runs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "method", "mean", "std", "n", "ci95_low", "ci95_high", "majority_baseline"])
    for r in rows:
        for lab in labels:
            st = _stats(r.cells[lab])
            ci = st["ci95"] or [None, None]
            w.writerow([r.name, lab, st["mean"], st["std"], st["n"], ci[0], ci[1], r.baseline])
    return buf.getvalue()


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("±", r"$\pm$")):
        s = s.replace(a, b)
    return s


def to_latex(runs: list[RunResult]) -> str:
    labels, rows = build_rows(runs)
    lines = [r"\begin{tabular}{l" + "r" * (len(labels) + 1) + "}", r"\toprule"]
    lines.append(" & ".join(["", "majority", *map(_tex, labels)]) + r" \\")
    lines.append(r"\midrule")
    for row in rows:
        base = f"{row.baseline:.3f}" if row.baseline is not None else ""
        lines.append(" & ".join([_tex(row.name), base, *(_tex(fmt_cell(row, lab)) for lab in labels)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% {seeds_note(runs)}"]
    return "\n".join(lines) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}


def render(runs: list[RunResult], fmt: str) -> str:
    return FORMATS[fmt](runs)


def rich_table(runs: list[RunResult]) -> RichTable:
    labels, rows = build_rows(runs)
    table = RichTable(title="Forgetting table", caption=seeds_note(runs))
    table.add_column("")
    table.add_column("majority", justify="right", style="dim")
    for lab in labels:
        table.add_column(lab, justify="right")
    for row in rows:
        base = f"{row.baseline:.3f}" if row.baseline is not None else ""
        table.add_row(row.name, base, *(fmt_cell(row, lab) for lab in labels))
    return table
