"""`--fresh` sets each run's results aside only as it starts and puts them back unless it
finished a stage: at every interruption point (a signal right after the set-aside, mid-stage, in
a later run, between two renames of the set-aside, during the put-back; an error; kill -9 of the
driver, inside the set-aside, inside the restore; Ray workers killed; a signal to a Ray driver)."""

from __future__ import annotations

import errno
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

from tests.conftest import (
    ROOT,
    free_port,
    held_ray_workers,
    one_line,
    run_in,
    run_killed,
    runs_snapshot,
    signal_at_step,
    two_runs,
)

# ---- --fresh: each run's results set aside as it starts, back unless it finished a stage --------

@pytest.fixture(scope="module")
def done(tmp_path_factory, toy_data):
    d = tmp_path_factory.mktemp("done")
    return d / "exp.yaml", run_in(d, two_runs(toy_data))


@pytest.fixture
def fresh_over(done, tmp_path):
    """A copy of the finished folder, its snapshot, and the config."""
    cfg, out = done
    shutil.copytree(out, tmp_path / "out")
    return cfg, tmp_path / "out", runs_snapshot(tmp_path / "out")


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

# ---- --fresh: the set-aside is not cut by a signal that another thread receives ---------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_deferred_block_holds_a_signal_another_thread_receives(sig):
    """With a second thread alive (torch's, a tracker's: every real run has them) the kernel hands a
    process-directed signal to that thread when the main thread blocks it, and CPython ran the
    handler mid-block: the moves of a set-aside were cut between two renames. Now the signal is
    noted and raised once the block is over, every time."""
    import threading

    from curlora_bench.core.errors import Interrupted, signals_deferred, stop_on_signals

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, args=(30,), daemon=True)
    other.start()
    cut, raised = 0, 0
    try:
        for _ in range(20):
            finished = False
            try:
                with stop_on_signals(), signals_deferred():
                    os.kill(os.getpid(), sig)
                    for _ in range(100_000):  # bytecodes at which a handler could run
                        pass
                    finished = True
            except Interrupted as exc:
                raised += exc.signum == sig
            cut += not finished
    finally:
        stop.set()
    assert (cut, raised) == (0, 20)


def contents(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def busy_thread():
    """A second thread keeping a core busy while the test runs (a real run has threads: torch's, a
    tracker's), so the kernel may hand a signal to it rather than to the main thread."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=lambda: [sum(range(1000)) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def signal_at_move(monkeypatch, at: int, sig: int) -> None:
    """This process gets `sig` at the `at`-th rename into a run's `.previous/` (mid set-aside)."""
    replace, moves = os.replace, []

    def counting(a, b, *rest, **kw):
        if ".previous" in str(b) and not str(b).endswith(".previous"):
            moves.append(1)
            if len(moves) == at:
                os.kill(os.getpid(), sig)
        return replace(a, b, *rest, **kw)

    monkeypatch.setattr(os, "replace", counting)


@pytest.mark.parametrize("at", [1, 2, 3])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_the_middle_of_the_set_aside_leaves_every_run_as_it_was(results, cli, monkeypatch, busy_thread,
                                                                           sig, code, at):
    """`run --fresh` on a finished experiment, signalled between two renames of the first run's
    set-aside while another thread keeps a core busy: one line, 130/143, and every run's files
    exactly as they were (nothing left in `.previous/`)."""
    before = contents(results)
    signal_at_move(monkeypatch, at, sig)
    rc, _, err = cli("run", results / "config.yaml", "--output", results, "--fresh")
    assert rc == code, err
    assert one_line(err).startswith("interrupted"), err
    assert contents(results) == before


def test_a_second_signal_during_the_put_back_waits_until_everything_is_back(results, cli, monkeypatch, busy_thread):
    """SIGINT mid set-aside, then SIGTERM as the results are being put back (a second Ctrl-C, a
    supervisor's SIGTERM): the put-back finishes first, then the process ends in one line."""
    from curlora_bench.store import checkpoint

    before = contents(results)
    signal_at_move(monkeypatch, 5, signal.SIGINT)
    restore = checkpoint.restore_previous

    def signalling_restore(run):
        os.kill(os.getpid(), signal.SIGTERM)
        return restore(run)

    monkeypatch.setattr(checkpoint, "restore_previous", signalling_restore)
    rc, _, err = cli("run", results / "config.yaml", "--output", results, "--fresh")
    assert rc in (130, 143) and one_line(err).startswith("interrupted"), err
    assert contents(results) == before

def ray_processes(temp: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if temp in line]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_ray_sweep_in_one_line_and_puts_the_results_back(fresh_over, sig, code, tmp_path):
    """SIGINT/SIGTERM to the driver of a --fresh Ray sweep while its first run has its results set
    aside: one line, 130/143, the results back, no Ray process or temp folder left, no Ray
    start-up warning on the screen."""
    import tempfile

    pytest.importorskip("ray")
    cfg, out, before = fresh_over
    proc = subprocess.Popen([sys.executable, "-m", "curlora_bench", "run", str(cfg), "-o", str(out), "--executor",
                             "ray", "--workers", "1", "--fresh"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=held_ray_workers(tmp_path / "hold"))
    deadline = time.monotonic() + 240
    while not (tmp_path / "hold" / "held").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.glob("*/seed-*/.previous")), "the first run did not set its results aside"
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
def test_ray_workers_killed_before_their_first_stage_get_their_old_results_back(fresh_over, toy_data, write_config,
                                                                              tmp_path):
    """Every worker SIGKILLed once its run set its results aside (the retry too): the sweep ends
    in one line (no run finished), the results are back, the workers' logs kept in ray-logs/."""
    import psutil

    pytest.importorskip("ray")
    _, out, before = fresh_over
    cfg = write_config(two_runs(toy_data, methods=[{"method": "lora", "rank": 2}]), "one.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "curlora_bench", "run", str(cfg), "-o", str(out), "--executor",
                             "ray", "--workers", "1", "--fresh"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=held_ray_workers(tmp_path / "hold"))
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
