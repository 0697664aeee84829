"""Reliability, round three: a report that never counts a run twice, `--fresh` that always puts
the old results back, Ray and trackers that fail in one line instead of hanging, sizes counted
before anything is expanded, and the smaller cases of issue 27. Each case: one line, the
documented exit code, no traceback, nothing lost."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_killed, tiny_config

PUBLISHED = ROOT / "results" / "published" / "sweep"


def runs_snapshot(folder: Path) -> dict[str, str]:
    """Every file of every run folder (what --fresh may set aside), by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*/seed-*/**/*")) if p.is_file()}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:  # bound and released: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- report: runs by identity, not by path ----------------------------------------------------

@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The published sweep's report, reached once."""
    from curlora_bench.analysis.report import render
    from curlora_bench.store.folders import find_runs

    runs = find_runs([PUBLISHED])
    return len(runs), render(runs, "md")


@pytest.mark.parametrize("spelling", ["dotdot", "symlink", "copy"])
def test_report_counts_a_run_reached_twice_once(spelling, alone, tmp_path, cli):
    if spelling == "dotdot":
        again = PUBLISHED / ".." / PUBLISHED.name
    elif spelling == "symlink":
        again = tmp_path / "link"
        again.symlink_to(PUBLISHED, target_is_directory=True)
    else:
        again = tmp_path / "copy"
        shutil.copytree(PUBLISHED, again, ignore=shutil.ignore_patterns("*.png"))
    code, out, err = cli("report", PUBLISHED, again)
    assert code == 0, err
    assert out == alone[1]  # every point n = 3, not 6: the same intervals
    note = one_line(err)
    assert note.startswith(f"note: {alone[0]} runs reached twice, counted once: ") and str(again) in note


def test_report_refuses_two_different_files_for_one_run(tmp_path, cli):
    copy = tmp_path / "copy"
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns("*.png"))
    summary = sorted(copy.glob("*/seed-0/summary.json"))[0]
    data = json.loads(summary.read_text())
    data["wall_seconds"] += 1.0  # a rerun of the same run: the same identity, another file
    summary.write_text(json.dumps(data, indent=2))
    code, _, err = cli("report", PUBLISHED, copy)
    assert code == 2
    line = one_line(err)
    assert str(summary) in line and str(PUBLISHED / summary.relative_to(copy)) in line
    assert "different files for the same run" in line and f"{data['label']} seed 0" in line


@pytest.mark.parametrize("damage", ["a row missing", "a row too short", "a row too long"])
def test_report_on_a_wrongly_shaped_summary_is_one_line(damage, tmp_path, cli):
    run = tmp_path / "x" / "lora-r8" / "seed-0"
    shutil.copytree(sorted(PUBLISHED.glob("*/seed-0"))[0], run)
    data = json.loads((run / "summary.json").read_text())
    if damage == "a row missing":
        data["accuracy_matrix"] = data["accuracy_matrix"][:-1]
    elif damage == "a row too short":
        data["accuracy_matrix"][-1] = data["accuracy_matrix"][-1][:1]
    else:
        data["accuracy_matrix"][0] = [*data["accuracy_matrix"][0], 0.5]
    (run / "summary.json").write_text(json.dumps(data))
    code, _, err = cli("report", tmp_path / "x")
    assert code == 2
    line = one_line(err)
    assert str(run / "summary.json") in line and "accuracy_matrix" in line and "expected 3 x 3 (3 tasks)" in line


# ---- --fresh: each run's results set aside as it starts, back unless it finished a stage --------

def two_runs(toy_data: Path, methods=None) -> dict:
    """Two methods, one task of 3 optimizer steps each, no perplexity: the fastest real runs."""
    cfg = tiny_config(toy_data, methods=methods or [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}],
                      perplexity=None)
    cfg["tasks"] = cfg["tasks"][:1]
    return cfg


@pytest.fixture(scope="module")
def done(tmp_path_factory, toy_data):
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_experiment

    d = tmp_path_factory.mktemp("done")
    (d / "exp.yaml").write_text(yaml.safe_dump(two_runs(toy_data)))
    run_experiment(load_config(d / "exp.yaml")[0], d / "out")
    return d / "exp.yaml", d / "out"


@pytest.fixture
def fresh_over(done, tmp_path):
    """A copy of the finished folder, its snapshot, and the config."""
    cfg, out = done
    shutil.copytree(out, tmp_path / "out")
    return cfg, tmp_path / "out", runs_snapshot(tmp_path / "out")


def signal_at_step(monkeypatch, step: int, sig: int) -> None:
    """This process gets `sig` at the `step`-th optimizer step of the experiment."""
    import torch

    real, calls = torch.optim.AdamW.step, []

    def signalling(self, *a, **k):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), sig)
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", signalling)


def test_fresh_sets_aside_each_run_only_as_it_starts(fresh_over, cli, monkeypatch):
    from curlora_bench.store import checkpoint

    cfg, out, _ = fresh_over
    real, seen = checkpoint.set_aside, []

    def recording(run):
        others = [p.parent.parent.name for p in out.glob("*/seed-0/summary.json") if p.parent.parent != run.parent]
        seen.append((run.parent.name, others))
        return real(run)

    monkeypatch.setattr(checkpoint, "set_aside", recording)
    code, _, err = cli("run", cfg, "-o", out, "--fresh")
    assert code == 0, err
    # lora's set-aside left curlora's finished results where they were (set aside only as curlora started)
    assert seen[0] == ("lora-r2", ["curlora-r2"]), seen
    assert [name for name, _ in seen].count("curlora-r2") >= 1
    assert not list(out.glob("*/seed-*/.previous*")) and not (out / ".lock").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_right_after_the_set_aside_puts_everything_back(fresh_over, cli, monkeypatch, sig, code):
    from curlora_bench.store import checkpoint

    cfg, out, before = fresh_over
    real = checkpoint.set_aside

    def then_signal(run):
        moved = real(run)
        os.kill(os.getpid(), sig)  # the handler raises here, between two bytecodes
        return moved

    monkeypatch.setattr(checkpoint, "set_aside", then_signal)
    rc, _, err = cli("run", cfg, "-o", out, "--fresh")
    assert rc == code and one_line(err).startswith(f"interrupted ({sig.name})")
    assert runs_snapshot(out) == before
    assert not list(out.glob("*/seed-*/.previous*")) and not (out / ".lock").exists()


def test_a_signal_mid_stage_of_the_first_run_leaves_every_run_as_it_was(fresh_over, cli, monkeypatch):
    cfg, out, before = fresh_over
    signal_at_step(monkeypatch, 2, signal.SIGINT)
    rc, _, err = cli("run", cfg, "-o", out, "--fresh")
    assert rc == 130 and one_line(err).startswith("interrupted (SIGINT)")
    assert runs_snapshot(out) == before  # the other run's complete results were never set aside


def test_a_signal_in_the_second_run_keeps_the_first_new_and_the_second_old(fresh_over, cli, monkeypatch):
    cfg, out, before = fresh_over
    signal_at_step(monkeypatch, 4, signal.SIGTERM)  # 3 steps per run: the second run's first step
    rc, _, err = cli("run", cfg, "-o", out, "--fresh")
    assert rc == 143 and one_line(err).startswith("interrupted (SIGTERM)")
    after = runs_snapshot(out)
    assert {k: v for k, v in after.items() if k.startswith("curlora")} == \
        {k: v for k, v in before.items() if k.startswith("curlora")}
    assert after["lora-r2/seed-0/summary.json"] != before["lora-r2/seed-0/summary.json"]  # rerun, complete
    assert json.loads((out / "lora-r2" / "seed-0" / "summary.json").read_text())["status"] == "complete"
    assert not list(out.glob("*/seed-*/.previous*"))


def test_a_full_disk_before_the_first_stage_names_the_path_and_puts_the_results_back(fresh_over, cli, monkeypatch):
    from safetensors import SafetensorError

    from curlora_bench.store import checkpoint

    def full(*args, **kwargs):  # what safetensors raises on a full disk: not an OSError
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    cfg, out, before = fresh_over
    monkeypatch.setattr(checkpoint, "save_file", full)
    code, stdout, err = cli("run", cfg, "-o", out, "--fresh")
    assert code == 2
    line = one_line(err)
    assert str(out / "lora-r2" / "seed-0" / "checkpoints" / "stage-1") in line and "No space left on device" in line
    assert "restored" in " ".join(stdout.split())
    assert runs_snapshot(out) == before and not (out / ".lock").exists()


def test_kill_9_then_a_plain_rerun_puts_the_results_back_first(fresh_over, cli):
    cfg, out, before = fresh_over
    run_killed(cfg, out, 2, args=("--fresh",))  # mid-stage of the first run, its results set aside
    assert (out / "lora-r2" / "seed-0" / ".previous").is_dir()
    code, stdout, err = cli("run", cfg, "-o", out)
    assert code == 0, err
    text = " ".join(stdout.split())
    assert "put back the results an unfinished replacement had set aside: lora-r2 seed 0" in text
    assert text.count("already complete, kept") == 2  # nothing recomputed, nothing deleted
    assert runs_snapshot(out) == before


# the child SIGKILLs itself inside the set-aside (after its first move) or inside the restore
_KILL_IN_MOVE = """
import os, signal
_replace, _moves = os.replace, []
def replace(src, dst, *a, **k):
    _replace(src, dst, *a, **k)
    if {marker!r} in str({side}):
        _moves.append(1)
        if len(_moves) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
"""
_NAN = """
import curlora_bench.run.recipe as recipe
from curlora_bench.run.train import NonFiniteLoss
def nan(*a, **k):
    raise NonFiniteLoss(1, float("nan"))
recipe.train_stage = nan
"""


@pytest.mark.parametrize("where", ["set-aside", "restore"])
def test_kill_9_inside_a_move_is_settled_by_the_next_run(where, fresh_over, cli):
    cfg, out, before = fresh_over
    if where == "set-aside":
        setup = _KILL_IN_MOVE.format(marker=".previous.tmp", side="dst")
    else:  # a NaN at the first stage puts the results back: killed half-way through that
        setup = _NAN + _KILL_IN_MOVE.format(marker=".previous.restoring", side="src")
    run_killed(cfg, out, 10**6, setup=setup, args=("--fresh",))
    left = out / "lora-r2" / "seed-0"
    assert (left / (".previous.tmp" if where == "set-aside" else ".previous.restoring")).is_dir()
    code, stdout, err = cli("run", cfg, "-o", out)
    assert code == 0, err
    assert "put back the results" in " ".join(stdout.split())
    assert runs_snapshot(out) == before and not list(out.glob("*/seed-*/.previous*"))


def test_recover_settles_every_state_a_death_can_leave(tmp_path):
    from curlora_bench.store import checkpoint

    def folder(name: str, **files: str) -> Path:
        run = tmp_path / name
        for rel, text in files.items():
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_text(text)
        return run

    old = {"summary.json": "old", "records.jsonl": "old\n", "checkpoints/stage-1/state.json": "{}"}
    # a set-aside cut short: one item moved, the others not yet
    run = folder("moving", **{"records.jsonl": "old\n", "checkpoints/stage-1/state.json": "{}",
                              ".previous.tmp/summary.json": "old"})
    assert checkpoint.recover(run) and runs_of(run) == old
    # set aside, the new attempt without a stage of its own: back
    run = folder("unfinished", **{f".previous/{k}": v for k, v in old.items()}, **{"records.jsonl": "new\n"})
    assert checkpoint.recover(run) and runs_of(run) == old
    # set aside, the new attempt has a stage: the old work goes
    new = {"records.jsonl": "new\n", "checkpoints/stage-1/state.json": "{}"}
    run = folder("finished", **{f".previous/{k}": v for k, v in old.items()}, **new)
    assert not checkpoint.recover(run) and runs_of(run) == new
    # a restore cut short: what was moved back stays, the rest follows
    run = folder("restoring", **{"summary.json": "old", ".previous.restoring/records.jsonl": "old\n",
                                 ".previous.restoring/checkpoints/stage-1/state.json": "{}"})
    assert checkpoint.recover(run) and runs_of(run) == old
    # nothing set aside: nothing to do
    assert not checkpoint.recover(folder("plain", **new)) and runs_of(tmp_path / "plain") == new


def runs_of(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): p.read_text() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_set_aside_that_cannot_finish_moves_nothing(tmp_path, monkeypatch):
    from curlora_bench.core.errors import BenchError
    from curlora_bench.store import checkpoint

    run = tmp_path / "r"
    (run / "checkpoints" / "stage-1").mkdir(parents=True)
    (run / "summary.json").write_text("old")
    (run / "records.jsonl").write_text("old\n")
    before = runs_of(run)
    real, calls = os.replace, []

    def full(src, dst):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", full)
    with pytest.raises(BenchError, match=r"cannot set the earlier results aside \(No space left on device\)"):
        checkpoint.set_aside(run)
    assert runs_of(run) == before and not list(run.glob(".previous*"))


# ---- Ray: checked before submitting, one line for every failure, signals, nothing left over -----

@pytest.mark.parametrize(("args", "message"), [
    (["--gpus-per-run", "nan"], "--gpus-per-run: must be a number >= 0, got nan"),
    (["--gpus-per-run", "inf"], "--gpus-per-run: must be a number >= 0, got inf"),
    (["--gpus-per-run", "-1"], "--gpus-per-run: must be a number >= 0, got -1.0"),
    (["--gpus-per-run", "1.5"], "--gpus-per-run: 1.5 GPUs; give a fraction below 1"),
    (["--address", "not a host::"], "--address: 'not a host::' is not auto, HOST:PORT or ray://HOST:PORT"),
    (["--address", "127.0.0.1:0"], "--address: '127.0.0.1:0' is not auto"),
    (["--address", "host:99999"], "--address: 'host:99999' is not auto"),
    (["--workers", "0"], "--workers: must be >= 1"),
    (["--set", "execution.gpus_per_run=.nan"], "execution.gpus_per_run: expected a number, got nan"),
    (["--set", "execution.gpus_per_run=1.5"], "execution.gpus_per_run: 1.5 GPUs; give a fraction below 1"),
    (["--set", "execution.address='a b:1'"], "execution.address: 'a b:1' is not auto"),
    (["--set", "execution.max_runs=0"], "execution.max_runs: must be > 0"),
])
def test_executor_options_are_validated_as_the_config_is(args, message, toy_data, write_config, tmp_path, cli):
    code, _, err = cli("run", write_config(two_runs(toy_data)), "-o", tmp_path / "o", "--executor", "ray", *args)
    assert code == 2 and message in one_line(err), err
    assert not (tmp_path / "o").exists()


def test_resources_no_local_node_has_are_refused_before_ray_starts(toy_data, write_config, tmp_path, cli):
    import tempfile

    import torch

    path = write_config(two_runs(toy_data))
    cases = [(["--cpus-per-run", "100000"], "--cpus-per-run 100000: this machine has")]
    if not torch.cuda.is_available():
        cases += [(["--gpus-per-run", "1"], "--gpus-per-run 1: this machine has no GPU"),
                  (["--gpus-per-run", "0.5"], "--gpus-per-run 0.5: this machine has no GPU")]
    before = set(Path(tempfile.gettempdir()).glob("curlora-bench-ray-*"))
    for args, message in cases:
        start = time.perf_counter()
        code, _, err = cli("run", path, "-o", tmp_path / "o", "--executor", "ray", *args)
        assert code == 2 and message in one_line(err) and "never be scheduled" in err, err
        assert time.perf_counter() - start < 30  # refused up front, not waited on
    assert set(Path(tempfile.gettempdir()).glob("curlora-bench-ray-*")) == before  # Ray never started


def test_an_address_where_nothing_answers_is_one_line_at_once(toy_data, write_config, tmp_path, cli):
    pytest.importorskip("ray")
    port = free_port()
    start = time.perf_counter()
    code, _, err = cli("run", write_config(two_runs(toy_data)), "-o", tmp_path / "o", "--executor", "ray",
                       "--address", f"127.0.0.1:{port}")
    seconds = time.perf_counter() - start
    assert code == 2, err
    assert one_line(err) == (f"error: --address 127.0.0.1:{port}: nothing answers there (connection refused); is the "
                             "cluster started (`ray start --head` prints its address)?")
    assert seconds < 40, seconds  # the probe gives up after 10 s; a refused connection answers at once (ms)


def ray_processes(temp: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if temp in line]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_ray_sweep_in_one_line_and_puts_the_results_back(fresh_over, sig, code):
    """SIGINT/SIGTERM to the driver of a --fresh Ray sweep while its first run has its results set
    aside: one line, 130/143, the results back, no Ray process or temp folder left, no Ray
    start-up warning on the screen."""
    import tempfile

    pytest.importorskip("ray")
    cfg, out, before = fresh_over
    proc = subprocess.Popen([sys.executable, "-m", "curlora_bench", "run", str(cfg), "-o", str(out), "--executor",
                             "ray", "--workers", "1", "--fresh"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 240
    while not list(out.glob("*/seed-*/.previous")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    temps = [str(p) for p in Path(tempfile.gettempdir()).glob(f"curlora-bench-ray-{proc.pid}-*")]
    os.kill(proc.pid, sig)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert one_line(err).startswith(f"interrupted ({sig.name})")
    assert "Token authentication" not in stdout + err and "Started a local Ray instance" not in stdout + err
    assert runs_snapshot(out) == before and not list(out.glob("*/seed-*/.previous*"))
    assert len(temps) == 1 and not Path(temps[0]).exists()
    assert ray_processes(temps[0]) == []


@pytest.mark.slow
def test_ray_workers_killed_before_their_first_stage_get_their_old_results_back(fresh_over, toy_data, write_config):
    """Every worker SIGKILLed once its run set its results aside (the retry too): the sweep ends
    in one line (no run finished), the results are back, the workers' logs kept in ray-logs/."""
    import psutil

    pytest.importorskip("ray")
    _, out, before = fresh_over
    cfg = write_config(two_runs(toy_data, methods=[{"method": "lora", "rank": 2}]), "one.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "curlora_bench", "run", str(cfg), "-o", str(out), "--executor",
                             "ray", "--workers", "1", "--fresh"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    kills, deadline = 0, time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if list(out.glob("lora-r2/seed-0/.previous")):
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if child.cmdline()[:1] and child.cmdline()[0].startswith("ray::_run_remote"):
                        child.kill()
                        kills += 1
                except (psutil.Error, IndexError):
                    pass
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert kills >= 2, err[-2000:]  # the run and Ray's retry of it
    assert proc.returncode == 2 and one_line(err) == \
        "error: no run of t finished (the lines above say why); rerun the same command to resume them"
    assert runs_snapshot(out) == before and not list(out.glob("*/seed-*/.previous*"))
    assert list((out / "ray-logs").glob("*worker*"))


@pytest.mark.slow
def test_a_joined_cluster_is_checked_before_any_run_is_submitted(toy_data, write_config, tmp_path):
    """A head of 1 CPU and no GPU (token authentication off on both sides, on 127.0.0.1 only):
    more CPUs or any GPU per run is one line, exit 2, nothing submitted; the cluster lives on."""
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("the `ray` command is not beside this Python")
    import tempfile

    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="rh-"))  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--num-gpus=0", "--object-store-memory=100000000", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.3)
        path = write_config(two_runs(toy_data))
        for args, message in ((["--cpus-per-run", "2"], "--cpus-per-run 2: no node of the cluster at"),
                              (["--gpus-per-run", "1"], "--gpus-per-run 1: no node of the cluster at")):
            done = subprocess.run([sys.executable, "-m", "curlora_bench", "run", str(path), "-o", str(tmp_path / "o"),
                                   "--executor", "ray", "--address", f"127.0.0.1:{port}", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=180)
            assert done.returncode == 2 and message in one_line(done.stderr), done.stderr[-2000:]
            assert not list((tmp_path / "o").glob("*/seed-*"))
        assert head.poll() is None  # someone else's cluster: joined and left, never stopped
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head this test started (its own session), nothing else
        head.wait()
        deadline = time.monotonic() + 30
        while ray_processes(str(temp)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(temp, ignore_errors=True)
    assert ray_processes(str(temp)) == []


# ---- trackers ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["unknown scheme", "under a file", "server not answering"])
def test_a_bad_tracking_uri_is_one_line_before_any_run(case, toy_data, write_config, tmp_path, cli, monkeypatch):
    pytest.importorskip("mlflow")
    (tmp_path / "a-file").write_text("")
    uri = {"unknown scheme": "bogus://somewhere/x",
           "under a file": f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}",
           "server not answering": f"http://127.0.0.1:{free_port()}"}[case]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.perf_counter()
    code, _, err = cli("run", write_config(two_runs(toy_data)), "-o", tmp_path / "o", "--log", "mlflow")
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"error: MLFLOW_TRACKING_URI={uri}: ")
    assert {"unknown scheme": "unknown scheme 'bogus'", "under a file": "is not a folder this process can write",
            "server not answering": "cannot open the tracking store"}[case] in line
    assert time.perf_counter() - start < 60
    assert not list((tmp_path / "o").glob("*/seed-*")) and not (tmp_path / "o" / ".lock").exists()


def test_a_quote_in_the_output_path_reaches_no_mlflow_filter_string(toy_data, write_config, tmp_path, cli, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "it's here"
    path = write_config(two_runs(toy_data, methods=[{"method": "lora", "rank": 2}]))
    for extra in ([], ["--fresh"]):  # the second run replaces the first's MLflow run: found by run key
        code, _, err = cli("run", path, "-o", out, "--log", "mlflow", *extra)
        assert code == 0, err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["curlora_folder"] == str((out / "lora-r2" / "seed-0").resolve())


# ---- sizes: counted before anything is expanded ------------------------------------------------

@pytest.mark.parametrize(("what", "message"), [
    ("grid 10**6", "methods[0].grid: 1,000,000 runs (1,000,000 method points), more than execution.max_runs (1,000)"),
    ("grid 10**9", "methods[0].grid: 1,000,000,000 runs (1,000,000,000 method points), more than"),
    ("orders 10**8 of 12 tasks", "orders: 100,000,000 runs (1 method point x 100,000,000 task orders), more than"),
    ("grid x orders x seeds", "methods: 3,000 runs (10 method points x 100 task orders x 3 seeds), more than"),
])
def test_sizes_are_counted_before_anything_is_expanded(what, message, toy_data, write_config):
    import tracemalloc

    from curlora_bench.config.loading import load_config
    from curlora_bench.core.errors import BenchError

    cfg = two_runs(toy_data, methods=[{"method": "lora"}])
    task = cfg["tasks"][0]
    if what.startswith("grid 10"):
        n = 100 if what == "grid 10**6" else 1000
        cfg["methods"] = [{"method": "lora", "grid": {"rank": list(range(1, n + 1)), "alpha": list(range(1, n + 1)),
                                                      "train.epochs": list(range(1, n + 1))}}]
    elif what.startswith("orders"):
        cfg["tasks"], cfg["orders"] = [dict(task, name=f"t{i}") for i in range(12)], 10**8
    else:
        cfg["tasks"], cfg["orders"], cfg["seeds"] = [dict(task, name=f"t{i}") for i in range(6)], 100, [0, 1, 2]
        cfg["methods"] = [{"method": "lora", "grid": {"rank": list(range(1, 11))}}]
    path = write_config(cfg)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(BenchError) as caught:
        load_config(path)
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert message in str(caught.value) and "--max-runs" in str(caught.value)
    assert seconds < 30 and peak < 100 * 2**20, (seconds, peak)  # no hang, no gigabytes (about 2 s, 4 MiB)


def test_the_limit_is_overridable(toy_data, write_config, tmp_path, cli):
    from curlora_bench.config.loading import load_config

    cfg = two_runs(toy_data, methods=[{"method": "lora", "rank": 2, "grid": {"train.lr": [1e-3, 2e-3, 3e-3]}}])
    path = write_config(cfg)
    code, _, err = cli("run", path, "-o", tmp_path / "o", "--max-runs", "2")
    assert code == 2 and "methods[0].grid: 3 runs (3 method points), more than execution.max_runs (2)" in one_line(err)
    assert not (tmp_path / "o").exists()
    assert len(load_config(path, ["execution.max_runs=3"])[0].methods) == 3


def test_a_large_grid_makes_its_specs_in_linear_time(toy_data, write_config, tmp_path):
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_specs

    n = 3000  # before: every spec resolved the whole config again (quadratic: minutes)
    cfg = two_runs(toy_data, methods=[{"method": "lora", "rank": 2, "grid": {"alpha": list(range(1, n + 1))}}])
    start = time.perf_counter()
    loaded = load_config(write_config(cfg), [f"execution.max_runs={n}"])[0]
    specs = run_specs(loaded, tmp_path / "o")
    seconds = time.perf_counter() - start
    assert len(specs) == n and len({s.identity.run_key for s in specs}) == n
    assert specs[0].config is specs[-1].config  # one resolved config, shared
    assert len(specs[5].alone()["config"]["methods"]) == 1 and specs[5].alone()["origin"] == \
        "methods[0] (grid point alpha=6)"
    assert seconds < 60, seconds


def test_orders_close_to_every_permutation_are_drawn_quickly():
    from curlora_bench.config.experiment import task_orders

    start = time.perf_counter()
    orders = task_orders(120, ["a", "b", "c", "d", "e"], 0)
    assert len({tuple(o) for o in orders}) == 120 and time.perf_counter() - start < 5


# ---- the smaller items ----------------------------------------------------------------------

def test_errors_after_grid_expansion_name_the_entry_the_user_wrote(toy_data, write_config, tmp_path, cli):
    cfg = two_runs(toy_data, methods=[{"method": "lora", "grid": {"train.lr": [1e-3, 0.001]}}])
    code, _, err = cli("run", write_config(cfg), "-o", tmp_path / "o")
    assert code == 2
    assert one_line(err) == ("error: methods[0].grid: its points train.lr=1e-3 and train.lr=1e-3 both get the label "
                             "'lora-r8-lr1e-3'; give the grid distinct values (or set `label:` per entry)")
    cfg = two_runs(toy_data, methods=[{"method": "curlora", "grid": {"rank": [2, 100000]}}])
    code, _, err = cli("run", write_config(cfg, "big.yaml"), "-o", tmp_path / "o")
    assert code == 2
    line = one_line(err)
    assert line.startswith("error: methods[0] (grid point rank=100000).rank: 100000 exceeds") and "methods[1]" not in line


def test_a_lock_that_cannot_be_written_is_one_line_and_left_nowhere(toy_data, write_config, tmp_path, cli, monkeypatch):
    from curlora_bench.store import folders

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folders.os, "write", full)
    code, _, err = cli("run", write_config(two_runs(toy_data)), "-o", tmp_path / "o")
    assert code == 2
    assert one_line(err) == f"error: {tmp_path / 'o' / '.lock'}: cannot write the lock file (No space left on device)"
    assert not (tmp_path / "o" / ".lock").exists()


def test_a_writer_that_cannot_flush_at_close_keeps_the_error_that_names_the_file(tmp_path):
    from curlora_bench.store.folders import RecordWriter

    writer = RecordWriter(tmp_path / "records.jsonl")
    writer._f.close()

    class Full:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return 0

        close = flush

    writer._f = Full()
    from curlora_bench.core.errors import BenchError
    from curlora_bench.store.schema import Record

    with pytest.raises(BenchError, match="records.jsonl: cannot append a line"):
        writer.write(Record(0, None, "c", "perplexity", 1.0, 1))
    writer.close()  # what it could not flush was reported by the write, not a second error
