"""The report's rows: what each one is titled, how it is formatted and how it is read from a run
summary, in the paper's order (`summary_rows`), then general ability and each adapter's own
(`DiagnosticRow` data). The metrics themselves, with the titles and formats of their rows, are
`core.metrics`'s pure functions and `MATRIX_METRICS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.metrics import (
    MATRIX_METRICS,
    TASK_METRICS,
    DiagnosticRow,
    General,
    Kind,
    average_accuracy,
    average_incremental,
    backward_transfer,
    backward_transfer_over_tasks,
    forgetting,
    forward_transfer,
    general_ability,
    general_primary,
    plasticity,
)


@dataclass(frozen=True)
class Row:
    """One report row: its title, how to format it, and how to read it from a run summary.

    `read` gets a typed `RunSummary` and returns None where the run has no such value.
    `paper_key` names the row in the paper's published tables, for rows the paper reports.
    """

    name: str
    kind: Kind
    read: Callable[[Any], float | None]
    baseline: float | None = None
    paper_key: str | None = None


def diagnostic_row(d: DiagnosticRow) -> Row:
    """An adapter's declared row, read from a run summary's `diagnostics`."""
    def read(summary: Any) -> float | None:
        values = []
        for path in d.paths:
            node = summary.diagnostics
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return None
                node = node[key]
            values.append(node)
        return sum(values) if values else None

    return Row(d.name, d.kind, read)


def _acc(after: str, task: str) -> Callable[[Any], float | None]:
    """The score on `task` after the stage that learned `after`, by name (runs in other orders pool)."""
    def read(s: Any) -> float | None:
        i, j = s.tasks.index(after), s.tasks.index(task)
        return s.score_matrix[i][j] if j <= i else None

    return read


def _metric(key: str) -> Callable[[Any], float | None]:
    return lambda s: s.metrics.get(key)  # a failed run before stage 1 has no metrics


def _drift_entry(s: Any, stage: int | None) -> Any:
    """The run's drift entry after 0-based `stage` (None: the last); by stage number, since a joint
    run has one entry, at its final stage."""
    if not s.drift:
        return None
    return s.drift[-1] if stage is None else next((d for d in s.drift if d.stage == stage + 1), None)


def _drift(stage: int | None, key: str) -> Callable[[Any], float | None]:
    def read(s: Any) -> float | None:
        d = _drift_entry(s, stage)
        if d is None or not d.modules:
            return None
        return getattr(d, key)

    return read


def intruder_rows(summary: Any) -> list[Row]:
    """Rows of intruder dimensions (`diagnostics.intruders`), summed over the adapted matrices:
    one per threshold and stage; none when the run counted none."""
    counted = next((d.intruders for d in summary.drift or [] if d.intruders is not None), None)
    if counted is None:
        return []

    def read(stage: int, k: int) -> Callable[[Any], float | None]:
        def value(s: Any) -> float | None:
            d = _drift_entry(s, stage)
            if d is None or d.intruders is None or k >= len(d.intruders.total):
                return None
            return d.intruders.total[k]
        return value

    stages = [(d.stage - 1, summary.tasks[d.stage - 1]) for d in summary.drift]
    return [Row(f"Intruder dimensions, top {counted.top_k} at ε {eps:g}, summed over matrices (after {t})",
                "ratio", read(i, k)) for k, eps in enumerate(counted.epsilons) for i, t in stages]


def recovery_rows(summary: Any) -> list[Row]:
    """Rows of the recovery probe (`diagnostics.recovery_steps`): each earlier task's score after
    the retraining steps, and the share of its lost score they brought back, averaged over the
    tasks that lost some; none when the run has no probe."""
    if not summary.recovery:
        return []
    k = summary.recovery[0].steps

    def task_value(task: str) -> Callable[[Any], float | None]:
        return lambda s: next((r.recovered for r in s.recovery or [] if r.task == task), None)

    def share(s: Any) -> float | None:
        shares = [r.share for r in s.recovery or [] if r.share is not None]
        return sum(shares) / len(shares) if shares else None

    return [*(Row(f"{r.task} {TASK_METRICS[r.metric].title} after {k} steps of retraining from the end (recovery "
                  "probe)", "accuracy", task_value(r.task)) for r in summary.recovery),
            Row(f"Share of lost score back after {k} retraining steps (mean over earlier tasks that lost)", "ratio",
                share)]


def general_rows(general: General | None) -> list[Row]:
    """Rows of general ability: before / after / drop per task and metric, then their average
    over tasks (each task's primary metric)."""
    if not general:
        return []
    rows = []
    names = {"before": "before", "after": "after", "drop": "drop (before − after)"}
    kinds = {"before": "accuracy", "after": "accuracy", "drop": "signed"}
    for task, by_metric in general.items():
        for metric in by_metric:
            rows += [Row(f"General ability ({task}, {metric}) {names[w]}", kinds[w],
                         lambda s, w=w, t=task, m=metric: general_ability(s.general, w, t, m)) for w in names]
    if len(general) > 1:
        what = f"average of {len(general)} tasks' " + ", ".join(general_primary(list(m)) for m in general.values())
        rows += [Row(f"General ability ({what}) {names[w]}", kinds[w],
                     lambda s, w=w: general_ability(s.general, w)) for w in names]
    return rows


def score_word(metric: dict[str, str] | None) -> str:
    """What the matrix metrics average: "accuracy", or "score" where some task's primary metric
    (`metric`: task -> its metric) is not accuracy."""
    return "score" if any(m != "accuracy" for m in (metric or {}).values()) else "accuracy"


def summary_rows(tasks: list[str], majority: dict[str, float], metric: dict[str, str] | None = None) -> list[Row]:
    """The report's rows in the paper's order, then the matrix metrics and the weight drift.

    `metric`: each task's primary metric (None: accuracy throughout). Where a task's is not
    accuracy its rows say which it is, and the matrix metrics average scores, not accuracies."""
    metric = metric or {}
    word = score_word(metric)
    rows = [Row("Initial perplexity", "perplexity", lambda s: s.perplexity.initial, paper_key="initial_ppl")]
    for i, t in enumerate(tasks):
        for j in [i, *range(i)]:  # the task just learned first, then the earlier ones
            title = TASK_METRICS[metric.get(tasks[j], "accuracy")].title
            rows.append(Row(f"{tasks[j]} {title} (after {t})", "accuracy", _acc(t, tasks[j]), majority.get(tasks[j]),
                            paper_key=f"{tasks[j]}_acc_after_{t}" if title == "accuracy" else None))
    rows += [
        Row("Final perplexity", "perplexity", lambda s: s.perplexity.final, paper_key="final_ppl"),
        Row("Trainable parameters", "count", lambda s: s.trainable_parameters),
        Row("Plasticity (each task right after it was learned)", "accuracy",
            lambda s: plasticity(s.score_matrix) if s.status == "complete" else None),
        *(Row(m.title.replace("accuracy", word), m.kind, _metric(m.key))
          for m in MATRIX_METRICS),
    ]
    rows += [Row(f"‖ΔW‖/‖W‖ mean over matrices (after {t})", "small", _drift(i, "mean")) for i, t in enumerate(tasks)]
    rows.append(Row("‖ΔW‖/‖W‖ max over matrices (final)", "small", _drift(None, "max")))
    return rows


# The sequence metrics as the continual-learning literature names them, each read from a finished
# run's score matrix; FWT (`literature_rows`) also needs each task scored before its own stage
# (`eval.lookahead`) and the base model's score on it.
LITERATURE: list[tuple[str, Callable[[Any], float | None]]] = [
    ("AP / Last: mean score over the tasks after the final stage (SAPT, TRACE; EasyCL's Last)", average_accuracy),
    ("Avg: mean over stages of the mean score on the tasks learned so far (EasyCL)", average_incremental),
    ("BWT over T-1 tasks: final minus just-learned score (GEM, Lopez-Paz & Ranzato 2017; EasyCL)",
     backward_transfer),
    ("BWT over T tasks: the same sum divided by T (SAPT's and TRACE's code)", backward_transfer_over_tasks),
    ("Forgetting rate: best earlier score minus final, over T-1 tasks (Chaudhry et al. 2018; SAPT's Fgt)",
     forgetting),
]


def literature_rows() -> list[Row]:
    """The `LITERATURE` rows, each read from a complete run's matrix of two or more rows (a joint
    run's one row has no sequence to read)."""

    def read(f: Callable[[Any], float | None]) -> Callable[[Any], float | None]:
        def value(s: Any) -> float | None:
            A = s.score_matrix
            if s.status != "complete" or len(A) < 2 or any(A[i][j] is None for i in range(len(A)) for j in range(i + 1)):
                return None
            return f(A)
        return value

    def fwt(s: Any) -> float | None:
        if s.status != "complete" or not s.zero_shot:
            return None
        base = [s.zero_shot.get(t, {}).get(s.primary(t)) for t in s.tasks]
        return forward_transfer(s.score_matrix, base)

    return [*(Row(name, "signed" if "BWT" in name else "accuracy", read(f)) for name, f in LITERATURE),
            Row("FWT: score just before a task's own stage minus the base model's (GEM; EasyCL; needs "
                "eval.lookahead)", "signed", fwt)]
