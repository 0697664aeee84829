"""The names of everything a run writes: one module, so a file is renamed in one place.

An experiment folder (`results/<name>/` or `--output`) holds `config.yaml`, `report.md`, the
folder lock, `ray-logs/` (kept when a Ray worker died) and one run folder per (method label,
seed[, task order]):

    <label>/seed-<k>[-order-<o>]/
        records.jsonl  predictions.jsonl  generations.jsonl  train_log.jsonl  summary.json  tensorboard/
        checkpoints/stage-<N>/  adapter.safetensors heads.safetensors rng.safetensors
                                strategy.safetensors state.json
        .previous/     the work a --fresh run replaces, until that run has a stage of its own
                       (.previous.tmp/, .previous.restoring/: while it is moved there and back)
"""

from __future__ import annotations

from pathlib import Path

# experiment folder
CONFIG = "config.yaml"  # the resolved config the runs were made with
REPORT = "report.md"  # what `run` renders when it finishes
LOCK = ".lock"  # flock'ed while a `run` writes into the folder
RAY_LOGS = "ray-logs"  # a Ray sweep's logs, kept when one of its runs failed (its worker died)

# run folder
SUMMARY = "summary.json"
RECORDS = "records.jsonl"
TRAIN_LOG = "train_log.jsonl"
PREDICTIONS = "predictions.jsonl"  # each eval example's score per stage and task (bootstrap, McNemar)
GENERATIONS = "generations.jsonl"  # a prompted task's greedy generations per stage (stage 0: zero-shot)
TENSORBOARD = "tensorboard"  # the run's event files, with `execution.log: [tensorboard]`
CHECKPOINTS = "checkpoints"
PREVIOUS = ".previous"  # work set aside by a run that starts over
PREVIOUS_MOVING = ".previous.tmp"  # a set-aside in progress (undone if the process died in it)
PREVIOUS_RESTORING = ".previous.restoring"  # a restore in progress (finished if the process died in it)

# one stage checkpoint (and an export folder: ADAPTER, HEADS)
STATE = "state.json"
ADAPTER = "adapter.safetensors"
HEADS = "heads.safetensors"
RNG = "rng.safetensors"
STRATEGY = "strategy.safetensors"  # replay memory, EWC Fisher and anchors (absent for naive)
EXPORT_META = "curlora_bench.json"  # an export folder's metadata


def run_dir(experiment_dir: Path, label: str, seed: int, order: int | None = None) -> Path:
    """<label>/seed-<k>, or <label>/seed-<k>-order-<o> for a task order other than the config's."""
    return experiment_dir / label / (f"seed-{seed}" if order is None else f"seed-{seed}-order-{order}")


def stage_dir(run: Path, stage: int) -> Path:
    return run / CHECKPOINTS / f"stage-{stage}"


# run folders below an experiment folder (two levels for labels that hold a '/': never, but a
# folder of experiments one level down is found too)
SUMMARY_GLOBS = (f"*/seed-*/{SUMMARY}", f"*/*/seed-*/{SUMMARY}")
