#!/usr/bin/env bash
# One-shot GPU check (about 8 minutes on one large GPU): `bench` in fp32 and bf16 on
# smollm2-135m and gemma3-270m, the default experiment shrunk, and a small Ray grid whose runs
# share the GPU (--gpus-per-run 0.25: four at a time). Every figure goes into one JSON file
# (default gpu_check.json). Without CUDA it says so in one line and exits 0.
#   scripts/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.json}
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is false); nothing to check"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() {  # name command...: run it, keep its wall time and exit code
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  set +e; "$@" > "$work/$name.log" 2>&1; local rc=$?; set -e
  python3 -c "import json,sys; print(json.dumps({'step': sys.argv[1], 'rc': int(sys.argv[2]),
    'seconds': round(float(sys.argv[4]) - float(sys.argv[3]), 1)}))" "$name" "$rc" "$t0" "$(date +%s.%N)" \
    >> "$work/steps.jsonl"
}
for model in smollm2-135m gemma3-270m; do
  for precision in fp32 bf16; do
    step "bench-$model-$precision" curlora-bench bench --model "$model" --precision "$precision" --device cuda \
      --steps 20 --warmup 5 --batch-size 32 --seq-len 128 --json "$work/bench-$model-$precision.json"
  done
done
# the default experiment, shrunk to a few minutes (the same code path as `make run`)
step seq-shrunk curlora-bench run configs/seq.yaml -o "$work/seq" --set train.limit=160 --set eval.limit=100 \
  --set perplexity.max_tokens=2048
cp "$work/seq/report.md" "$work/seq-report.md" 2>/dev/null || true
# a grid of small runs sharing the one GPU through Ray's fractional GPU resource
step ray-shared curlora-bench run configs/tiny-sweep.yaml -o "$work/ray" --set device=cuda \
  --executor ray --workers 4 --gpus-per-run 0.25 --cpus-per-run 1
python3 - "$work" "$out" <<'PY'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
data = {"steps": [json.loads(l) for l in (work / "steps.jsonl").read_text().splitlines()],
        "bench": {p.stem: json.loads(p.read_text()) for p in sorted(work.glob("bench-*.json"))},
        "seq_report": (work / "seq-report.md").read_text() if (work / "seq-report.md").is_file() else None,
        "ray_runs": sorted(str(p.parent.relative_to(work / "ray")) for p in (work / "ray").glob("*/seed-*/summary.json"))}
for s in data["steps"]:
    if s["rc"]:
        s["log_tail"] = (work / f"{s['step']}.log").read_text()[-2000:]
out.write_text(json.dumps(data, indent=2) + "\n")
print(f"gpu_check: wrote {out} ({sum(s['rc'] == 0 for s in data['steps'])}/{len(data['steps'])} steps ok)")
PY
