"""Gradient checkpointing: the same gradients and the same records, with the layers really
recomputed, for every adapter type on tiny GPT-2 (Conv1D) and Llama (Linear)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from curlora_bench.adapters import adapter_of
from curlora_bench.config.experiment import TrainConfig
from curlora_bench.config.loading import load_config
from curlora_bench.config.methods import parse_method
from curlora_bench.experiment.driver import run_experiment
from curlora_bench.run.train import enter_training
from curlora_bench.sources.heads import TaskHeads, classify
from curlora_bench.sources.models import (
    auto_targets,
    checkpointed_layers,
    enable_checkpointing,
    load_model,
)
from curlora_bench.store.schema import read_records
from tests.conftest import tiny_config
from tests.test_roundtrip import METHODS

NO_CONV1D = {"olora", "oft"}  # PEFT has no GPT-2 Conv1D layer for these (refused before attaching)
CASES = [(model, dict(x)) for model in ("tiny-gpt2", "tiny-llama") for _, x in METHODS
         if x.get("type") != "OSF" and not (model == "tiny-gpt2" and x["method"] in NO_CONV1D)]
CASES += [("tiny-llama", {"method": "peft", "type": "OSF", "effective_rank": 2})]


def _grads(model_name: str, method: dict, checkpointing: bool, dropout: str = "off"):
    torch.manual_seed(0)
    model = load_model(model_name).model
    cfg = parse_method(dict(method), "methods[0]")
    adapter = adapter_of(cfg)
    names = adapter.attach(model, auto_targets(model), cfg.options, 0, "methods[0]")
    if method["method"] == "i-lora":  # the fast LoRA is the one a stage trains (and applies meanwhile)
        from curlora_bench.adapters.ilora import ilora_layers

        for ilora in ilora_layers(model, names):
            ilora.slow = False
    if checkpointing:
        enable_checkpointing(model)
    heads = TaskHeads()
    head = heads.add("t", model.get_output_embeddings().in_features, 3, seed=1)
    calls, saved = [], []
    layer = checkpointed_layers(model)[0] if checkpointing else None
    first_attn = next(m for n, m in model.named_modules() if n.endswith("attn"))  # GPT-2 attn, Llama self_attn
    first_attn.register_forward_hook(lambda *_: calls.append(1))
    model.eval()
    enter_training(model, [head], TrainConfig(dropout=dropout).dropout, checkpointing)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 200, (4, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    torch.manual_seed(3)  # the same dropout masks in both runs (checkpointing replays the RNG state)
    def pack(t):  # bytes autograd keeps for backward outside checkpointed layers
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = nn.functional.cross_entropy(classify(model, heads, "t", ids, mask), torch.tensor([0, 1, 2, 1]))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in [*model.named_parameters(), *head.named_parameters()]
             if p.requires_grad}
    return grads, len(calls), layer, sum(saved)


@pytest.mark.parametrize("model,method", CASES, ids=lambda x: x if isinstance(x, str) else
                         "-".join(str(v) for k, v in x.items() if k in ("method", "type", "init")))
def test_checkpointing_gives_the_same_gradients(model, method):
    plain, plain_calls, _, plain_bytes = _grads(model, method, checkpointing=False)
    ckpt, ckpt_calls, layer, ckpt_bytes = _grads(model, method, checkpointing=True)
    assert plain.keys() == ckpt.keys() and plain
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    body = [n for n in plain if not n.startswith(("weight", "bias"))]  # head params are bare
    assert (len(body) > 0) == (method["method"] != "head-only")
    assert any(float(plain[n].abs().sum()) > 0 for n in body) or not body  # gradients reach the body
    assert layer is not None and layer.gradient_checkpointing
    # the layers were recomputed in backward (attention ran twice) and kept far fewer activations,
    # unless nothing in the body trains (then nothing is kept either way)
    assert plain_calls == 1 and ckpt_calls == (1 if not body else 2)
    if body:
        assert ckpt_bytes < plain_bytes / 3, (ckpt_bytes, plain_bytes)


def test_checkpointing_replays_dropout_masks():
    plain, _, _, _ = _grads("tiny-gpt2", {"method": "lora", "rank": 2}, checkpointing=False, dropout="model")
    ckpt, calls, _, _ = _grads("tiny-gpt2", {"method": "lora", "rank": 2}, checkpointing=True, dropout="model")
    assert calls == 2
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_records_equal_with_checkpointing_on_and_off(toy_data, write_config, tmp_path, model):
    methods = [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}, {"method": "full"}]
    runs = {}
    for flag in (False, True):
        cfg, _ = load_config(write_config(tiny_config(toy_data, model, methods=methods, train={
            "epochs": 1, "batch_size": 8, "lr": 1e-2, "max_length": 32, "limit": 24, "warmup_steps": 1},
            execution={"gradient_checkpointing": flag}), f"exp-{flag}.yaml"))
        runs[flag] = run_experiment(cfg, tmp_path / str(flag))
    for off, on in zip(runs[False], runs[True], strict=True):
        assert on.execution["gradient_checkpointing"] is True and "gradient_checkpointing" not in on.settings["train"]
        assert on.run_key == off.run_key  # an execution choice: the run keeps its identity
        a = read_records(tmp_path / "False" / off.label / "seed-0" / "records.jsonl")
        b = read_records(tmp_path / "True" / on.label / "seed-0" / "records.jsonl")
        assert [(r.stage, r.task, r.metric) for r in a] == [(r.stage, r.task, r.metric) for r in b]
        for x, y in zip(a, b, strict=True):
            assert y.value == pytest.approx(x.value, rel=1e-5, abs=1e-6), (off.label, x)


def test_turning_checkpointing_on_keeps_finished_runs(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}], perplexity=None)
    code, _, err = cli("run", write_config(cfg), "-o", tmp_path / "exp")
    assert code == 0, err
    summary = next((tmp_path / "exp").rglob("summary.json"))
    before = json.loads(summary.read_text())
    code, out, err = cli("run", write_config(cfg), "-o", tmp_path / "exp", "--set", "execution.gradient_checkpointing=true")
    assert code == 0, err
    assert "already complete, kept" in out
    assert json.loads(summary.read_text()) == before


RELEASE_CHILD = r"""
import ctypes, sys
from curlora_bench.core.env import release_memory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
chunks = [libc.malloc(100_000) for _ in range(3000)]  # 300 MB of heap (below the mmap threshold)
for c in chunks:
    ctypes.memset(c, 1, 100_000)
for c in chunks[:-1]:
    libc.free(c)  # the last one keeps the heap's top: the freed pages stay resident
held = rss()
assert release_memory()
print(held, rss())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's; the resident set is read from /proc")
def test_release_memory_returns_freed_heap_pages():
    """Freed heap memory below a live allocation stays resident until released."""
    out = subprocess.run([sys.executable, "-c", RELEASE_CHILD], capture_output=True, text=True, check=True)
    held, after = map(int, out.stdout.split())
    assert held - after > 250, (held, after)


def test_the_run_releases_memory_between_phases(toy_data, write_config, tmp_path, monkeypatch):
    """After training, after evaluation and before each checkpoint of every stage, and between runs."""
    from curlora_bench.experiment import driver
    from curlora_bench.run import recipe

    calls = []
    monkeypatch.setattr(recipe, "release_memory", lambda: calls.append("stage"))
    monkeypatch.setattr(driver, "release_memory", lambda: calls.append("driver"))
    cfg, _ = load_config(write_config(tiny_config(toy_data, "tiny-gpt2", methods=[{"method": "lora", "rank": 2},
                                                                            {"method": "curlora", "rank": 2}])))
    driver.run_experiment(cfg, tmp_path / "out")
    stages = len(cfg.tasks) * len(cfg.methods)
    assert calls.count("stage") == 3 * stages and calls.count("driver") == 1 + len(cfg.methods)
