"""What a run reports while it works. Sinks subscribe by subclassing `RunEvents`."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunEvents:
    """Callbacks of a run; the default does nothing (a run in another process, a test)."""

    def message(self, text: str) -> None:
        """A line for the user (setup facts, a stage's results, a failure)."""

    def stage_started(self, run: str, stage: int, task: str, steps: int) -> None:
        """Training of `stage` (1-based) on `task` begins; it will take `steps` optimizer steps."""

    def step(self, step: int, loss: float) -> None:
        """One optimizer step finished with this loss."""

    def stage_finished(self, run: str, stage: int) -> None:
        """The stage is trained, evaluated and checkpointed."""


class ConsoleEvents(RunEvents):
    """Messages on a rich console and a transient progress bar per training stage."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._bar = None
        self._ema: float | None = None
        self._label = ""

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

    def step(self, step: int, loss: float) -> None:
        if self._progress is None:
            return
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self._progress.update(self._bar, advance=1, description=f"{self._label} loss {self._ema:.3f}")

    def stage_finished(self, run: str, stage: int) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __del__(self) -> None:
        self._stop()
