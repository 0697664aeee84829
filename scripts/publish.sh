#!/usr/bin/env bash
# Copy an experiment's finished runs into results/published/<name>/: config.yaml plus each
# finished run's summary.json, records.jsonl, and predictions.jsonl and generations.jsonl where
# the run kept them (never checkpoints or training logs). Safe to
# repeat while the experiment is still running: unfinished runs (no summary.json) are skipped. A
# destination with an IN_PROGRESS file keeps its own config.yaml.
#   scripts/publish.sh results/baselines [results/published/baselines]
set -euo pipefail
src=${1:?usage: scripts/publish.sh EXPERIMENT_DIR [DEST]}
src=${src%/}
dst=${2:-results/published/$(basename "$src")}
[[ -f $src/config.yaml ]] || { echo "error: $src/config.yaml: not an experiment folder" >&2; exit 2; }
mkdir -p "$dst"
# a folder still in progress (an IN_PROGRESS file) keeps its own config.yaml: the method entries of
# the runs published so far (a calibration's probes are not the experiment config's entries)
if [[ -f $dst/IN_PROGRESS && -f $dst/config.yaml ]]; then
  echo "note: $dst is in progress: its config.yaml is kept (add the entries of new runs to it)"
else
  cp "$src/config.yaml" "$dst/"
fi
n=0
refused=0
for summary in "$src"/*/seed-*/summary.json; do
  [[ -f $summary ]] || continue
  run=$(dirname "$summary")
  rel=${run#"$src"/}
  # a summary without its records is no finished run (a half-written or damaged folder): said, not
  # published, and the other runs still are
  if [[ ! -f $run/records.jsonl ]]; then
    echo "error: $run: summary.json without records.jsonl (half-written or damaged); not published" >&2
    refused=$((refused + 1))
    continue
  fi
  mkdir -p "$dst/$rel"
  cp "$run/records.jsonl" "$run/summary.json" "$dst/$rel/"
  for kept in predictions.jsonl generations.jsonl; do
    if [[ -f $run/$kept ]]; then cp "$run/$kept" "$dst/$rel/"; fi
  done
  n=$((n + 1))
done
echo "published $n finished run(s) of $src into $dst"
if ((refused)); then
  echo "error: $refused run(s) of $src not published (see above)" >&2
  exit 1
fi
