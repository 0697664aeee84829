"""Drift diagnostics against explicit computations; CURLoRA sampling statistics by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from curlora_bench.adapters import adapter_of
from curlora_bench.adapters.curlora_layer import curlora_sampling, kl_from_uniform, sampling_stats
from curlora_bench.config.methods import parse_method
from curlora_bench.run.drift import relative_drift, snapshot
from curlora_bench.sources.models import auto_targets, load_model
from tests.test_adapters import METHODS


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def base(request):
    return load_model(request.param)


def attached(lm, spec):
    cfg = parse_method(spec, "m")
    model = copy.deepcopy(lm.model)
    names = adapter_of(cfg).attach(model, auto_targets(model), cfg.options, 0, "m")
    return model, names, snapshot(model, names)


def perturb(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        for m in model.modules():  # I-LoRA applies its slow LoRA, which follows the trained one after each step
            if hasattr(m, "ema_update"):
                m.ema_update(0.25)


@pytest.mark.parametrize("spec", METHODS, ids=lambda s: s.get("type", s["method"]))
def test_zero_at_init_positive_after_training(base, spec):
    model, names, ref = attached(base, spec)
    drift = relative_drift(model, names, ref)
    assert set(drift) == set(names)
    assert all(v < 1e-6 for v in drift.values()), drift
    perturb(model)
    if names:
        assert all(v > 0 for v in relative_drift(model, names, ref).values())


def test_lora_drift_equals_explicit_update(base):
    model, names, ref = attached(base, {"method": "lora", "rank": 4, "alpha": 2})
    perturb(model)
    drift = relative_drift(model, names, ref)
    for n in names:
        m = model.get_submodule(n)
        delta = m.scaling["default"] * (m.lora_B["default"].weight @ m.lora_A["default"].weight)
        expected = float(delta.detach().norm() / m.base_layer.weight.norm())
        assert drift[n] == pytest.approx(expected, rel=1e-4)


def test_curlora_drift_equals_c_u_r(base):
    model, names, ref = attached(base, {"method": "curlora", "rank": 4, "alpha": 1})
    perturb(model)
    for n, v in relative_drift(model, names, ref).items():
        m = model.get_submodule(n)
        expected = float((m.curlora_C @ m.curlora_U @ m.curlora_R).norm() / m.base_layer.weight.norm())
        assert v == pytest.approx(expected, rel=1e-6)


def test_full_drift_against_snapshot(base):
    model, names, ref = attached(base, {"method": "full"})
    with torch.no_grad():
        w = model.get_submodule(names[0]).weight
        w.mul_(1.1)  # ΔW = 0.1 W
    assert relative_drift(model, names, ref)[names[0]] == pytest.approx(0.1, rel=1e-5)


def test_kl_from_uniform_by_hand():
    assert kl_from_uniform(torch.full((4,), 0.25)) == pytest.approx(0.0, abs=1e-12)
    q = torch.tensor([0.5, 0.5, 0.0, 0.0])  # KL = log 2
    assert kl_from_uniform(q) == pytest.approx(math.log(2))
    q = torch.tensor([0.7, 0.1, 0.1, 0.1])
    assert kl_from_uniform(q) == pytest.approx(sum(p * math.log(4 * p) for p in [0.7, 0.1, 0.1, 0.1]))


def test_sampling_stats_by_hand():
    s = sampling_stats(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([3, 3, 1, 3]))
    assert s["max_min_ratio"] == pytest.approx(4.0)
    assert s["duplicates"] == 2 and s["indices"] == 4


def test_curlora_sampling_summary(base):
    model, names, _ = attached(base, {"method": "curlora", "rank": 4, "sampling": "uniform"})
    agg = curlora_sampling(model, names)["summary"]
    assert agg["columns"]["kl_from_uniform_mean"] == pytest.approx(0.0, abs=1e-6)
    assert agg["columns"]["max_min_ratio_max"] == pytest.approx(1.0)
    assert agg["columns"]["indices_total"] == 4 * len(names)
    inv = curlora_sampling(attached(base, {"method": "curlora", "rank": 4})[0], names)["summary"]
    assert inv["columns"]["kl_from_uniform_mean"] > 0
    assert curlora_sampling(attached(base, {"method": "lora", "rank": 4})[0], names) == {}
