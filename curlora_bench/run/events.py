"""What a run reports while it works. Sinks subscribe by subclassing `RunEvents`.

The run emits each event once; the console, the Ray progress board and the trackers
(TensorBoard, MLflow: `run/trackers.py`) are sinks, combined with `Fanout`. The run itself
writes records.jsonl and train_log.jsonl, so they exist whatever sinks are attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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

    def stage_finished(self, run: str, stage: int) -> None:
        """The stage is trained, evaluated and checkpointed."""

    def run_finished(self, summary: RunSummary) -> None:
        """summary.json is written (the run completed or failed)."""

    def close(self) -> None:
        """The run is over, finished or not (an exception may be on its way): release what is held."""


class Fanout(RunEvents):
    """Every event to each sink, in order."""

    def __init__(self, sinks: list[RunEvents]) -> None:
        self.sinks = sinks

    def message(self, text: str) -> None:
        for s in self.sinks:
            s.message(text)

    def run_started(self, run: RunStart) -> None:
        for s in self.sinks:
            s.run_started(run)

    def stage_started(self, run: str, stage: int, task: str, steps: int) -> None:
        for s in self.sinks:
            s.stage_started(run, stage, task, steps)

    def step(self, step: int, loss: float) -> None:
        for s in self.sinks:
            s.step(step, loss)

    def logged(self, entry: TrainLogEntry) -> None:
        for s in self.sinks:
            s.logged(entry)

    def record(self, record: Record) -> None:
        for s in self.sinks:
            s.record(record)

    def stage_finished(self, run: str, stage: int) -> None:
        for s in self.sinks:
            s.stage_finished(run, stage)

    def run_finished(self, summary: RunSummary) -> None:
        for s in self.sinks:
            s.run_finished(summary)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class ConsoleEvents(RunEvents):
    """Messages on a rich console and a transient progress bar per training stage."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._bar = None
        self._ema: float | None = None
        self._label = ""
        self._rate = ""

    def message(self, text: str) -> None:
        self.console.print(text)

    def stage_started(self, run: str, stage: int, task: str, steps: int) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        self._label = f"{run} train {task}"
        self._bar = self._progress.add_task(self._label, total=steps)
        self._ema = None
        self._rate = ""

    def step(self, step: int, loss: float) -> None:
        if self._progress is None:
            return
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self._progress.update(self._bar, advance=1, description=self.describe())

    def logged(self, entry: TrainLogEntry) -> None:
        self._rate = f" lr {entry.lr:.2e} {entry.tokens_per_s:,.0f} tok/s"
        if self._progress is not None:
            self._progress.update(self._bar, description=self.describe())

    def describe(self) -> str:
        """The bar's text: the smoothed loss, the latest logged learning rate and throughput."""
        loss = f" loss {self._ema:.3f}" if self._ema is not None else ""
        return f"{self._label}{loss}{self._rate}"

    def stage_finished(self, run: str, stage: int) -> None:
        self._stop()

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __del__(self) -> None:
        self._stop()
