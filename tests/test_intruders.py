"""Intruder dimensions (Shuttleworth et al. 2024) on matrices with a known count, and the
(W0, W) pair read from an adapted layer in the orientation the definition uses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from curlora_bench.run.drift import intruder_dimensions, snapshot, weight_pair


def _base(n: int = 16) -> torch.Tensor:
    # singular vectors of diag(n, ..., 1) are the standard basis
    return torch.diag(torch.arange(n, 0, -1, dtype=torch.float64))


def _spread(signs: list[int]) -> torch.Tensor:
    v = torch.tensor(signs, dtype=torch.float64)
    return v / v.norm()  # |cos| with every basis vector: 1/sqrt(n)


def test_a_direction_spread_over_every_base_vector_is_one_intruder():
    w0 = _base()
    u = _spread([1] * 16)  # cos 0.25 with each e_i
    w = w0 + 40 * torch.outer(u, u)  # the new top singular vector, about u (best cos 0.30)
    # the others bend towards u too (best cos 0.66-0.91), so a loose threshold counts them
    assert intruder_dimensions(w0, w, top_k=10, epsilons=[0.2, 0.5, 0.9]) == [0, 1, 9]


def test_two_orthogonal_new_directions_are_two_and_a_small_change_none():
    w0 = _base()
    u = _spread([1] * 16)
    v = _spread([1, -1] * 8)  # orthogonal to u, also 0.25 with each e_i
    w = w0 + 40 * torch.outer(u, u) + 35 * torch.outer(v, v)
    # best cosines: 0.33, 0.33 for the two new directions, 0.67-0.86 for the other eight
    assert intruder_dimensions(w0, w, top_k=10, epsilons=[0.3, 0.5, 0.6]) == [0, 2, 2]
    assert intruder_dimensions(w0, w, top_k=1, epsilons=[0.5]) == [1]
    # a change that keeps every singular direction near a base one has none
    noise = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert intruder_dimensions(w0, w0 + 1e-3 * noise, top_k=10, epsilons=[0.5, 0.9]) == [0, 0]


def test_a_new_direction_below_the_top_k_is_not_counted():
    w0 = _base()
    u = _spread([1] * 16)
    w = w0 + 0.5 * torch.outer(u, u)  # a small singular value: ranked low, not among the top 3
    assert intruder_dimensions(w0, w, top_k=3, epsilons=[0.5]) == [0]


def test_the_cosine_threshold_is_strict():
    # cos exactly 1/sqrt(2) with two base vectors: an intruder only for a threshold above it
    w0 = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    u = torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    w = 10 * torch.outer(u, u) + 1e-3 * torch.eye(2, dtype=torch.float64)
    assert intruder_dimensions(w0, w, top_k=1, epsilons=[0.7, 0.71]) == [0, 1]


@pytest.mark.parametrize("conv", [False, True])
def test_weight_pair_is_out_by_in_for_linear_and_conv1d(conv):
    torch.manual_seed(0)
    layer = Conv1D(5, 3) if conv else torch.nn.Linear(3, 5)  # 3 in, 5 out either way
    model = torch.nn.Sequential(layer)
    ref = snapshot(model, ["0"])
    w0, w = weight_pair(model, "0", ref)
    native = layer.weight.detach()
    expected = native.T if conv else native
    assert w0.shape == (5, 3) and torch.allclose(w0, expected) and torch.allclose(w, expected)
    with torch.no_grad():
        layer.weight.add_(1.0)
    _, moved = weight_pair(model, "0", ref)
    assert torch.allclose(moved - w0, torch.ones(5, 3))


def test_a_run_with_diagnostics_counts_intruders_after_every_stage(toy_data, tmp_path, cli):
    import json

    from tests.conftest import run_in, tiny_config

    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}, {"method": "full"}],
                      diagnostics={"top_k": 4, "epsilons": [0.5, 0.9]}, perplexity=None)
    out = run_in(tmp_path, cfg)
    for label in ("lora-r2", "full"):
        summary = json.loads((out / label / "seed-0" / "summary.json").read_text())
        assert [d["stage"] for d in summary["drift"]] == [1, 2]
        for d in summary["drift"]:
            counted = d["intruders"]
            assert counted["top_k"] == 4 and counted["epsilons"] == [0.5, 0.9]
            assert set(counted["per_module"]) == set(d["per_module"])
            per = list(counted["per_module"].values())
            assert all(len(c) == 2 and 0 <= c[0] <= c[1] <= 4 for c in per)  # a looser threshold counts more
            assert counted["total"] == [sum(c[k] for c in per) for k in range(2)]
    code, stdout, err = cli("report", out)
    assert code == 0, err
    assert "Intruder dimensions, top 4 at ε 0.5, summed over matrices (after polarity)" in stdout


def test_diagnostics_enter_a_run_identity_only_when_set(toy_data, write_config):
    from curlora_bench.config.loading import load_config
    from curlora_bench.run.spec import RunSpec
    from tests.conftest import tiny_config

    def key(**extra):
        cfg, _ = load_config(write_config(tiny_config(toy_data, **extra)))
        return RunSpec.of(cfg, 0, 0, Path("out")).identity.run_key

    plain = key()
    assert key(diagnostics=None) == plain and key(diagnostics={}) != plain


@pytest.mark.parametrize("bad,message", [
    ({"top_k": 0}, "diagnostics.top_k"),
    ({"epsilons": []}, "diagnostics.epsilons"),
    ({"epsilons": [0.5, 1.5]}, "diagnostics.epsilons"),
])
def test_bad_diagnostics_are_one_line(toy_data, write_config, bad, message):
    from curlora_bench.config.loading import load_config
    from curlora_bench.core.errors import BenchError
    from tests.conftest import tiny_config

    with pytest.raises(BenchError, match=message):
        load_config(write_config(tiny_config(toy_data, diagnostics=bad)))


def test_the_recovery_probe_retrains_each_earlier_task_and_puts_the_weights_back(toy_data, tmp_path, cli):
    """Zheng et al. 2025's probe on a tiny run: a score per earlier task after k steps, the run's
    own results unchanged (the same records and matrix as without the probe)."""
    import json

    from tests.conftest import run_in, tiny_config

    def run(folder, **extra):
        folder.mkdir()
        out = run_in(folder, tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}], perplexity=None, **extra))
        return out / "lora-r2" / "seed-0"

    probed = run(tmp_path / "probed", diagnostics={"intruders": False, "recovery_steps": 2})
    plain = run(tmp_path / "plain")
    s, p = (json.loads((r / "summary.json").read_text()) for r in (probed, plain))
    assert s["score_matrix"] == p["score_matrix"]
    assert (probed / "records.jsonl").read_text().replace(str(tmp_path / "probed"), "") == \
        (plain / "records.jsonl").read_text().replace(str(tmp_path / "plain"), "")
    [r] = s["recovery"]  # two tasks: the first is the one earlier task
    A = s["score_matrix"]
    assert (r["task"], r["steps"], r["learned"], r["final"]) == ("pairs", 2, A[0][0], A[1][0])
    assert 0 <= r["recovered"] <= 1
    assert p["recovery"] is None and all(d["intruders"] is None for d in s["drift"])
    code, stdout, err = cli("report", probed.parent.parent)
    assert code == 0, err
    assert "pairs accuracy after 2 steps of retraining from the end (recovery probe)" in stdout
