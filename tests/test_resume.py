"""Resume after a SIGKILL (the one real kill of the suite: the other resume tests crash in-process,
conftest.crashed_and_resumed), reruns that keep finished runs, `--fresh`, a different config
refused, and a failure that stops one run only."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import records, run_killed, snapshot, tiny_config, train_one


@pytest.fixture
def finished(finished_run):
    return finished_run


def test_sigkill_mid_stage_then_rerun_equals_uninterrupted(finished, tmp_path, cli):
    cfg_path, reference = finished
    out = tmp_path / "killed"
    # 48 examples / batch 16 = 3 steps per stage: step 5 is in the middle of LoRA's stage 2
    run_killed(cfg_path, out, 5)
    lora = out / "lora-r2" / "seed-0"
    assert (lora / "checkpoints" / "stage-1" / "state.json").is_file()
    assert not (lora / "checkpoints" / "stage-2").exists() and not (lora / "summary.json").exists()
    code, stdout, err = cli("run", cfg_path, "--output", out)
    assert code == 0, err
    assert "resuming after stage 1/2" in stdout
    for label in ("lora-r2", "curlora-r2", "full"):
        assert records(out / label / "seed-0") == records(reference / label / "seed-0"), label
    s = json.loads((lora / "summary.json").read_text())
    assert s["resumed_from_stage"] == 1 and s["status"] == "complete"


def test_rerun_keeps_complete_runs_and_fresh_starts_over(finished, tmp_path, cli):
    cfg_path, reference = finished
    out = tmp_path / "o"
    shutil.copytree(reference, out)  # what the first run left
    before = snapshot(out / "lora-r2")
    code, stdout, _ = cli("run", cfg_path, "--output", out)
    assert code == 0 and "already complete" in stdout
    assert snapshot(out / "lora-r2") == before
    code, stdout, _ = cli("run", cfg_path, "--output", out, "--fresh")
    assert code == 0 and "already complete" not in stdout
    assert records(out / "lora-r2" / "seed-0") == records(reference / "lora-r2" / "seed-0")


def test_different_config_is_refused_unless_force(finished, tmp_path, cli, write_config, toy_data):
    _, reference = finished
    out = tmp_path / "o"
    shutil.copytree(reference, out)  # the finished results of another config
    before = snapshot(out)
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])
    cfg["train"]["lr"] = 5e-3
    code, stdout, err = cli("run", write_config(cfg), "--output", out)
    assert code == 2 and "holds results of a different config (differs in: train)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(out) == before
    code, stdout, err = cli("run", write_config(cfg), "--output", out, "--force")
    assert code == 0, err
    assert "already complete" not in stdout  # the old lora run belongs to the other config
    report = (out / "report.md").read_text()
    assert "lora-r2" in report and "curlora-r2" not in report  # only this config's runs
    # adding a seed to the same experiment is not a different config
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}], seeds=[0, 1])
    cfg["train"]["lr"] = 5e-3
    code, stdout, err = cli("run", write_config(cfg), "--output", out)
    assert code == 0 and "already complete" in stdout


def test_huge_lr_gives_nonfinite_loss_error(toy_data, write_config):
    from curlora_bench.config.loading import load_config
    from curlora_bench.core.protocol import Protocol
    from curlora_bench.run.data import Batching
    from curlora_bench.run.prepare import prepare_tasks
    from curlora_bench.run.train import NonFiniteLoss
    from curlora_bench.sources.heads import TaskHeads
    from curlora_bench.sources.models import hidden_size, load_model

    cfg, _ = load_config(write_config(tiny_config(toy_data)))
    lm = load_model("tiny-gpt2")
    task = prepare_tasks(cfg, lm, Protocol.of("standard"))[0]
    for p in lm.model.parameters():
        p.requires_grad_(True)
    heads = TaskHeads()
    heads.add(task.name, hidden_size(lm.model), 2, seed=0)
    cfg.train.lr, cfg.train.max_grad_norm = 1e30, None
    with pytest.raises(NonFiniteLoss, match=r"at step \d+ \(learning rate \d"):
        train_one(lm.model, heads, task, cfg.train, Batching(torch.device("cpu"), 0), Protocol.of("standard"), 0)


def test_nan_loss_stops_that_run_only(tmp_path, cli, write_config, toy_data, monkeypatch):
    from curlora_bench.run import recipe as runner
    from curlora_bench.run.train import NonFiniteLoss

    calls = []
    real = runner.train_stage

    def failing_second_stage_of_first_run(*args, **kwargs):
        calls.append(args[0].stage.name)  # the stage's context
        if len(calls) == 2:
            raise NonFiniteLoss(3, float("nan"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_stage", failing_second_stage_of_first_run)
    cfg = tiny_config(toy_data, methods=[{"method": "full"}, {"method": "curlora", "rank": 2}])
    code, stdout, err = cli("run", write_config(cfg), "--output", tmp_path / "o")
    assert code == 0, err
    run = tmp_path / "o" / "full" / "seed-0"
    full = json.loads((run / "summary.json").read_text())
    assert full["status"] == "failed"
    assert full["error"] == "full seed 0 stage 2 (polarity) step 3: loss is nan at step 3"
    flat = " ".join(stdout.split())
    assert "stopped: full seed 0 stage 2" in flat and "finished stages are kept" in flat
    assert full["score_matrix"][0][0] is not None and full["score_matrix"][1] == [None, None]
    assert (run / "checkpoints" / "stage-1").is_dir()
    other = json.loads((tmp_path / "o" / "curlora-r2" / "seed-0" / "summary.json").read_text())
    assert other["status"] == "complete"
