"""O-LoRA: a LoRA per task, earlier ones frozen and summed, the orthogonality loss against hand
numbers; resume exact after a crash in stage 2."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from curlora_bench.adapters import adapter_of
from curlora_bench.config.methods import parse_method
from curlora_bench.core.errors import BenchError
from curlora_bench.store.schema import read_records
from tests.conftest import crashed_and_resumed, tiny_config


def two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"p": nn.Linear(3, 2, bias=False), "q": nn.Linear(3, 2, bias=False)})


def attached(spec: dict):
    cfg = parse_method(spec, "m")
    model = two_layers()
    adapter = adapter_of(cfg)
    names = adapter.attach(model, ["p", "q"], cfg.options, 0, "m")
    return model, names, adapter, cfg.options


def context(model, names, options, position: int):
    return SimpleNamespace(model=model, modules=names, method=options, stage=SimpleNamespace(position=position), seed=0)


def set_a(model, task: int, p: list, q: list) -> None:
    with torch.no_grad():
        model["p"].tasklora_A[task].copy_(torch.tensor(p))
        model["q"].tasklora_A[task].copy_(torch.tensor(q))


def test_olora_losses_against_hand_numbers():
    model, names, adapter, options = attached({"method": "o-lora", "rank": 2, "lambda_orth": 0.5, "lambda_l2": 0.25})
    x = torch.randn(4, 3)
    torch.testing.assert_close(model["p"](x), model["p"].base_layer(x))  # B = 0: no change at init
    ctx = context(model, names, options, 1)
    adapter.before_stage(ctx)  # the first task's LoRA is the one attached
    assert model["p"].tasks == 1
    zero = torch.tensor(0.0)
    # one task: nothing to be orthogonal to; the L2 term is ||A_1||_F (+ ||B_1||_F = 0), each layer
    set_a(model, 0, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(adapter.step(ctx, zero, 1), torch.tensor(0.25 * (math.sqrt(2) + 2.0)))

    ctx = context(model, names, options, 2)
    adapter.before_stage(ctx)  # task 2: a new LoRA, task 1's frozen
    assert model["p"].tasks == 2 and not model["p"].tasklora_A[0].requires_grad
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "p.tasklora_A.1", "p.tasklora_B.1", "q.tasklora_A.1", "q.tasklora_B.1"]
    set_a(model, 1, [[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]], [[1.0, 1.0, 1.0], [0.0, 0.0, -1.0]])
    with torch.no_grad():
        model["p"].tasklora_B[1].copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    # p: A1 A2^T = [[1, 0], [2, -1]] -> |.|_1 = 4;  q: A1 A2^T = [[2, -2], [0, 0]] -> 4
    # L2 of the new LoRA: p sqrt(1+4+1+9) + sqrt(1+4), q sqrt(3+1) + 0
    expected = 0.5 * (4 + 4) + 0.25 * (math.sqrt(15) + math.sqrt(5) + 2.0)
    loss = adapter.step(ctx, zero, 1)
    torch.testing.assert_close(loss, torch.tensor(expected))
    loss.backward()
    assert model["p"].tasklora_A[0].grad is None and model["p"].tasklora_A[1].grad is not None
    # the layer applies both tasks' updates: y = W x + alpha (B1 A1 + B2 A2) x (B1 still 0)
    a2, b2 = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    with torch.no_grad():
        torch.testing.assert_close(model["p"](x), x @ (model["p"].base_layer.weight + b2 @ a2).T)

    ctx = context(model, names, options, 3)
    adapter.before_stage(ctx)
    set_a(model, 2, [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # task 3 against tasks 1 and 2 (their own overlap, fixed now, is no longer in the loss):
    # p: A1 A3^T = [[0, 0], [1, 0]] -> 1; A2 A3^T = [[2, 0], [2, 0]] -> 4; q: 0
    torch.testing.assert_close(adapter.step(ctx, zero, 1), torch.tensor(0.5 * 5 + 0.25 * math.sqrt(2)))
    assert adapter.diagnostics(model, names) == {"tasks": 3, "orthogonality_l1": 4 + 4 + 1 + 4}


def test_olora_options_are_checked():
    with pytest.raises(BenchError, match=r"m\.lambda_orth: must be >= 0, got -1"):
        parse_method({"method": "o-lora", "lambda_orth": -1}, "m")
    with pytest.raises(BenchError, match=r"exceeds the 2x3 weight"):
        attached({"method": "o-lora", "rank": 4})
    assert parse_method({"method": "o-lora", "rank": 4}, "m").display_label == "o-lora-r4"


def test_olora_resumes_exactly_and_keeps_earlier_tasks_frozen(toy_data, tmp_path, cli, monkeypatch):
    method = {"method": "o-lora", "rank": 2, "lambda_orth": 0.5}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(
        toy_data, methods=[method], perplexity=None, eval={"batch_size": 32, "limit": 12},
        train={"epochs": 1, "batch_size": 16, "lr": 1e-2, "max_length": 48, "limit": 32, "warmup_steps": 1})))
    code, _, err = cli("run", path, "--output", tmp_path / "whole")
    assert code == 0, err
    crashed_and_resumed(cli, monkeypatch, path, tmp_path / "killed", 4)  # 2 steps a stage: in stage 2
    whole, killed = (tmp_path / d / "o-lora-r2" / "seed-0" for d in ("whole", "killed"))
    values = [(r.stage, r.task, r.metric, r.value) for r in read_records(whole / "records.jsonl")]
    assert values == [(r.stage, r.task, r.metric, r.value) for r in read_records(killed / "records.jsonl")]
    one, two = (load_file(whole / "checkpoints" / f"stage-{k}" / "adapter.safetensors") for k in (1, 2))
    assert not any(".tasklora_A.1" in k for k in one) and any(".tasklora_A.1" in k for k in two)
    for k, v in one.items():  # task 1's LoRA did not move while task 2 trained
        assert torch.equal(two[k], v), k
