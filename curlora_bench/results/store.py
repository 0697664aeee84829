"""Run directories: records.jsonl (one flushed line per measurement), summary.json, checkpoints."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchError


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


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class RecordWriter:
    """Appends one JSON line per measurement and flushes it to disk at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it is missing or unreadable (e.g. half-written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def run_dir(experiment_dir: Path, label: str, seed: int) -> Path:
    return experiment_dir / label / f"seed-{seed}"


@dataclass
class RunResult:
    path: Path
    summary: dict

    @property
    def label(self) -> str:
        return self.summary["label"]


def find_runs(paths: list[Path]) -> list[RunResult]:
    """Every finished run (a folder with summary.json) under the given run or experiment folders."""
    found: list[Path] = []
    for p in paths:
        if not p.exists():
            raise BenchError(f"{p}: results folder not found")
        if (p / "summary.json").is_file():
            found.append(p / "summary.json")
        else:
            found.extend(sorted(p.glob("*/seed-*/summary.json")))
            found.extend(sorted(p.glob("*/*/seed-*/summary.json")))
    if not found:
        raise BenchError(f"no finished runs (summary.json) under {', '.join(map(str, paths))}")
    out = []
    for s in dict.fromkeys(found):
        try:
            out.append(RunResult(s.parent, json.loads(s.read_text())))
        except json.JSONDecodeError as exc:
            raise BenchError(f"{s}: not valid JSON ({exc})") from None
    return out
