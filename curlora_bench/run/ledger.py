"""A run's books: its JSONL files (records, train log, predictions, generations), each line
counted in the run's progress so a resume cuts every file back to what its checkpoint counted,
and the summary assembled from the progress at the end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config.methods import method_dict
from ..core.env import git_commit, package_versions
from ..core.layout import GENERATIONS, PREDICTIONS, RECORDS, TRAIN_LOG
from ..core.metrics import MATRIX_METRICS, average_accuracy, matrix_metrics, perplexity_drift
from ..core.parse import to_dict
from ..store.folders import RecordWriter
from ..store.schema import (
    SCHEMA_VERSION,
    Generation,
    PerplexitySummary,
    Prediction,
    Record,
    RunProgress,
    RunSummary,
    TrainLogEntry,
)
from .events import RunEvents

if TYPE_CHECKING:
    from .state import RunState


class Ledger:
    """The run's JSONL files, open for appending; every line written is counted in `progress`
    (records and train-log lines also go to the run's sink). Only a run with prompted tasks has
    generations to keep."""

    def __init__(self, folder: Path, progress: RunProgress, events: RunEvents, generations: bool) -> None:
        self.progress, self.events = progress, events
        self.records = RecordWriter(folder / RECORDS)
        self.train_log = RecordWriter(folder / TRAIN_LOG, sync_each=False)
        self.predictions = RecordWriter(folder / PREDICTIONS, sync_each=False)
        self.generations = RecordWriter(folder / GENERATIONS, sync_each=False) if generations else None

    def record(self, rec: Record) -> None:
        self.records.write(rec)
        self.progress.records += 1
        self.events.record(rec)

    def predicted(self, line: Prediction) -> None:
        self.predictions.write(line)
        self.progress.predictions += 1

    def generated(self, line: Generation) -> None:
        assert self.generations is not None, "generations of a run without prompted tasks"
        self.generations.write(line)
        self.progress.generations += 1

    def log(self, entry: TrainLogEntry) -> None:
        self.train_log.write(entry)
        self.progress.train_log += 1
        self.events.logged(entry)

    def sync(self) -> None:
        """Every line counted so far on disk (records.jsonl syncs each line): before a checkpoint counts them."""
        for writer in (self.train_log, self.predictions, self.generations):
            if writer is not None:
                writer.sync()

    def close(self) -> None:
        for writer in (self.records, self.train_log, self.predictions, self.generations):
            if writer is not None:
                writer.close()


def last_row(progress: RunProgress) -> int | None:
    """The matrix row the last finished stage filled (joint's one stage: the last row); None before any."""
    return progress.stages[-1].stage - 1 if progress.stages else None


def summarise(state: RunState, status: str, error: str | None, seconds: float) -> RunSummary:
    """summary.json's content: everything the run measured (its progress) and how."""
    spec, p, progress, base = state.spec, state.prepared, state.progress, state.inputs
    base_ppl = base.base_ppls[0] if base.base_ppls else None  # the primary corpus's
    ppl0 = base_ppl.perplexity if base_ppl else None
    row = last_row(progress)
    final = progress.ppl_after[row] if row is not None and base_ppl else None
    zero_shot = base.zero_shot
    return RunSummary(
        schema_version=SCHEMA_VERSION, label=state.method.display_label, method=method_dict(state.method),
        seed=spec.seed, run_key=state.key, order=spec.order if spec.task_order is not None else None,
        settings_hash=spec.identity.settings_hash, settings=spec.identity.settings, status=status, error=error,
        model=state.cfg.model, protocol=p.protocol.name, padding_side=p.batching.padding_side,
        tasks=[t.name for t in p.tasks], num_classes={t.name: t.num_classes for t in p.tasks},
        baseline={t.name: floor(state, t) for t in p.tasks}, data={t.name: t.info for t in p.tasks},
        score_matrix=progress.matrix,
        perplexity=PerplexitySummary(ppl0, progress.ppl_after, final, base_ppl.protocol if base_ppl else None),
        metrics=metrics(state, ppl0, final), drift=progress.drift,
        diagnostics=state.adapter.diagnostics(state.model, state.modules), trainable_parameters=state.trainable,
        head_parameters={t.name: state.hidden * t.num_classes + t.num_classes if t.kind.has_head
                         else 0 for t in p.tasks},
        adapted_modules=len(state.modules), stages=progress.stages, resumed_from_stage=state.resumed_from,
        wall_seconds=round(seconds, 3), device=str(p.device), threads=torch.get_num_threads(),
        versions=package_versions(), git_commit=git_commit(),
        strategy=state.strategy.summary({t.name: t for t in p.tasks}), regime=state.regime.name,
        execution=to_dict(state.cfg.execution), perplexities=further_perplexities(state),
        validation_matrix=progress.val_matrix,
        metric={t.name: t.metric for t in p.tasks} if any(t.metric != "accuracy" for t in p.tasks) else None,
        zero_shot={t: {s.metric: s.value for s in scores} for t, scores in zero_shot.items()} or None,
        general=progress.general or None)


def metrics(state: RunState, ppl0: float | None, final: float | None) -> dict[str, float | None]:
    """The matrix metrics; a regime without a sequence (joint) has one row: its final average
    accuracy and perplexity drift, nothing learned or forgotten along a sequence."""
    progress, row = state.progress, last_row(state.progress)
    if state.regime.sequence:
        return matrix_metrics(progress.matrix[: len(progress.stages)], ppl0, final)
    if row is None:
        return {}
    return {**{m.key: None for m in MATRIX_METRICS}, "average_accuracy": average_accuracy(progress.matrix[: row + 1]),
            "perplexity_drift": perplexity_drift(ppl0, final)}


def floor(state: RunState, task) -> float:
    """The baseline of a task's primary metric: its zero-shot score, else its majority class."""
    scores = state.inputs.zero_shot.get(task.name)
    return scores[0].value if scores else task.majority


def further_perplexities(state: RunState) -> dict[str, PerplexitySummary] | None:
    """The corpora after the primary one (None when there is one corpus or none)."""
    corpora, progress, row = state.prepared.corpora, state.progress, last_row(state.progress)
    if len(corpora) < 2:
        return None
    out = {}
    for corpus, base in zip(corpora[1:], state.inputs.base_ppls[1:]):
        after = progress.extra_ppl.get(corpus.name, [None] * len(state.tasks))
        out[corpus.name] = PerplexitySummary(base.perplexity, after, after[row] if row is not None else None,
                                             base.protocol)
    return out
