"""Measure how long each test file takes and write tests/file_seconds.json, which orders the
files longest first under xdist (tests/conftest.py). Runs the whole suite once, as `make test`
does; pass pytest arguments after `--` to narrow it (the measured files are then merged in)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "file_seconds.json"
LINE = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+tests/(test_[^:]+\.py)::")


def main(extra: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", "--durations=0",
                           "-p", "no:cacheprovider", *extra], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds: dict[str, float] = defaultdict(float)
    for line in done.stdout.splitlines():
        if m := LINE.match(line):
            seconds[m.group(2)] += float(m.group(1))
    if not seconds:
        sys.exit(f"no durations in pytest's output (exit {done.returncode}):\n{done.stdout[-2000:]}")
    table = json.loads(TABLE.read_text()) if extra and TABLE.exists() else {}
    table.update({name: round(s) for name, s in seconds.items() if s >= 3})
    TABLE.write_text(json.dumps(dict(sorted(table.items(), key=lambda kv: -kv[1])), indent=0) + "\n")
    print(f"{TABLE.relative_to(ROOT)}: {len(table)} files, {sum(table.values())} s in all (pytest exit {done.returncode})")


if __name__ == "__main__":
    main(sys.argv[2:] if sys.argv[1:2] == ["--"] else sys.argv[1:])
