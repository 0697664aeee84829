"""Shared fixtures: tiny models built in the test, toy CSV tasks in a temp dir, a CLI runner."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


# Seconds each file took in one measured suite run (only the order below reads them; regenerate
# with `python scripts/file_seconds.py`, which runs the suite once with --durations=0).
FILE_SECONDS = json.loads((Path(__file__).with_name("file_seconds.json")).read_text())


def pytest_configure(config):
    """Under xdist, hand out files in the order collection leaves them (longest first, below)
    instead of xdist's default of most tests first, which put the two-test end-to-end file last."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The longest files first, so the workers' last files are short ones and both finish together
    (longest job first); a file not yet measured counts 0.5 s a test, 10 s a slow one. A file's
    own tests keep their order."""
    guess: dict[str, float] = {}
    for item in items:
        guess[item.path.name] = guess.get(item.path.name, 0) + (10 if item.get_closest_marker("slow") else 0.5)
    seconds = {name: FILE_SECONDS.get(name, g) for name, g in guess.items()}
    items.sort(key=lambda item: -seconds[item.path.name])  # stable: each file's tests in their own order


def pytest_collection_finish(session):
    """Freeze what collection built (torch, transformers, datasets, the test modules: ~470k
    objects) out of the garbage collector's reach. A run calls `gc.collect` between its phases
    (`core.env.release_memory`), which then walks only what tests made since, instead of taking
    ~0.5 s each time over objects that live as long as the process; nothing frozen is garbage."""
    try:  # Hypothesis, where installed, registers PRNGs on import and warns if it sees no referrer,
        import hypothesis  # noqa: F401  which frozen referrers hide: let it look first
    except ImportError:
        pass
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _freeze_what_the_test_left():
    """The same after each test: what it imported and kept (Ray, MLflow, TensorBoard: some
    hundred thousand objects) would otherwise be walked by every later `gc.collect` in this
    worker, making every later run several times slower (measured: a tiny run 1.5 s -> 6.9 s
    after the Ray sweep test). Garbage is collected first, so nothing unreachable is frozen; the
    collection walks only what this test made, a few milliseconds."""
    yield
    gc.collect()
    gc.freeze()


# the CLI in a child process that SIGKILLs itself at the KILL_AT_STEP-th optimizer step
_KILLER = """
import os, signal, sys, torch
from curlora_bench.cli import main
calls = 0
step = torch.optim.AdamW.step
def killing_step(self, *a, **k):
    global calls
    calls += 1
    if calls == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *a, **k)
torch.optim.AdamW.step = killing_step
{setup}
sys.argv = ["curlora-bench", *sys.argv[1:]]
main()
"""


def run_killed(cfg_path: Path, out: Path, kill_at: int, setup: str = "", args: tuple[str, ...] = (), **env: str) -> None:
    """`curlora-bench run cfg_path --output out [args]`, SIGKILLed at optimizer step `kill_at`
    (counted over the whole experiment); `setup` is extra code the child runs before the CLI
    (it may SIGKILL the child elsewhere)."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER.format(setup=setup), "run", str(cfg_path), "--output", str(out), *args],
        env={**os.environ, "KILL_AT_STEP": str(kill_at), "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr


# a Ray worker's first optimizer step waits (up to ten minutes) instead of training: loaded by
# every Python process through `sitecustomize` on PYTHONPATH, it wraps AdamW.step as torch.optim
# loads, in Ray's worker processes only (the driver never trains in a Ray sweep)
_HOLD = """
import importlib.abc, importlib.util, pathlib, sys, time

class _Hold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch.optim.adamw" or not any("default_worker.py" in a for a in sys.argv):
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            def held(self, *a, **k):
                pathlib.Path(__file__).with_name("held").touch()
                time.sleep(600)
            module.AdamW.step = held

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Hold())
"""


def held_ray_workers(folder: Path) -> dict[str, str]:
    """The environment for a CLI child whose Ray workers never finish a stage: each blocks at its
    first optimizer step, so a test's signal or kill lands before any stage can finish, however
    busy the cores are (a race the tiny runs otherwise lose under load). A worker that got there
    leaves `folder/held`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HOLD)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


class Crash(BaseException):
    """The process dying, stood in for in this process: raised from an optimizer step, it passes
    every `except Exception` of the package (cleanup in `finally` still runs, which a SIGKILL
    skips: `run_killed` is the real thing, tested once in tests/test_resume.py)."""


def crash_at_steps(monkeypatch, *steps: int) -> None:
    """`Crash` at each of `steps`, optimizer steps counted over this process from now on (before
    the step is taken, as `run_killed` kills)."""
    import torch

    real, calls = torch.optim.AdamW.step, []

    def crashing(self, *a, **k):
        calls.append(1)
        if len(calls) in steps:
            raise Crash(len(calls))
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", crashing)


def crashed_and_resumed(cli, monkeypatch, cfg_path: Path, out: Path, *steps: int) -> str:
    """`run cfg_path --output out`, crashed at each of `steps` (see `crash_at_steps`) and run again
    until it finishes; every run after a crash must resume after stage 1. Returns what they printed."""
    crash_at_steps(monkeypatch, *steps)
    for _ in steps:
        with pytest.raises(Crash):
            cli("run", cfg_path, "--output", out)
    code, stdout, err = cli("run", cfg_path, "--output", out)  # with what the crashed runs printed
    assert code == 0, err
    assert stdout.count("resuming after stage 1/2") == len(steps), stdout
    return stdout


def cut_to(cfg_path: Path, method: dict, folder: Path) -> Path:
    """`cfg_path`'s experiment with `method` alone, written to folder/exp.yaml."""
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["methods"] = [method]
    (folder / "exp.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder / "exp.yaml"


def signal_at_step(monkeypatch, step: int, sig: int) -> None:
    """This process gets `sig` at the `step`-th optimizer step from now on."""
    import torch

    real, calls = torch.optim.AdamW.step, []

    def signalling(self, *a, **k):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), sig)
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", signalling)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    import make_toy_data

    out = tmp_path_factory.mktemp("toy")
    make_toy_data.main(out, n_train=48, n_eval=24)
    return out


def tiny_config(data: Path, model: str = "tiny-gpt2", **extra) -> dict:
    cfg = {
        "name": "t",
        "seeds": [0],
        "device": "cpu",
        "model": model,
        "methods": [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}],
        "tasks": [
            {"name": "pairs", "format": "csv", "train": str(data / "pairs_train.csv"),
             "eval": str(data / "pairs_dev.csv"), "text": ["sentence1", "sentence2"], "label": "label"},
            {"name": "polarity", "format": "csv", "train": str(data / "polarity_train.csv"),
             "eval": str(data / "polarity_dev.csv"), "text": ["text"], "label": "label"},
        ],
        "perplexity": {"file": str(data / "corpus.txt"), "max_tokens": 600, "window": 128, "stride": 128},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "max_length": 64, "limit": 48, "warmup_steps": 1},
        "eval": {"batch_size": 32, "limit": 24},
    }
    cfg.update(extra)
    return cfg


def run_in(folder: Path, cfg: dict) -> Path:
    """`cfg` written to folder/exp.yaml and run to the end into folder/out (in this process)."""
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment.driver import run_experiment

    (folder / "exp.yaml").write_text(yaml.safe_dump(cfg))
    run_experiment(load_config(folder / "exp.yaml")[0], folder / "out")
    return folder / "out"


def records(run: Path) -> list[dict]:
    """A run folder's records.jsonl, line by line."""
    return [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def runs_snapshot(folder: Path) -> dict[str, str]:
    """Every file of every run folder (what --fresh may set aside), by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*/seed-*/**/*")) if p.is_file()}


def one_line(err: str) -> str:
    """The one line of an error output (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:  # bound and released: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_runs(toy_data: Path, methods=None) -> dict:
    """Two methods, one task of 3 optimizer steps each, no perplexity: the fastest real runs."""
    cfg = tiny_config(toy_data, methods=methods or [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}],
                      perplexity=None)
    cfg["tasks"] = cfg["tasks"][:1]
    return cfg


THREE_METHODS = [{"method": "lora", "rank": 2}, {"method": "curlora", "rank": 2}, {"method": "full"}]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, toy_data) -> tuple[Path, Path]:
    """(config, results folder) of one uninterrupted tiny run of LoRA, CURLoRA and full fine-tuning
    (2 stages each), made once per test process; tests that change it work on a copy."""
    folder = tmp_path_factory.mktemp("finished-run")
    return folder / "exp.yaml", run_in(folder, tiny_config(toy_data, methods=THREE_METHODS))


@pytest.fixture
def results(finished_run, tmp_path) -> Path:
    """A copy of `finished_run`'s results folder that the test may change."""
    import shutil

    shutil.copytree(finished_run[1], tmp_path / "out")
    return tmp_path / "out"


class ReachedRun(Exception):
    """A config got past every check to the run (stubbed out by `stubbed_results`)."""


@pytest.fixture
def stubbed_results(tmp_path, toy_data, monkeypatch) -> Path:
    """A results folder of the tiny one-method config, with files in it, and the run stubbed out:
    a bad-input case must be refused before it reaches `run_one` (which raises `ReachedRun`), and
    leave this folder as it was. The unbroken config gets through to the run, not to a mismatch."""
    from curlora_bench.config.experiment import resolved_dict
    from curlora_bench.config.loading import load_config
    from curlora_bench.experiment import driver

    def no_run(*args, **kwargs):
        raise ReachedRun

    monkeypatch.setattr(driver, "run_one", no_run)
    monkeypatch.setattr(driver, "run_ray", no_run)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(toy_data, methods=[{"method": "lora", "rank": 2}])))
    out = tmp_path / "out"
    (out / "lora-r2" / "seed-0").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved_dict(load_config(base)[0]), sort_keys=False))
    (out / "lora-r2" / "seed-0" / "records.jsonl").write_text('{"stage": 0}\n')
    return out


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty asset cache (CURLORA_BENCH_CACHE) for a bad-input test: the input must be
    refused before any asset is fetched or built, so the cache is still empty afterwards (a test
    on a brand-new machine sees what this one sees)."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("CURLORA_BENCH_CACHE", str(cache))
    yield cache
    left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert not left, f"bad input filled the asset cache before it was refused: {left}"


@pytest.fixture
def write_config(tmp_path):
    def _write(cfg: dict, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return _write


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `curlora-bench ARGS` in-process through main(); return (exit code, stdout, stderr)."""
    from curlora_bench.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["curlora-bench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


def train_one(model, heads, task, cfg, batching, protocol, seed: int = 0, on_step=None, execution=None):
    """Train the stage that learns `task` (its head already in `heads`) through the run's own loop."""
    from curlora_bench.config.experiment import ExecutionConfig
    from curlora_bench.config.regimes import REGIMES
    from curlora_bench.run.context import StageContext
    from curlora_bench.run.train import schedule_length, train_stage

    (stage,) = REGIMES.get("sequential").stages([task.name])
    ctx = StageContext(model, [], None, heads, stage, [task], {task.name: task}, cfg, execution or ExecutionConfig(),
                       batching, protocol, seed, "test")
    return train_stage(ctx, [heads.heads[task.name]], [], schedule_length([task], cfg, protocol), on_step)
