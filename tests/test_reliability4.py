"""Reliability, round four: bad input refused before any work (on an empty asset cache), a signal
at any moment of start-up is one line, and the surfaces added last round tried with hostile input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, tiny_config


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# ---- a signal while the command starts (imports, config, data) ---------------------------------

def _command() -> list[str]:
    script = shutil.which("curlora-bench")  # the console script, as a user starts it
    return [script] if script else [sys.executable, "-m", "curlora_bench"]


def wait_for_handlers(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the child catches SIGTERM: the package's start-up handler is in place (what comes
    before it is Python's own start-up, `site` and its .pth files, which no package can reach)."""
    status = f"/proc/{proc.pid}/status"
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        with open(status) as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if caught >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.002)
    raise AssertionError("the child never installed a SIGTERM handler")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the child's caught signals from /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.8])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("how", ["script", "module"])
def test_a_signal_during_start_up_is_one_line(toy_data, tmp_path, sig, code, delay, how):
    """SIGINT/SIGTERM while the CLI imports (typer, torch), reads the config or loads data: one line
    and 128 + the signal number, never a traceback, and no results folder left half-made."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(toy_data)))
    cmd = _command() if how == "script" else [sys.executable, "-m", "curlora_bench"]
    if how == "script" and cmd[0] == sys.executable:
        pytest.skip("no console script installed")
    proc = subprocess.Popen([*cmd, "run", str(path), "--output", str(tmp_path / "out")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    wait_for_handlers(proc)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert one_line(err).startswith("interrupted"), err


# ---- the legacy `joint` spelling: one rule (config.legacy) -----------------------------------------

LORA = {"method": "lora", "rank": 2}


@pytest.mark.parametrize(("entry", "message"), [
    ({"method": "joint", "adapter": {"method": "joint", "adapter": LORA}},
     "methods[0].adapter.method: a joint entry inside a joint entry"),
    ({"method": "joint", "adapter": {"method": "joint"}}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "adapter": "joint"}, "methods[0].adapter.method: a joint entry inside"),
    ({"method": "joint", "regime": "sequential", "adapter": LORA}, "methods[0].regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "regime": "sequential"}},
     "methods[0].adapter.regime: 'sequential' contradicts"),
    ({"method": "joint", "adapter": {**LORA, "train": {"lr": 0.1}}}, "methods[0].adapter.train: set it on the joint"),
    ({"method": "joint", "adapter": {"rank": 2}}, "methods[0].adapter: expected a mapping with a 'method' key"),
    ({"method": "joint", "adapter": LORA, "rank": 4}, "methods[0].rank: unknown key of a joint entry"),
])
def test_a_nested_or_contradictory_joint_is_one_line_naming_the_field(entry, message, toy_data, write_config, cli,
                                                                      tmp_path, empty_cache):
    path = write_config(tiny_config(toy_data, methods=[entry]))
    code, _, err = cli("run", path, "--output", tmp_path / "out")
    assert code == 2 and message in one_line(err), err
    assert not (tmp_path / "out").exists()


def test_the_legacy_joint_reads_alike_in_configs_and_summaries(toy_data, write_config):
    from curlora_bench.config.legacy import unwrap_joint, upgrade_summary
    from curlora_bench.config.loading import load_config

    legacy = {"method": "joint", "label": "j", "train": {"lr": 0.01}, "adapter": {**LORA, "label": "inner"}}
    assert unwrap_joint(legacy, "m") == {**LORA, "regime": "joint", "label": "j", "train": {"lr": 0.01}}
    a, _ = load_config(write_config(tiny_config(toy_data, methods=[legacy]), "a.yaml"))
    b, _ = load_config(write_config(tiny_config(toy_data, methods=[{**LORA, "regime": "joint", "label": "j",
                                                                     "train": {"lr": 0.01}}]), "b.yaml"))
    assert a.identity(a.methods[0], 0) == b.identity(b.methods[0], 0)
    stored = upgrade_summary({"method": legacy})
    assert stored["regime"] == "joint" and stored["method"] == {**LORA, "label": "j", "train": {"lr": 0.01},
                                                                "regime": "joint"}
    assert upgrade_summary({"method": LORA}) == {"method": LORA}  # anything else as it is
