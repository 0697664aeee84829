"""Run folders on disk: atomic writes, records.jsonl and train_log.jsonl (one flushed line each), finding runs."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BenchError
from ..core.layout import (
    CONFIG,
    GENERATIONS,
    LOCK,
    PREDICTIONS,
    RECORDS,
    SUMMARY,
    SUMMARY_GLOBS,
    TRAIN_LOG,
)
from .schema import Record, RunProgress, RunSummary, TrainLogEntry, dump, load


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename (never a half-written file).

    A full disk, a read-only target or a folder where the file should go is one error naming
    the path; whatever was there before is left as it was."""
    if path.is_dir():
        raise BenchError(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _open_temp(path)
    except OSError as exc:
        raise BenchError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        if (mode := _existing_mode(path)) is not None:
            os.fchmod(fd, mode)  # a file being replaced keeps its mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BenchError(f"{path}: cannot write ({exc.strerror or exc}); its earlier contents are unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path`, created with mode 0666 so that the kernel applies the
    umask as it does for open() (mkstemp would make it 0600, unreadable to other users)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # os.open fds are already non-inheritable (PEP 446)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _existing_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


class FolderLock:
    """An exclusive lock on an experiment folder (`.lock`, flock'ed): a second `run` on the same
    folder is refused with the holder's pid. The kernel drops the lock when its process dies,
    however it dies, so a stale file never blocks; the file is removed on release."""

    NAME = LOCK

    def __init__(self, folder: Path) -> None:
        self.path = folder / self.NAME
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise BenchError(f"{self.path}: cannot create the lock file ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise BenchError(f"{self.path.parent} is in use by another run (pid {holder}; lock file "
                                 f"{self.path}); wait for it to finish or use another --output") from None
            # the holder before us may have removed the file after we opened it: lock the current one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk: no lock file is left behind
            self.__exit__()
            raise BenchError(f"{self.path}: cannot write the lock file ({exc.strerror or exc})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


class RecordWriter:
    """Appends one JSON line per record (a `Record`, a `TrainLogEntry`) and flushes it at once.

    Each line is also fsynced unless `sync_each` is off (train_log.jsonl: a line per optimizer
    step, where an fsync can cost more than the step); then `sync()` makes them durable, before
    a checkpoint counts them.
    """

    def __init__(self, path: Path, sync_each: bool = True) -> None:
        self.path, self.sync_each = path, sync_each
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise BenchError(f"{path}: cannot open it to append ({exc.strerror or exc})") from None

    def write(self, record: Record | TrainLogEntry) -> None:
        try:
            self._f.write(record.to_json() + "\n")
            self._f.flush()
            if self.sync_each:
                os.fsync(self._f.fileno())
        except OSError as exc:
            raise BenchError(f"{self.path}: cannot append a line ({exc.strerror or exc}); the stage in flight "
                             "is dropped, finished stages are kept: free space and rerun to resume") from None

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # what it could not flush failed a write already, which said so naming the file
            pass


def cut_back(folder: Path, progress: RunProgress) -> None:
    """The run's files cut back to the lines a checkpoint's `progress` counted (each line checked)."""
    keep_records(folder / RECORDS, progress.records)
    keep_records(folder / TRAIN_LOG, progress.train_log)
    keep_records(folder / PREDICTIONS, progress.predictions)
    if progress.generations or (folder / GENERATIONS).exists():
        keep_records(folder / GENERATIONS, progress.generations)


def keep_records(path: Path, n: int) -> None:
    """Cut records.jsonl (or train_log.jsonl) back to the `n` lines a checkpoint vouches for (each checked)."""
    lines = records_lines(path)
    if len(lines) < n:
        raise BenchError(f"{path}: {len(lines)} lines but the checkpoint counts {n}; rerun with --fresh")
    for i, line in enumerate(lines[:n], 1):
        if not line.endswith("\n") or _parses(line) is None:
            raise BenchError(f"{path}: line {i} is damaged (truncated or not JSON), the checkpoint counts {n} "
                             "lines; rerun with --fresh")
    write_atomic(path, "".join(lines[:n]))


def records_lines(path: Path) -> list[str]:
    """records.jsonl's lines, newlines kept (a last line without one was cut short)."""
    if not path.is_file():
        return []
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not UTF-8 text (damaged?); rerun with --fresh") from None


def _parses(line: str) -> object | None:
    """The line's JSON value, or None if it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


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
    if summary.run_key != run_key or summary.status != "complete":
        return None
    check_records(run, summary)
    return summary


def check_records(run: Path, summary: RunSummary) -> None:
    """A complete run's records.jsonl: every line whole and parsed, as many as its summary shows."""
    path = run / RECORDS
    measured = 0
    for i, line in enumerate(records_lines(path), 1):
        data = _parses(line) if line.endswith("\n") else None
        if not isinstance(data, dict):
            raise BenchError(f"{path}: line {i} is damaged (truncated or not JSON); rerun with --fresh")
        metric = data.get("metric")
        measured += metric == "perplexity" or metric == summary.primary(data.get("task"))
    expected = expected_records(summary)
    if measured != expected:
        raise BenchError(f"{path}: {measured} primary-metric/perplexity records, its summary shows {expected}; "
                         "rerun with --fresh")


def expected_records(summary: RunSummary) -> int:
    """Records of its tasks' primary metrics and perplexities a run writes: each corpus's initial
    perplexity and each prompted task's zero-shot score, then per stage every accuracy-matrix entry
    and each corpus's perplexity (a prompted task's further metrics come on top, uncounted)."""
    corpora = (summary.perplexity.initial is not None) + len(summary.perplexities or {})
    accuracies = sum(v is not None for matrix in (summary.score_matrix, summary.validation_matrix or [])
                     for row in matrix for v in row)
    return corpora * (1 + len(summary.stages)) + accuracies + len(summary.zero_shot or {})


@dataclass
class Run:
    """A finished run on disk: its folder and its typed summary."""

    path: Path
    summary: RunSummary


def find_runs(paths: list[Path], notes: list[str] | None = None) -> list[Run]:
    """Every run (a folder with summary.json) under the given run or experiment folders, each once.

    A run is known by its identity (settings hash, label, seed, task order), not by its path:
    the same run reached twice (`x` and `x/../x`, a symlink, a byte-identical copy) is kept
    once and described in `notes`; two different files claiming one identity are refused."""
    found: list[Path] = []
    for p in paths:
        if not p.exists():
            raise BenchError(f"{p}: results folder not found")
        if (p / SUMMARY).is_file():
            found.append(p / SUMMARY)
        else:
            for pattern in SUMMARY_GLOBS:
                found.extend(sorted(p.glob(pattern)))
    if not found:
        raise BenchError(f"no finished runs ({SUMMARY}) under {', '.join(map(str, paths))}")
    runs: list[Run] = []
    by_file: dict[Path, Path] = {}  # the real file -> the path it was first reached by
    by_identity: dict[tuple, tuple[Path, bytes]] = {}
    twice: list[tuple[Path, Path]] = []  # (path reached again, the path it is the same run as)
    for path in dict.fromkeys(found):
        real = path.resolve()
        if real in by_file:
            twice.append((path, by_file[real]))
            continue
        by_file[real] = path
        summary = load(RunSummary, path)
        key = run_identity(summary)
        if key in by_identity:
            first, data = by_identity[key]
            if _read_bytes(path) != data:
                raise BenchError(f"{path} and {first} are different files for the same run ({describe_identity(summary)}); "
                                 "report one of them (a rerun? a copy edited by hand?)")
            twice.append((path, first))
            continue
        by_identity[key] = (path, _read_bytes(path))
        runs.append(Run(path.parent, summary))
    if twice and notes is not None:
        again, first = twice[0]
        more = f" and {len(twice) - 1} more" if len(twice) > 1 else ""
        notes.append(f"{len(twice)} run{'s' if len(twice) > 1 else ''} reached twice, counted once: {again.parent} is "
                     f"the same run as {first.parent}{more}")
    return runs


def run_identity(summary: RunSummary) -> tuple:
    """What tells two runs apart: settings hash, label, seed and the task order it ran in."""
    return summary.settings_hash, summary.label, summary.seed, summary.order, tuple(summary.tasks)


def describe_identity(summary: RunSummary) -> str:
    order = f" order {summary.order}" if summary.order is not None else ""
    return f"{summary.label} seed {summary.seed}{order}, settings {summary.settings_hash}"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror})") from None


def experiment_labels(experiment_dir: Path) -> list[str]:
    """The method labels of an experiment folder's config.yaml, in config order ([] if unreadable)."""
    import yaml

    try:
        data = yaml.safe_load((experiment_dir / CONFIG).read_text())
        return [m["label"] for m in data["methods"] if isinstance(m, dict) and "label" in m]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
