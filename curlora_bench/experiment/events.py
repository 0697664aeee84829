"""The sinks the experiment attaches to its runs: `Fanout` (several sinks as one) and the
console's progress display. The events themselves are the run's (`run/events.py`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..run.events import RunEvents, RunStart, StageNumbers
from ..store.schema import Record, RunSummary, TrainLogEntry


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

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        for s in self.sinks:
            s.stage_finished(run, stage, numbers)

    def run_finished(self, summary: RunSummary) -> None:
        for s in self.sinks:
            s.run_finished(summary)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def stage_text(n: StageNumbers) -> str:
    """A finished stage's numbers in a line: each task's score so far, perplexity, drift, time."""
    return (", ".join(f"{task} {value:.3f}" for task, value in n.scores)
            + (f", ppl {n.perplexity:.3f}" if n.perplexity is not None else "")
            + f", drift {n.drift:.2e} ({n.train_seconds:.1f}s train)")


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

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        self._stop()
        if numbers is not None:
            self.console.print(f"  {run} stage {numbers.stage}/{numbers.stages} {numbers.task}: {stage_text(numbers)}")

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __del__(self) -> None:
        self._stop()
