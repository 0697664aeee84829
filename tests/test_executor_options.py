"""Executor and tracker options checked before anything runs, one line each: Ray options as the
config's are, resources no node has, an address where nothing answers, a bad MLflow store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import (
    free_port,
    one_line,
    two_runs,
)

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
