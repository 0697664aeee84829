"""Finished work is never replaced silently, and never deleted before its replacement has a stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_in, snapshot, tiny_config


def one_task(toy_data: Path, **method) -> dict:
    cfg = tiny_config(toy_data, methods=[{"method": "lora", "rank": 2, "label": "mine", **method}], perplexity=None)
    cfg["tasks"] = cfg["tasks"][:1]
    return cfg


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy_data):
    """One finished one-task run under the label `mine`, made once for the module."""
    return run_in(tmp_path_factory.mktemp("finished"), one_task(toy_data))


@pytest.fixture
def done(finished, tmp_path):
    """A copy of the finished run's folder that the test may change."""
    shutil.copytree(finished, tmp_path / "out")
    return tmp_path / "out"


def test_changed_options_under_the_same_label_are_refused(done, toy_data, write_config, cli):
    before = snapshot(done)
    code, out, err = cli("run", write_config(one_task(toy_data, alpha=3.0), "b.yaml"), "--output", done)
    assert code == 2, out + err
    assert "mine seed 0:" in err and "differs in: alpha" in err and "--fresh" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(done) == before
    # a changed per-method train override is named too
    code, _, err = cli("run", write_config(one_task(toy_data, train={"lr": 0.5}), "c.yaml"), "--output", done)
    assert code == 2 and "differs in: train" in err
    assert snapshot(done) == before


def test_a_started_run_with_other_settings_is_refused_too(done, toy_data, write_config, cli):
    (done / "mine" / "seed-0" / "summary.json").unlink()  # only its checkpoint is left
    before = snapshot(done)
    code, _, err = cli("run", write_config(one_task(toy_data, alpha=3.0), "b.yaml"), "--output", done)
    assert code == 2 and "differs in: alpha" in err and "state.json" in err
    assert snapshot(done) == before


def test_fresh_replaces_and_leaves_no_backup(done, toy_data, write_config, cli):
    before = snapshot(done)
    code, _, err = cli("run", write_config(one_task(toy_data, alpha=3.0), "b.yaml"), "--output", done, "--fresh")
    assert code == 0, err
    run = done / "mine" / "seed-0"
    assert json.loads((run / "summary.json").read_text())["method"]["alpha"] == 3.0
    assert not (run / ".previous").exists()
    assert snapshot(done) != before


def test_nan_before_the_first_stage_puts_the_replaced_work_back(done, toy_data, write_config, cli, monkeypatch):
    from curlora_bench.run import recipe
    from curlora_bench.run.train import NonFiniteLoss

    def nan(*args, **kwargs):
        raise NonFiniteLoss(1, float("nan"))

    monkeypatch.setattr(recipe, "train_stage", nan)
    run = done / "mine" / "seed-0"
    before = snapshot(run)
    code, out, err = cli("run", write_config(one_task(toy_data, alpha=1e9), "b.yaml"), "--output", done, "--fresh")
    assert code == 0, err
    assert "restored" in " ".join(out.split())
    assert snapshot(run) == before


def test_a_signal_before_the_first_stage_puts_the_replaced_work_back(done, toy_data, write_config, cli, monkeypatch):
    import signal

    from curlora_bench.core.errors import Interrupted
    from curlora_bench.run import recipe

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(recipe, "train_stage", interrupted)
    run = done / "mine" / "seed-0"
    before = snapshot(run)
    code, _, err = cli("run", write_config(one_task(toy_data, alpha=2.0), "b.yaml"), "--output", done, "--fresh")
    assert code == 143 and "interrupted (SIGTERM)" in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_an_unfinished_replacement_keeps_the_last_finished_work(done):
    from curlora_bench.store import checkpoint

    run = done / "mine" / "seed-0"
    before = snapshot(run)
    assert checkpoint.set_aside(run)
    (run / "records.jsonl").write_text('{"half": ')  # the replacement was killed mid-stage
    assert checkpoint.set_aside(run)  # the next attempt: the half-done one goes, the backup stays
    assert not (run / "records.jsonl").exists()
    assert checkpoint.restore_previous(run)
    assert snapshot(run) == before
