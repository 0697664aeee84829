"""Export a run's adapter and heads after any stage; attach an export to a fresh base model.

An export folder holds `adapter.safetensors`, `heads.safetensors` and `curlora_bench.json`
(method, options, the adapted modules, the run seed, the base model id, and whatever the
method adds: CURLoRA's sampled indices; LoRA also writes PEFT's own `adapter_config.json` +
`adapter_model.safetensors`, so `PeftModel.from_pretrained(base, folder)` loads it).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..adapters import adapter_of
from ..config.methods import parse_method, regime_of
from ..config.regimes import REGIMES
from ..core.errors import BenchError, first_line
from ..core.layout import ADAPTER, CHECKPOINTS, HEADS
from ..core.layout import EXPORT_META as META
from ..sources.heads import TaskHeads
from ..sources.models import hidden_size
from . import checkpoint
from .folders import write_atomic
from .schema import TENSORS_FORMAT


def pick_run(experiment: Path, method: str | None, seed: int | None) -> Path:
    """The single run folder under `experiment` matching --method/--seed (or the folder itself)."""
    if (experiment / CHECKPOINTS).is_dir():
        return experiment
    runs = sorted(p.parent for p in experiment.glob(f"*/seed-*/{CHECKPOINTS}"))
    if not runs:
        raise BenchError(f"{experiment}: no run with checkpoints here (run folders look like <method>/seed-<k>/)")
    if method is not None:
        runs = [r for r in runs if r.parent.name == method]
    if seed is not None:
        runs = [r for r in runs if r.name == f"seed-{seed}"]
    if len(runs) != 1:
        have = ", ".join(f"{r.parent.name} seed {r.name.split('-', 1)[1]}" for r in sorted(experiment.glob("*/seed-*")))
        what = "no run matches" if not runs else f"{len(runs)} runs match"
        raise BenchError(f"{experiment}: {what} --method {method} --seed {seed}; runs here: {have}")
    return runs[0]


def export(experiment: Path, out: Path, stage: int | None = None, method: str | None = None,
           seed: int | None = None) -> Path:
    """Write the adapter + heads of one run after `stage` (default: its last checkpoint) to `out`."""
    run = pick_run(experiment, method, seed)
    done = checkpoint.stages(run)
    if not done:
        raise BenchError(f"{run}: no finished stage has a checkpoint")
    stage = done[-1] if stage is None else stage
    if stage not in done:
        raise BenchError(f"--stage {stage}: {run} has checkpoints for stages {', '.join(map(str, done))}")
    state, adapter_sd, heads_sd, _ = checkpoint.load_stage(run, stage)
    if out.exists() and not out.is_dir():
        raise BenchError(f"{out}: is a file; export into a new folder")
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out}: folder exists and is not empty; export into a new folder")
    cfg = parse_method(state.method, f"{run}: method")
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_file(adapter_sd, out / ADAPTER)
        save_file(heads_sd, out / HEADS)
        extras = adapter_of(cfg).export_extras(out, cfg.options, state.modules, state.conv1d, state.model,
                                                        adapter_sd)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        why = getattr(exc, "strerror", None) or first_line(exc)
        raise BenchError(f"{out}: cannot write the export ({why}); the run is unchanged") from None
    meta = {
        "format": TENSORS_FORMAT,
        "base_model": state.model,
        "method": state.method,
        "seed": state.seed,
        "modules": state.modules,
        "stage": stage,
        # a prompted task has no head (head: false): it answers through the model's own LM head
        "tasks": [{"name": h.name, "num_classes": h.num_classes, **({} if h.head else {"head": False})}
                  for h in state.tasks],
        "hidden_size": state.hidden_size,
        "pooling": state.pooling,
        "protocol": state.protocol,
        "source_run": str(run),
        **extras,
    }
    write_atomic(out / META, json.dumps(meta, indent=2) + "\n")
    return out


def _load(path: Path) -> dict:
    try:
        return load_file(path)
    except Exception as exc:  # safetensors' own error type, or OSError
        raise BenchError(f"{path}: unreadable ({first_line(exc)}); export the run again") from None


def load_adapter(model: nn.Module, folder: str | Path) -> TaskHeads:
    """Attach an exported adapter to a fresh base model in place; return the task heads.

    `model` must be the base model the run used (same weights). Afterwards
    `sources.heads.classify(model, heads, task, ...)` reproduces the run's predictions, and
    greedy generation (`model.generate`, or `run.kinds.prompted.generate`) a prompted task's
    generations (a prompted task has no head: it answers through the model's own LM head).
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"{folder / META}: cannot read export metadata ({first_line(exc)})") from None
    where = str(folder / META)
    missing = [k for k in ("method", "modules", "seed", "hidden_size", "tasks") if k not in meta] \
        if isinstance(meta, dict) else ["(not a mapping)"]
    if missing:
        raise BenchError(f"{where}: export metadata lacks {', '.join(missing)}; export the run again")
    method = parse_method(meta["method"], f"{where}: method")
    adapter = adapter_of(method)
    modules = adapter.attach(model, meta["modules"], method.options, meta["seed"], where)
    tensors = _load(folder / ADAPTER)
    position = REGIMES.get(regime_of(method)).position(meta["stage"], len(meta["tasks"]))
    adapter.structure_for(model, modules, method.options, position, where, tensors)
    checkpoint.load_weights(model, tensors, adapter.state_dict(model, modules, method.options),
                            str(folder / ADAPTER))
    if hidden_size(model) != meta["hidden_size"]:
        raise BenchError(f"{where}: heads expect hidden size {meta['hidden_size']}, the model has {hidden_size(model)}")
    try:
        heads = TaskHeads.restore([(t["name"], t["num_classes"]) for t in meta["tasks"] if t.get("head", True)],
                                  meta["hidden_size"], _load(folder / HEADS), next(model.parameters()).device)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise BenchError(f"{folder / HEADS}: does not match {META} ({first_line(exc)})") from None
    model.eval()
    return heads
