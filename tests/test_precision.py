"""`train.precision: bf16` on the CPU as on CUDA: autocast for training and every evaluation path,
fp32 trainable parameters and optimizer state, refused in one line where the device has no bf16."""

from __future__ import annotations

import json

import pytest
import torch

from curlora_bench.core import env
from tests.conftest import tiny_config


@pytest.fixture
def bf16_here(monkeypatch):
    """bf16 allowed on this CPU whatever it has: without native bf16 oneDNN emulates it (slower,
    the same arithmetic), so the mechanics are tested on every machine."""
    monkeypatch.setattr(env, "bf16_supported", lambda device: True)


def test_autocast_is_bf16_on_cpu_and_cuda_and_nothing_in_fp32():
    from curlora_bench.run.train import autocast

    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16  # the matmul ran in bf16, its fp32 weight untouched
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_refused_in_one_line_where_the_cpu_has_none(toy_data, write_config, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(env, "cpu_flags", lambda: {"avx512f", "avx512bw", "avx512_vnni"})  # AVX-512, no BF16
    assert not env.bf16_supported(torch.device("cpu"))
    monkeypatch.setattr(env, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert env.bf16_supported(torch.device("cpu"))
    monkeypatch.setattr(env, "bf16_supported", lambda device: False)
    cfg = tiny_config(toy_data)
    cfg["train"]["precision"] = "bf16"
    out = tmp_path / "out"
    code, _, err = cli("run", write_config(cfg), "--output", out)
    assert code == 2 and err.strip().count("\n") == 0
    assert "train.precision: bf16 needs native bfloat16 arithmetic" in err and "use fp32" in err and not out.exists()
    assert "execution.emulated_bf16" in err  # the way to bf16's numbers on such a CPU, said
    # the opt-in runs it (emulated: bf16's rounding, at a cost in speed only), as the same run (execution is
    # no part of a run's identity)
    from curlora_bench.config.loading import load_config

    cfg.setdefault("execution", {})["emulated_bf16"] = True
    path = write_config(cfg)
    code, _, err = cli("run", path, "--output", out)
    assert code == 0, err
    assert next(out.glob("*/seed-0/summary.json")).is_file()
    allowed, _ = load_config(path)
    cfg["execution"]["emulated_bf16"] = False
    refused, _ = load_config(write_config(cfg))
    assert allowed.identity(allowed.methods[0], 0).run_key == refused.identity(refused.methods[0], 0).run_key


def test_precision_is_set_per_experiment_not_per_method(toy_data, write_config, tmp_path, cli):
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "train": {"precision": "bf16"}}])
    code, _, err = cli("run", write_config(cfg), "--output", tmp_path / "out")
    assert code == 2 and "methods[0].train.precision: set per experiment, not per method" in err


def test_the_default_precision_keeps_every_run_key(toy_data, write_config):
    """fp32 is the default, so no run key moves (tests/test_identity.py checks every published
    one); bf16 computes other numbers, so it is another run."""
    from curlora_bench.config.loading import load_config

    def key(**train):
        cfg = tiny_config(toy_data)
        cfg["train"].update(train)
        loaded, _ = load_config(write_config(cfg))
        return loaded.identity(loaded.methods[0], 0).run_key

    assert key() == key(precision="fp32") != key(precision="bf16")


def test_a_bf16_run_on_cpu_trains_and_scores_in_bf16_with_fp32_state(toy_data, write_config, tmp_path, cli,
                                                                      monkeypatch, bf16_here):
    """The run ends, its numbers are close to (not equal to) fp32's, and every forward pass of
    training, evaluation and perplexity ran under bf16 autocast while the adapter stayed fp32."""
    from curlora_bench.run import corpora, train
    from curlora_bench.run.kinds import classification

    seen = {"eval": [], "ppl": []}
    real_predictions, real_perplexity = classification.predictions, corpora.perplexity

    def spy_predictions(*a, **k):
        seen["eval"].append(torch.is_autocast_enabled("cpu"))
        return real_predictions(*a, **k)

    def spy_perplexity(*a, **k):
        seen["ppl"].append(torch.is_autocast_enabled("cpu"))
        return real_perplexity(*a, **k)

    monkeypatch.setattr(classification, "predictions", spy_predictions)
    monkeypatch.setattr(corpora, "perplexity", spy_perplexity)
    states = []
    real_step = train.train_step

    def spy_step(ctx, task, rows, plugins, optimizer, *a, **k):
        states.extend(v.dtype for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
        states.extend(p.dtype for g in optimizer.param_groups for p in g["params"])
        return real_step(ctx, task, rows, plugins, optimizer, *a, **k)

    monkeypatch.setattr(train, "train_step", spy_step)
    results = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])
        cfg["train"]["precision"] = precision
        code, _, err = cli("run", write_config(cfg), "--output", tmp_path / precision)
        assert code == 0, err
        results[precision] = json.loads((tmp_path / precision / "lora-r2" / "seed-0" / "summary.json").read_text())
    fp32, bf16 = results["fp32"], results["bf16"]
    assert bf16["settings_hash"] != fp32["settings_hash"]
    assert True in seen["ppl"] and False in seen["ppl"]  # bf16's perplexity under autocast, fp32's not
    assert True in seen["eval"] and False in seen["eval"]  # the same for task scoring
    assert states and set(states) == {torch.float32}  # trainable parameters and Adam's moments: fp32
    a, b = fp32["metrics"]["perplexity_drift"], bf16["metrics"]["perplexity_drift"]
    assert a != b and abs(a - b) < 0.05 * a  # close, not the same numbers


def test_threads_are_sized_to_the_cores_other_processes_leave_free(monkeypatch):
    """Beside busy processes a run takes the free cores only (spinning OpenMP threads waiting for a
    taken core cost it half its speed); alone, every core; an explicit count or OMP_NUM_THREADS wins."""
    import os

    torch_threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    try:
        assert env.configure_threads(busy=lambda: 0.1) == 4
        assert env.configure_threads(busy=lambda: 2.2) == 2
        assert env.configure_threads(busy=lambda: 3.9) == 1  # never none
        assert env.configure_threads(3, busy=lambda: 3.9) == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        assert env.configure_threads(busy=lambda: 0.0) == 2  # the user's setting is left alone
    finally:
        torch.set_num_threads(torch_threads)
    assert 0.0 <= env.busy_cores(0.05) <= (os.cpu_count() or 1) + 0.5
