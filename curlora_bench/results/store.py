"""Run folders on disk: atomic writes, records.jsonl and train_log.jsonl (one flushed line each), finding runs."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchError
from .schema import Record, RunSummary, TrainLogEntry, dump, load

SUMMARY = "summary.json"
RECORDS = "records.jsonl"
TRAIN_LOG = "train_log.jsonl"
TENSORBOARD = "tensorboard"  # the run's event files, with `log: [tensorboard]`


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RecordWriter:
    """Appends one JSON line per record (a `Record`, a `TrainLogEntry`) and flushes it at once.

    Each line is also fsynced unless `sync_each` is off (train_log.jsonl: a line per optimizer
    step, where an fsync can cost more than the step); then `sync()` makes them durable, before
    a checkpoint counts them.
    """

    def __init__(self, path: Path, sync_each: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.sync_each = path, sync_each
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: Record | TrainLogEntry) -> None:
        self._f.write(record.to_json() + "\n")
        self._f.flush()
        if self.sync_each:
            os.fsync(self._f.fileno())

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def keep_records(path: Path, n: int) -> None:
    """Cut records.jsonl (or train_log.jsonl) back to the `n` lines a checkpoint vouches for."""
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    if len(lines) < n:
        raise BenchError(f"{path}: {len(lines)} lines but the checkpoint counts {n}; rerun with --fresh")
    write_atomic(path, "".join(lines[:n]))


def run_dir(experiment_dir: Path, label: str, seed: int) -> Path:
    return experiment_dir / label / f"seed-{seed}"


def write_summary(run: Path, summary: RunSummary) -> None:
    write_atomic(run / SUMMARY, dump(summary))


def finished_summary(run: Path, run_key: str) -> RunSummary | None:
    """The run's summary if it completed with these settings; None otherwise (or unreadable)."""
    path = run / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = load(RunSummary, path)
    except BenchError:
        return None  # half-written or from another version: the run is redone
    return summary if summary.run_key == run_key and summary.status == "complete" else None


@dataclass
class Run:
    """A finished run on disk: its folder and its typed summary."""

    path: Path
    summary: RunSummary


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run (a folder with summary.json) under the given run or experiment folders."""
    found: list[Path] = []
    for p in paths:
        if not p.exists():
            raise BenchError(f"{p}: results folder not found")
        if (p / SUMMARY).is_file():
            found.append(p / SUMMARY)
        else:
            found.extend(sorted(p.glob(f"*/seed-*/{SUMMARY}")))
            found.extend(sorted(p.glob(f"*/*/seed-*/{SUMMARY}")))
    if not found:
        raise BenchError(f"no finished runs ({SUMMARY}) under {', '.join(map(str, paths))}")
    return [Run(s.parent, load(RunSummary, s)) for s in dict.fromkeys(found)]
