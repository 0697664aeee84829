#!/usr/bin/env bash
# Executor scaling: the same grid (configs/scaling.yaml by default) with the local executor and
# with Ray at 1 worker x all cores and N workers x 1 core; prints wall seconds, runs per hour and
# throughput against local, and checks the records are identical.
#   scripts/scaling.sh [CONFIG] [OUT]
set -euo pipefail
CONFIG=${1:-configs/scaling.yaml}
OUT=${2:-results/scaling}
CORES=$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")
declare -A ARGS=(
  [local]="--executor local"
  [ray-1x${CORES}]="--executor ray --workers 1 --cpus-per-run ${CORES}"
  [ray-${CORES}x1]="--executor ray --workers ${CORES} --cpus-per-run 1"
)
# assets first, so that their download and conversion is charged to no executor
mkdir -p "$OUT"
curlora-bench assets fetch all >/dev/null
printf '%-14s %8s %10s %9s\n' executor wall_s runs/hour vs_local
base=""
for name in local "ray-1x${CORES}" "ray-${CORES}x1"; do
  rm -rf "$OUT/$name"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  curlora-bench run "$CONFIG" -o "$OUT/$name" ${ARGS[$name]} >"$OUT/$name.log" 2>&1
  wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  runs=$(find "$OUT/$name" -name summary.json | wc -l)
  [ -z "$base" ] && base=$wall
  python3 -c "print(f'{\"$name\":<14} {$wall:8.1f} {3600 * $runs / $wall:10.1f} {$base / $wall:9.2f}')"
done
python3 - "$OUT" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
def records(folder):  # records carry no timings: the files must match byte for byte
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.glob("*/seed-*/records.jsonl"))}
names = sorted(p.name for p in out.iterdir() if p.is_dir())
ref = records(out / "local")
same = all(records(out / n) == ref for n in names)
print(f"records identical across {', '.join(names)}: {same}")
sys.exit(0 if same else 1)
PY
