"""Every registered method through save -> resume -> export -> load_adapter, and a run as a
self-contained unit: the same spec in another process writes the same records."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import curlora_bench
from curlora_bench.adapters import ADAPTERS, adapter_of
from curlora_bench.config.loading import load_config
from curlora_bench.core.errors import BenchError
from curlora_bench.core.protocol import Protocol
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.evaluate import accuracy
from curlora_bench.run.prepare import prepare_tasks
from curlora_bench.run.spec import RunSpec
from curlora_bench.sources.models import load_model
from curlora_bench.store.export import export
from curlora_bench.store.schema import read_records
from tests.conftest import ROOT, tiny_config

# one entry per registered adapter, PEFT's continual/orthogonal and LoRA-family types included
METHODS = [
    ("tiny-gpt2", {"method": "lora", "rank": 2}),
    ("tiny-gpt2", {"method": "lora", "rank": 2, "init": "reference"}),
    ("tiny-gpt2", {"method": "curlora", "rank": 2}),
    ("tiny-gpt2", {"method": "full"}),
    ("tiny-gpt2", {"method": "head-only"}),
    ("tiny-gpt2", {"method": "peft", "type": "DORA", "r": 2}),
    ("tiny-gpt2", {"method": "peft", "type": "VERA", "r": 2}),
    ("tiny-gpt2", {"method": "peft", "type": "PISSA", "r": 2, "lora_alpha": 2}),
    ("tiny-llama", {"method": "peft", "type": "OSF", "effective_rank": 2}),
    ("tiny-gpt2", {"method": "o-lora", "rank": 2}),
    ("tiny-llama", {"method": "inflora", "rank": 2}),
    ("tiny-gpt2", {"method": "i-lora", "rank": 2, "per_task": 8}),
    # PEFT's methods by name (adapters/peft_named.py); OLoRA and OFT have no Conv1D layer in PEFT
    ("tiny-gpt2", {"method": "dora", "r": 2}),
    ("tiny-gpt2", {"method": "rslora", "r": 2}),
    ("tiny-gpt2", {"method": "pissa", "r": 2}),
    ("tiny-llama", {"method": "olora", "r": 2}),
    ("tiny-gpt2", {"method": "mica", "r": 2}),
    ("tiny-gpt2", {"method": "corda", "r": 2, "init_examples": 8}),
    ("tiny-llama", {"method": "eva", "r": 2, "rho": 2.0, "init_examples": 16}),
    ("tiny-gpt2", {"method": "lora-ga", "r": 2, "init_examples": 8}),
    ("tiny-gpt2", {"method": "adalora", "init_r": 4, "target_r": 2}),
    ("tiny-llama", {"method": "oft", "oft_block_size": 16}),
    ("tiny-gpt2", {"method": "vera", "r": 16}),
    # strategies ride on any adapter: their state is checkpointed, the export is the adapter's
    ("tiny-gpt2", {"method": "lora", "rank": 2, "strategy": {"name": "replay", "per_task": 8}}),
    ("tiny-gpt2", {"method": "curlora", "rank": 2, "strategy": {"name": "ewc", "lambda": 100}}),
    # the joint regime rides on any adapter too: one stage over both tasks, checkpointed as stage 2
    ("tiny-gpt2", {"method": "curlora", "rank": 2, "regime": "joint"}),
]


def test_every_registered_method_is_covered():
    """Each registered adapter runs some entry (`{method: peft, type: OSF}` is run by `osf`)."""
    from curlora_bench.config.methods import parse_method

    assert {adapter_of(parse_method(m, "m")).name for _, m in METHODS} == set(ADAPTERS)


def _values(run):
    return [(r.stage, r.task, r.metric, r.value) for r in read_records(run / "records.jsonl")]


@pytest.mark.parametrize("model,method", METHODS, ids=lambda x: x if isinstance(x, str) else
                         "-".join(str(v if k != "strategy" else v["name"]) for k, v in x.items()
                                  if k in ("method", "type", "init", "strategy")))
def test_save_resume_export_load(toy_data, write_config, tmp_path, model, method):
    cfg_path = write_config(tiny_config(toy_data, model, methods=[method], perplexity=None,
                                        train={"epochs": 1, "batch_size": 16, "lr": 1e-2, "max_length": 64,
                                               "limit": 32, "warmup_steps": 1}))
    cfg, _ = load_config(cfg_path)
    whole = tmp_path / "whole"
    [summary] = run_experiment(cfg, whole)
    run = whole / summary.label / "seed-0"
    joint = method.get("regime") == "joint"  # one stage over both tasks, checkpointed as stage 2
    assert summary.status == "complete" and len(summary.stages) == (1 if joint else 2)

    # a crash after stage 1: the stage-2 checkpoint, the summary and stage 2's records are gone
    crashed = tmp_path / "crashed"
    shutil.copytree(whole, crashed)
    crun = crashed / summary.label / "seed-0"
    shutil.rmtree(crun / "checkpoints" / "stage-2")
    (crun / "summary.json").unlink()
    [resumed] = run_experiment(cfg, crashed)
    assert resumed.resumed_from_stage == (None if joint else 1)
    assert _values(crun) == _values(run)  # the resumed stage 2 equals the uninterrupted one

    # export after stage 2, attach to a fresh base model: the run's accuracies exactly
    out = export(whole, tmp_path / "ex", stage=2)
    fresh = load_model(model).model
    heads = curlora_bench.load_adapter(fresh, out)
    tasks = prepare_tasks(cfg, load_model(model), Protocol.of("standard"))
    expected = {r.task: r.value for r in read_records(run / "records.jsonl") if r.stage == 2}
    for t in tasks:
        assert accuracy(fresh, heads, t.name, t.eval, 32, torch.device("cpu"), 0) == expected[t.name]

    # a checkpoint missing one of the method's tensors is refused, not half-loaded
    adapter = crun / "checkpoints" / f"stage-{2 if joint else 1}" / "adapter.safetensors"
    tensors = load_file(adapter)
    if not tensors:  # head-only has no adapter tensors to lose
        return
    if not joint:
        shutil.rmtree(crun / "checkpoints" / "stage-2")
    (crun / "summary.json").unlink()
    save_file(dict(list(tensors.items())[1:]), adapter)
    with pytest.raises(BenchError, match="of the method's tensors are missing"):
        run_experiment(cfg, crashed)


def test_a_spec_runs_the_same_in_another_process(toy_data, write_config, tmp_path):
    cfg, _ = load_config(write_config(tiny_config(toy_data, methods=[{"method": "curlora", "rank": 2}])))
    [here] = run_experiment(cfg, tmp_path / "here")
    spec = RunSpec.of(cfg, 0, 0, tmp_path / "there")
    assert RunSpec.from_dict(json.loads(json.dumps(dataclasses.asdict(spec)))) == spec  # plain data
    code = ("import json, sys; from curlora_bench.run.recipe import run_one; from curlora_bench.run.spec import RunSpec; "
            "print(run_one(RunSpec.from_dict(json.loads(sys.argv[1]))).run_key)")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(dataclasses.asdict(spec))], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == here.run_key
    there = tmp_path / "there" / here.label / "seed-0"
    assert _values(there) == _values(tmp_path / "here" / here.label / "seed-0")


def test_resolved_config_parses_back_to_the_same_experiment(toy_data, write_config):
    from curlora_bench.config.experiment import resolved_dict

    cfg, _ = load_config(write_config(tiny_config(toy_data, protocol="paper", methods=[
        {"method": "lora", "rank": 2}, {"method": "peft", "type": "VERA", "r": 2}])))
    again = RunSpec.from_dict(dataclasses.asdict(RunSpec.of(cfg, 0, 3, "x"))).experiment  # parsed afresh
    assert resolved_dict(again) == resolved_dict(cfg)
    assert [again.identity(m, 3).run_key for m in again.methods] == [cfg.identity(m, 3).run_key for m in cfg.methods]
