"""O-LoRA and InfLoRA: a LoRA per task, earlier ones frozen and summed. O-LoRA's orthogonality
loss and InfLoRA's designed A and kept subspace against hand numbers and plain SVDs; both resume
exactly after a crash in stage 2."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from curlora_bench.adapters import adapter_of, find_targets
from curlora_bench.adapters.task_lora import design_a, input_covariances, update_dualgpm
from curlora_bench.config.methods import parse_method
from curlora_bench.core.errors import BenchError
from curlora_bench.sources.models import auto_targets, backbone, load_model
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


def resumed_runs(toy_data, tmp_path, cli, monkeypatch, method: dict, label: str):
    """The run of `method` uninterrupted and crashed mid-stage-2 then resumed: the same records.
    Returns the uninterrupted run's stage-1 and stage-2 adapter tensors."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(
        toy_data, methods=[method], perplexity=None, eval={"batch_size": 32, "limit": 12},
        train={"epochs": 1, "batch_size": 16, "lr": 1e-2, "max_length": 48, "limit": 32, "warmup_steps": 1})))
    code, _, err = cli("run", path, "--output", tmp_path / "whole")
    assert code == 0, err
    crashed_and_resumed(cli, monkeypatch, path, tmp_path / "killed", 4)  # 2 steps a stage: in stage 2
    whole, killed = (tmp_path / d / label / "seed-0" for d in ("whole", "killed"))
    values = [(r.stage, r.task, r.metric, r.value) for r in read_records(whole / "records.jsonl")]
    assert values == [(r.stage, r.task, r.metric, r.value) for r in read_records(killed / "records.jsonl")]
    return tuple(load_file(whole / "checkpoints" / f"stage-{k}" / "adapter.safetensors") for k in (1, 2))


def test_olora_resumes_exactly_and_keeps_earlier_tasks_frozen(toy_data, tmp_path, cli, monkeypatch):
    one, two = resumed_runs(toy_data, tmp_path, cli, monkeypatch,
                            {"method": "o-lora", "rank": 2, "lambda_orth": 0.5}, "o-lora-r2")
    assert not any(".tasklora_A.1" in k for k in one) and any(".tasklora_A.1" in k for k in two)
    for k, v in one.items():  # task 1's LoRA did not move while task 2 trained
        assert torch.equal(two[k], v), k


# -- InfLoRA ------------------------------------------------------------------------------------
FEATURES = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 3.0, 0.0], [2.0, 0.0, 1.0, 1.0],
                         [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 2.0, 2.0], [3.0, 1.0, 0.0, 1.0]], dtype=torch.float64)


def test_inflora_designs_a_outside_the_kept_subspace():
    cov = FEATURES.T @ FEATURES / 6  # the mean x x^T over six tokens
    # the first task: the top-2 left singular vectors of the covariance itself, over sqrt(3)
    u = torch.linalg.svd(cov).U
    torch.testing.assert_close(design_a(cov, torch.zeros(4, 0), False, 2, True), u[:, :2].T / math.sqrt(3))
    # a kept subspace to remove (span of (1, 1, 0, 0)/sqrt(2)): the SVD of C - U U^T C
    basis = torch.tensor([[1.0], [1.0], [0.0], [0.0]], dtype=torch.float64) / math.sqrt(2)
    proj = basis @ basis.T
    a = design_a(cov, basis, False, 2, False)
    torch.testing.assert_close(a, torch.linalg.svd(cov - proj @ cov).U[:, :2].T / math.sqrt(3))
    torch.testing.assert_close(a @ basis, torch.zeros(2, 1, dtype=torch.float64))  # the update ignores it
    torch.testing.assert_close(a @ a.T, torch.eye(2, dtype=torch.float64) / 3)
    # a free subspace to retain (e1, e3): the SVD of U U^T C, A inside it
    free = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    a = design_a(cov, free, True, 2, False)
    torch.testing.assert_close(a, torch.linalg.svd(free @ free.T @ cov).U[:, :2].T / math.sqrt(3))
    torch.testing.assert_close(a[:, [1, 3]], torch.zeros(2, 2, dtype=torch.float64))


def projector(basis: torch.Tensor) -> torch.Tensor:
    return basis.double() @ basis.double().T


def test_inflora_keeps_the_subspace_as_dualgpm_does():
    # task 1: singular values 9, 4, 1, 0.01 -> energy shares 81/98, 16/98, ...: cumulative
    # 0.83 < 0.95 <= 0.99, so r = 1 direction is kept (e1), under half of 4: `remove`
    basis, retain = update_dualgpm(torch.diag(torch.tensor([9.0, 4.0, 1.0, 0.01])), torch.zeros(4, 0), False, 0.95,
                                   True)
    assert not retain
    torch.testing.assert_close(projector(basis), torch.diag(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)))
    # task 2 of 2, threshold (1 - 0.95) * 1/2 + 0.95 = 0.975: C = diag(1, 0, 4, 0), energy 17,
    # 1/17 already inside e1; the residual's top direction e3 adds 16/17 -> 1 >= 0.975: one added
    basis, retain = update_dualgpm(torch.diag(torch.tensor([1.0, 0, 4, 0])), basis, retain, 0.975, False)
    assert not retain
    torch.testing.assert_close(projector(basis), torch.diag(torch.tensor([1.0, 0, 1, 0], dtype=torch.float64)))
    # C = diag(0, 2, 0, 0): e2 joins, 3 of 4 dimensions are over half -> the complement e4, `retain`
    basis, retain = update_dualgpm(torch.diag(torch.tensor([0.0, 2, 0, 0])), basis, retain, 0.97, False)
    assert retain
    torch.testing.assert_close(projector(basis), torch.diag(torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)))
    # C = diag(0, 3, 0, 0) lies in the protected space: all of its energy is outside the free one
    # (0 < 1 - 0.97), so nothing is taken from the free subspace
    kept, retain = update_dualgpm(torch.diag(torch.tensor([0.0, 3, 0, 0])), basis, retain, 0.97, False)
    assert retain and torch.equal(kept, basis)


def test_inflora_covariance_skips_padding():
    lm = load_model("tiny-gpt2")
    model = lm.model
    names = find_targets(model, auto_targets(model), "t")
    long, short = [5, 8, 13, 21, 34], [3, 4, 5]
    ids = torch.tensor([long, short + [0, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    got = input_covariances(model, names, [(ids, attention)])
    seen: dict[str, torch.Tensor] = {}  # each sequence alone, unpadded, its layer inputs summed by hand
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: seen.__setitem__(n, seen.get(n, 0) + args[0][0].double().T @ args[0][0].double()))
        for n in names]
    with torch.no_grad():
        for row in (long, short):
            backbone(model)(input_ids=torch.tensor([row]))
    for h in handles:
        h.remove()
    for n in names:
        torch.testing.assert_close(got[n], seen[n] / 8, atol=1e-6, rtol=1e-5)


def test_inflora_options_are_checked():
    with pytest.raises(BenchError, match=r"m\.gpm_threshold: must be in \(0, 1\], got 1\.5"):
        parse_method({"method": "inflora", "gpm_threshold": 1.5}, "m")
    assert parse_method({"method": "inflora", "rank": 4}, "m").display_label == "inflora-r4"


def test_inflora_resumes_exactly_and_its_second_update_avoids_the_kept_subspace(toy_data, tmp_path, cli,
                                                                                monkeypatch):
    one, two = resumed_runs(toy_data, tmp_path, cli, monkeypatch, {"method": "inflora", "rank": 2}, "inflora-r2")
    layers = sorted(k[: -len(".tasklora_basis")] for k in one if k.endswith(".tasklora_basis"))
    assert layers
    for name in layers:
        assert torch.equal(two[f"{name}.tasklora_A.0"], one[f"{name}.tasklora_A.0"])  # A is never trained
        assert torch.equal(two[f"{name}.tasklora_B.0"], one[f"{name}.tasklora_B.0"])  # task 1 frozen
        basis, a2 = one[f"{name}.tasklora_basis"].double(), two[f"{name}.tasklora_A.1"].double()
        # task 2's update B_2 A_2 x: zero on the inputs task 1 kept (`remove`), or only on the free space
        inside = a2 @ basis if not one[f"{name}.tasklora_retain"] else a2 - a2 @ basis @ basis.T
        assert float(inside.abs().max()) < 1e-5, name
        torch.testing.assert_close(a2 @ a2.T, torch.eye(2, dtype=torch.float64) / 3, atol=1e-5, rtol=0)
