"""Where runs execute. An executor decides only *where* each `RunSpec` runs, never what it
computes: `local` runs them one after another in this process, `ray` runs each as one Ray task
on a local Ray cluster started for the sweep or on an existing cluster (`address`). Both read
the experiment's execution options (`config.execution.ExecutionConfig`, flags applied)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..config.execution import ExecutionConfig
from ..core.errors import SignalNote, signals_noted
from ..core.layout import RAY_LOGS
from ..run import RunEvents, RunSpec, StageNumbers, run_one
from ..store.schema import RunSummary, TrainLogEntry, parse
from .cluster import RayCluster
from .events import stage_text
from .trackers import tracked


class BoardEvents(RunEvents):
    """A run's events sent to the driver's progress board (a Ray actor), at most every 2 s for training."""

    def __init__(self, board: Any, key: str) -> None:
        self.board, self.key, self._last = board, key, 0.0

    def stage_started(self, run: str, stage: int, task: str, steps: int) -> None:
        self.board.update.remote(self.key, state="running", stage=stage, task=task)

    def logged(self, entry: TrainLogEntry) -> None:
        now = time.monotonic()
        if now - self._last > 2.0:
            self._last = now
            self.board.update.remote(self.key, loss=entry.loss, lr=entry.lr, tps=entry.tokens_per_s)

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        if numbers is None:
            self.board.update.remote(self.key, done_stages=stage)
        else:  # the stage's numbers, as the console shows them
            self.board.update.remote(self.key, done_stages=stage, last=stage_text(numbers))


def _run_remote(spec: dict, key: str, threads: int, board: Any, fresh: bool) -> dict:
    """A Ray task: one run in a worker process, from plain data to plain data."""
    import torch

    from ..core.parse import to_dict
    from ..run import prepare

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    if prepare.BASE_PERPLEXITIES is None:  # this worker's later runs reuse the base model's perplexities
        prepare.BASE_PERPLEXITIES = {}
    run = RunSpec.from_dict(spec)
    board.update.remote(key, state="running", started=time.time())
    summary = run_one(run, events=tracked(BoardEvents(board, key), run), threads=threads, fresh=fresh)
    return to_dict(summary)


def seed_major(specs: list[RunSpec]) -> list[int]:
    """The order Ray gets the runs in: every point's first seed, then every point's second, ...

    A sweep stopped part-way then has every point at its first seeds, not some points at every
    seed and others at none. Where and when a run executes changes nothing in its records.
    """
    seed_rank = {seed: k for k, seed in enumerate(dict.fromkeys(s.seed for s in specs))}
    return sorted(range(len(specs)), key=lambda i: (seed_rank[specs[i].seed], i))


def run_ray(specs: list[RunSpec], executor: ExecutionConfig, labels: list[str], tasks: int,
            events: RunEvents, fresh: bool = False) -> list[RunSummary]:
    """Every spec as one Ray task; returns the summaries of the runs that finished.

    SIGINT/SIGTERM stop the sweep between two waits (`Interrupted`, no traceback). A run whose
    worker died before its first stage gets the results it was to replace back from the driver
    (`checkpoint.replacing` around the sweep), once the cluster is gone.
    """
    threads = executor.threads()
    logs = Path(specs[0].out) / RAY_LOGS if specs else None
    with signals_noted() as note:
        cluster = RayCluster(executor, note, logs)
        with cluster as ray:
            summaries, failed = _sweep(ray, note, specs, executor, threads, labels, tasks, events, fresh)
            cluster.keep_logs = bool(failed)
    for i, why in failed.items():
        where = f"; Ray's logs: {logs}/" if logs and logs.is_dir() else ""
        events.message(f"[red]failed[/]: {labels[i]}: {why} (rerun the same command to resume it{where})")
    return [summaries[i] for i in range(len(specs)) if i in summaries]


def _sweep(ray: Any, note: SignalNote, specs: list[RunSpec], executor: ExecutionConfig, threads: int, labels: list[str],
           tasks: int, events: RunEvents, fresh: bool) -> tuple[dict[int, RunSummary], dict[int, str]]:
    board = ray.remote(num_cpus=0)(Board).remote()
    task = ray.remote(num_cpus=threads, num_gpus=executor.gpus_per_run, max_retries=1)(_run_remote)
    pending = {task.remote(specs[i].alone(), str(i), threads, board, fresh): i for i in seed_major(specs)}
    summaries: dict[int, RunSummary] = {}
    failed: dict[int, str] = {}
    view = LiveView(specs, labels, tasks, events)
    try:
        while pending:
            note.check()
            try:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            except Exception:
                note.check()  # a Ctrl-C reaches the cluster's processes too: the signal, not their error
                raise
            for ref in done:
                i = pending.pop(ref)
                try:
                    summaries[i] = parse(RunSummary, ray.get(ref), labels[i])
                except ray.exceptions.RayError as exc:  # the worker died, ran out of memory, or raised
                    failed[i] = str(exc).strip().splitlines()[-1][:200]
            note.check()
            view.update(ray.get(board.snapshot.remote()), summaries, failed)
    finally:
        view.close()
        if pending:  # stopped: the runs in flight end now, before their folders are settled
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.wait(list(pending), num_returns=len(pending), timeout=10.0)
    return summaries, failed


class Board:
    """A Ray actor holding each run's latest state, for the driver's live view."""

    def __init__(self) -> None:
        self.state: dict[str, dict] = {}

    def update(self, key: str, **fields: Any) -> None:
        self.state.setdefault(key, {}).update(fields)

    def snapshot(self) -> dict[str, dict]:
        return self.state


class LiveView:
    """One rich table of every run: state, stage, latest numbers, elapsed and ETA."""

    def __init__(self, specs: list[RunSpec], labels: list[str], tasks: int, events: RunEvents) -> None:
        from rich.live import Live

        self.specs, self.labels, self.tasks = specs, labels, tasks
        console = getattr(events, "console", None)
        self.live = Live(self.render({}, {}, {}), console=console, refresh_per_second=2, transient=False) \
            if console is not None else None
        if self.live:
            self.live.start()

    def render(self, board: dict, summaries: dict, failed: dict):
        from rich.table import Table

        table = Table(title="sweep")
        for col in ("run", "state", "latest", "elapsed", "ETA"):
            table.add_column(col, justify="right" if col in ("elapsed", "ETA") else "left")
        now = time.time()
        for i in range(len(self.specs)):
            b = board.get(str(i), {})
            elapsed = now - b["started"] if "started" in b else None
            done = b.get("done_stages", 0)
            eta = elapsed / done * (self.tasks - done) if elapsed and done else None
            if i in summaries:
                s = summaries[i]
                state = "done" if s.status == "complete" else "[red]failed[/]"
                latest = f"avg acc {s.metrics.get('average_accuracy') or 0:.3f}" + (
                    f", ppl drift {s.metrics['perplexity_drift']:.3f}" if s.metrics.get("perplexity_drift") else "")
                elapsed, eta = s.wall_seconds, 0.0
            elif i in failed:
                state, latest = "[red]failed[/]", failed[i]
            elif b.get("state") == "running":
                state = f"running stage {b.get('stage', 1)}/{self.tasks}"
                latest = b.get("last", "") or (f"loss {b['loss']:.3f}, lr {b['lr']:.2e}, {b['tps']:,.0f} tok/s"
                                               if "loss" in b else "")
            else:
                state, latest = "queued", ""
            table.add_row(self.labels[i], state, latest, _clock(elapsed), _clock(eta))
        return table

    def update(self, board: dict, summaries: dict, failed: dict) -> None:
        if self.live:
            self.live.update(self.render(board, summaries, failed))

    def close(self) -> None:
        if self.live:
            self.live.stop()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"
