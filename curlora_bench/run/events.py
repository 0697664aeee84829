"""What a run reports while it works: the vocabulary of its events. Sinks subscribe by
subclassing `RunEvents`.

The run emits each event once to the one sink it is given; the experiment machinery
(`experiment/events.py`, `experiment/trackers.py`) combines the console, the Ray progress
board and the trackers into that sink. The run itself writes records.jsonl and
train_log.jsonl, so they exist whatever sinks are attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.schema import Record, RunSummary, TrainLogEntry


@dataclass
class RunStart:
    """A run begins (fresh or resumed): who it is, and what its files already hold."""

    experiment: str  # the config's name
    folder: Path  # the run folder (<experiment folder>/<label>/seed-<k>)
    label: str
    seed: int
    run_key: str
    config: dict[str, Any]  # the resolved config, this run's method only
    resumed_from: int | None  # the stage it resumes after
    train_log: list[TrainLogEntry] = field(default_factory=list)  # kept from before the resume
    records: list[Record] = field(default_factory=list)  # kept from before the resume


@dataclass(frozen=True)
class StageNumbers:
    """What a finished stage measured, for the sinks to show (the records hold them all)."""

    stage: int  # 1-based
    stages: int  # the run's tasks
    task: str  # the stage's name
    scores: list[tuple[str, float]]  # each task so far: its primary score after this stage
    perplexity: float | None  # the primary corpus's (None: no perplexity)
    drift: float  # the mean relative weight drift
    train_seconds: float


class RunEvents:
    """Callbacks of a run; the default does nothing (a run in another process, a test)."""

    def message(self, text: str) -> None:
        """A line for the user (setup facts, a stage's results, a failure)."""

    def run_started(self, run: RunStart) -> None:
        """The run is open and resumed; what it logged before the resume is in `run`."""

    def stage_started(self, run: str, stage: int, task: str, steps: int) -> None:
        """Training of `stage` (1-based) on `task` begins; it will take `steps` optimizer steps."""

    def step(self, step: int, loss: float) -> None:
        """One optimizer step finished with this loss."""

    def logged(self, entry: TrainLogEntry) -> None:
        """A train_log.jsonl line was written (every `train.log_every` steps)."""

    def record(self, record: Record) -> None:
        """A records.jsonl line was written (an accuracy or perplexity)."""

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        """The stage is over: trained, evaluated and checkpointed, with these `numbers`; None when
        its training stopped (a message says why)."""

    def run_finished(self, summary: RunSummary) -> None:
        """summary.json is written (the run completed or failed)."""

    def close(self) -> None:
        """The run is over, finished or not (an exception may be on its way): release what is held."""
