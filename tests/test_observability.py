"""train_log.jsonl, per-stage memory and time, TensorBoard and MLflow read back, resume exactly once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import Crash, crash_at_steps, run_in, tiny_config, train_one

pytest.importorskip("tensorboard", reason="pip install 'curlora-bench[trackers]'")
pytest.importorskip("mlflow", reason="pip install 'curlora-bench[trackers]'")

LABELS = ("lora-r2", "curlora-r2")
STEPS = 3  # 48 examples / batch 16, per stage; 2 stages
TIMING = ("tokens_per_s", "seconds")  # wall clock: the only fields a rerun may change


def train_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def without_timing(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, toy_data):
    """One uninterrupted tiny run of LoRA and CURLoRA with TensorBoard and MLflow on."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    d = tmp_path_factory.mktemp("logged")
    return d / "exp.yaml", run_in(d, tiny_config(toy_data, log=["tensorboard", "mlflow"]))


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def same_points(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """Equal steps, values equal to float32 precision (TensorBoard stores float32)."""
    return [s for s, _ in got] == [s for s, _ in want] and \
        [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def mlflow_runs(out: Path) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    found = client.search_runs([exp.experiment_id])
    runs = {r.info.run_name: r for r in found}  # "<label> seed <k>"
    assert len(runs) == len(found), "two active MLflow runs for one (method, seed)"
    return client, runs


def test_train_log_has_every_step_and_agrees_with_the_summary(logged):
    _, out = logged
    for label in LABELS:
        run = out / label / "seed-0"
        lines = train_log(run)
        summary = json.loads((run / "summary.json").read_text())
        assert [(x["stage"], x["step"]) for x in lines] == [(s, k) for s in (1, 2) for k in range(1, STEPS + 1)]
        assert [x["global_step"] for x in lines] == list(range(1, 2 * STEPS + 1))
        for stage in summary["stages"]:
            mine = [x for x in lines if x["stage"] == stage["stage"]]
            assert {x["task"] for x in mine} == {stage["task"]}
            assert mine[-1]["loss"] == stage["final_loss"]
            assert sum(x["loss"] for x in mine) / len(mine) == pytest.approx(stage["mean_loss"], rel=1e-12)
            assert (mine[-1]["examples"], mine[-1]["tokens"]) == (stage["examples"], stage["train_tokens"])
            assert all(x["grad_norm"] > 0 and x["tokens_per_s"] > 0 for x in mine)
            assert stage["wall_seconds"] >= stage["train_seconds"] + stage["eval_seconds"] - 1e-3
            assert stage["peak_memory_bytes"] > 2**20 and stage["memory_kind"] in ("rss", "rss-process")
        # warm-up of 1 step then cosine over 3: the learning rate each step used
        assert [x["lr"] for x in lines[:STEPS]] == pytest.approx([0.0, 1e-3, 5e-4])


def test_tensorboard_events_equal_the_train_log_and_records(logged):
    _, out = logged
    for label in LABELS:
        run = out / label / "seed-0"
        tb, lines = scalars(run), train_log(run)
        for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
            assert [s for s, _ in tb[f"train/{key}"]] == [x["global_step"] for x in lines]
            assert [v for _, v in tb[f"train/{key}"]] == pytest.approx([x[key] for x in lines], rel=1e-6)
        recs = [json.loads(r) for r in (run / "records.jsonl").read_text().splitlines()]
        acc = [(r["stage"], r["value"]) for r in recs if r["metric"] == "accuracy" and r["task"] == "pairs"]
        assert same_points(tb["accuracy/pairs"], acc)
        ppl = [(r["stage"], r["value"]) for r in recs if r["metric"] == "perplexity"]
        assert same_points(tb["perplexity/corpus.txt"], ppl)
        summary = json.loads((run / "summary.json").read_text())
        assert same_points(tb["summary/average_accuracy"], [(2, summary["metrics"]["average_accuracy"])])


def test_mlflow_has_one_run_per_method_and_seed_with_the_same_numbers(logged):
    _, out = logged
    client, runs = mlflow_runs(out)
    assert sorted(runs) == sorted(f"{label} seed 0" for label in LABELS)
    for label in LABELS:
        mrun, run = runs[f"{label} seed 0"], out / label / "seed-0"
        lines = train_log(run)
        assert mrun.info.status == "FINISHED" and mrun.data.tags["label"] == label
        assert mrun.data.params["train.lr"] == "0.001" and mrun.data.params["method.method"] == label.split("-")[0]
        assert mrun.data.params["seed"] == "0" and "methods.0.method" not in mrun.data.params
        history = sorted(client.get_metric_history(mrun.info.run_id, "train/loss"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(x["global_step"], x["loss"]) for x in lines]
        acc = client.get_metric_history(mrun.info.run_id, "accuracy/polarity")
        assert [m.step for m in acc] == [2]
        artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id)}
        assert {"summary.json", "records.jsonl", "train_log.jsonl", "report.md"} <= artifacts
    assert (out / "mlartifacts").is_dir() and not (Path.cwd() / "mlruns").exists()


def test_log_every_changes_only_the_log(logged, tmp_path, cli):
    """Every 2 steps (and each stage's last): mean losses of the steps in between; same records."""
    cfg_path, reference = logged
    out = tmp_path / "o"
    code, _, err = cli("run", cfg_path, "--output", out, "--set", "execution.log_every=2", "--log", "none")
    assert code == 0, err
    run, ref = out / "lora-r2" / "seed-0", reference / "lora-r2" / "seed-0"
    assert (run / "records.jsonl").read_bytes() == (ref / "records.jsonl").read_bytes()
    assert not (run / "tensorboard").exists() and not (out / "mlflow.db").exists()
    every = train_log(ref)
    lines = train_log(run)
    assert [x["global_step"] for x in lines] == [2, 3, 5, 6]
    assert lines[0]["loss"] == pytest.approx((every[0]["loss"] + every[1]["loss"]) / 2, rel=1e-12)
    assert lines[1]["loss"] == every[2]["loss"]
    for x in lines:
        y = every[x["global_step"] - 1]
        assert (x["lr"], x["grad_norm"], x["examples"], x["tokens"]) == (y["lr"], y["grad_norm"], y["examples"],
                                                                         y["tokens"])
    a = json.loads((run / "summary.json").read_text())
    b = json.loads((ref / "summary.json").read_text())
    assert (a["settings_hash"], a["run_key"]) == (b["settings_hash"], b["run_key"])


def test_a_crash_then_resume_logs_every_step_exactly_once(logged, tmp_path, cli, monkeypatch):
    from curlora_bench.experiment import trackers

    cfg_path, reference = logged
    out = tmp_path / "killed"
    # every point sent at once, so the crashed run leaves steps after its checkpoint in both trackers
    monkeypatch.setattr(trackers.MlflowEvents, "FLUSH_SECONDS", -1.0)
    logged_step = trackers.TensorBoardEvents.logged

    def flushing(self, entry):
        logged_step(self, entry)
        self.writer.flush()

    monkeypatch.setattr(trackers.TensorBoardEvents, "logged", flushing)
    # step 5 of the whole experiment is LoRA's stage 2, step 2: step 4 is logged after the checkpoint
    crash_at_steps(monkeypatch, 5)
    with pytest.raises(Crash):
        cli("run", cfg_path, "--output", out)
    lora = out / "lora-r2" / "seed-0"
    assert [x["global_step"] for x in train_log(lora)] == [1, 2, 3, 4]  # one step past the checkpoint
    assert [s for s, _ in scalars(lora)["train/loss"]] == [1, 2, 3, 4]
    client, runs = mlflow_runs(out)
    assert [m.step for m in client.get_metric_history(runs["lora-r2 seed 0"].info.run_id, "train/loss")] == [1, 2, 3, 4]
    code, stdout, err = cli("run", cfg_path, "--output", out)
    assert code == 0, err
    assert "resuming after stage 1/2" in stdout
    client, runs = mlflow_runs(out)
    assert sorted(runs) == sorted(f"{label} seed 0" for label in LABELS)  # replaced, not duplicated
    for label in LABELS:
        run, ref = out / label / "seed-0", reference / label / "seed-0"
        lines = train_log(run)
        assert without_timing(lines) == without_timing(train_log(ref)), label
        tb = scalars(run)
        assert same_points(tb["train/loss"], [(x["global_step"], x["loss"]) for x in lines]), label
        assert [s for s, _ in tb["accuracy/pairs"]] == [1, 2]
        run_id = runs[f"{label} seed 0"].info.run_id
        history = client.get_metric_history(run_id, "train/loss")
        assert sorted((m.step, m.value) for m in history) == [(x["global_step"], x["loss"]) for x in lines]
        assert [m.step for m in client.get_metric_history(run_id, "accuracy/pairs")] == [1, 2]


def test_training_loss_plot(logged, tmp_path, cli):
    _, out = logged
    code, stdout, err = cli("report", out, "--plots", tmp_path / "plots")
    assert code == 0, err
    assert (tmp_path / "plots" / "training_loss.png").stat().st_size > 10_000


def test_missing_tracker_package_is_one_line(tmp_path, cli, write_config, toy_data, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "mlflow" else real(name, *a, **k))
    code, _, err = cli("run", write_config(tiny_config(toy_data)), "--output", tmp_path / "o", "--log", "mlflow")
    assert code == 2
    assert err.strip() == ("error: log: mlflow needs the mlflow package: pip install 'curlora-bench[trackers]' "
                           "(make install installs it)")
    assert not (tmp_path / "o" / "config.yaml").exists()


def test_grad_norm_without_clipping_is_the_norm_clipping_returns(toy_data, write_config):
    """The read-only norm (no clipping) equals clip_grad_norm_'s; clipping at a huge bound changes nothing."""
    from curlora_bench.config.loading import load_config
    from curlora_bench.core.protocol import Protocol
    from curlora_bench.run.data import Batching
    from curlora_bench.run.prepare import prepare_tasks
    from curlora_bench.sources.heads import TaskHeads
    from curlora_bench.sources.models import hidden_size, load_model

    cfg, _ = load_config(write_config(tiny_config(toy_data)))
    task = prepare_tasks(cfg, load_model("tiny-gpt2"), Protocol.of("standard"))[0]
    logs = []
    for bound in (None, 1e9):
        torch.manual_seed(0)
        lm = load_model("tiny-gpt2")
        for p in lm.model.parameters():
            p.requires_grad_(True)
        heads = TaskHeads()
        heads.add(task.name, hidden_size(lm.model), 2, seed=0)
        cfg.train.max_grad_norm = bound
        steps = []
        train_one(lm.model, heads, task, cfg.train, Batching(torch.device("cpu"), 0), Protocol.of("standard"), 0,
                  on_step=lambda info, steps=steps: steps.append((info.loss, info.lr, info.grad_norm())))
        logs.append(steps)
    assert len(logs[0]) == STEPS
    assert [(loss, lr) for loss, lr, _ in logs[0]] == [(loss, lr) for loss, lr, _ in logs[1]]
    assert [n for *_, n in logs[0]] == pytest.approx([n for *_, n in logs[1]], rel=1e-5)


def test_console_shows_loss_lr_and_throughput():
    from rich.console import Console

    from curlora_bench.experiment.events import ConsoleEvents
    from curlora_bench.store.schema import TrainLogEntry

    events = ConsoleEvents(Console(file=open(os.devnull, "w")))  # noqa: SIM115
    events.stage_started("lora seed 0", 1, "pairs", 3)
    events.step(1, 0.5)
    events.logged(TrainLogEntry(1, "pairs", 1, 1, 0.5, 2.5e-4, 1.0, 16, 800, 12345.6, 0.1))
    assert events.describe() == "lora seed 0 train pairs loss 0.500 lr 2.50e-04 12,346 tok/s"
    events.close()
