"""Export a run's adapter and heads after any stage; attach an export to a fresh base model.

An export folder holds `adapter.safetensors`, `heads.safetensors` and `curlora_bench.json`
(method, options, rank/alpha, the adapted modules, the run seed, CURLoRA's sampled indices,
the base model id). LoRA exports also carry PEFT's own `adapter_config.json` +
`adapter_model.safetensors`, so `PeftModel.from_pretrained(base, folder)` loads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..adapters import ADAPTERS, parse_method
from ..errors import BenchError
from ..sources.models import TaskHeads, hidden_size
from . import checkpoint
from .store import write_json

META = checkpoint.EXPORT_META


def pick_run(experiment: Path, method: str | None, seed: int | None) -> Path:
    """The single run folder under `experiment` matching --method/--seed (or the folder itself)."""
    if (experiment / "checkpoints").is_dir():
        return experiment
    runs = sorted(p.parent for p in experiment.glob("*/seed-*/checkpoints"))
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
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out}: folder exists and is not empty; export into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    save_file(adapter_sd, out / "adapter.safetensors")
    save_file(heads_sd, out / "heads.safetensors")
    meta = {
        "format": checkpoint.FORMAT_VERSION,
        "base_model": state["model"],
        "method": state["method"],
        "seed": state["seed"],
        "modules": state["modules"],
        "stage": stage,
        "tasks": state["tasks"],
        "hidden_size": state["hidden_size"],
        "pooling": state["pooling"],
        "protocol": state["protocol"],
        "source_run": str(run),
    }
    if state["method"]["method"] == "curlora":
        meta["curlora_indices"] = {
            name: {"columns": adapter_sd[f"{name}.curlora_col_idx"].tolist(),
                   "rows": adapter_sd[f"{name}.curlora_row_idx"].tolist()}
            for name in state["modules"]
        }
    write_json(out / META, meta)
    if is_plain_lora(state["method"]):
        write_peft_format(out, state, adapter_sd)
    return out


def is_plain_lora(method: dict) -> bool:
    return method["method"] == "lora"


def write_peft_format(out: Path, state: dict, adapter_sd: dict[str, torch.Tensor]) -> None:
    """PEFT's save layout: keys without the adapter name, under `base_model.model.`."""
    from peft import LoraConfig

    m = state["method"]
    tensors = {"base_model.model." + k.replace(".default.", "."): v for k, v in adapter_sd.items()}
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    LoraConfig(
        r=m["rank"], lora_alpha=m["alpha"] * m["rank"], lora_dropout=m.get("dropout", 0.0),
        target_modules=state["modules"], fan_in_fan_out=state["conv1d"], bias="none",
        base_model_name_or_path=state["model"],
    ).save_pretrained(str(out))


def load_adapter(model: nn.Module, folder: str | Path) -> TaskHeads:
    """Attach an exported adapter to a fresh base model in place; return the task heads.

    `model` must be the base model the run used (same weights). Afterwards
    `modeling.classify(model, heads, task, ...)` reproduces the run's predictions.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"{folder / META}: cannot read export metadata ({exc})") from None
    where = str(folder / META)
    method = parse_method(meta["method"], f"{where}: method")
    adapter = ADAPTERS.get(method.method)
    adapter.attach(model, meta["modules"], method, meta["seed"], where)
    checkpoint.load_weights(model, load_file(folder / "adapter.safetensors"), str(folder / "adapter.safetensors"))
    if hidden_size(model) != meta["hidden_size"]:
        raise BenchError(f"{where}: heads expect hidden size {meta['hidden_size']}, the model has {hidden_size(model)}")
    heads = TaskHeads.restore([(t["name"], t["num_classes"]) for t in meta["tasks"]], meta["hidden_size"],
                              load_file(folder / "heads.safetensors"), next(model.parameters()).device)
    model.eval()
    return heads

