"""experiment/cluster.py without starting Ray: its checks, address parsing, the stale temp folders
and the join path, on a stand-in for the `ray` module (the real cluster: tests/test_sweep.py and
the slow tests of tests/test_set_aside.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from curlora_bench.config.execution import ExecutionConfig
from curlora_bench.core.errors import BenchError, SignalNote
from curlora_bench.experiment import cluster


class FakeRay:
    """What RayCluster and check_cluster call on `ray`, recorded."""

    def __init__(self, nodes=(), fail: Exception | None = None, says: str = "") -> None:
        self._nodes, self.fail, self.says = list(nodes), fail, says
        self.calls: list[str] = []
        self.initialized = False

    def init(self, **kwargs):
        self.calls.append(f"init {sorted(kwargs)}")
        if self.says:
            os.write(2, self.says.encode())  # what Ray's C++ logging would write
        if self.fail:
            raise self.fail
        self.initialized = True

    def nodes(self):
        return self._nodes

    def is_initialized(self):
        return self.initialized

    def shutdown(self):
        self.calls.append("shutdown")
        self.initialized = False


def node(cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("address", "expected"), [
    ("h:1", ("h", 1)),
    ("ray://10.0.0.7:6379", ("10.0.0.7", 6379)),
    ("[::1]:6379", ("::1", 6379)),
    ("head.example:10001", ("head.example", 10001)),
])
def test_host_port_of_an_address(address, expected):
    assert cluster._host_port(address) == expected


def test_probe_names_the_address_when_nothing_answers():
    port = closed_port()
    with pytest.raises(BenchError, match=rf"^execution.address 127.0.0.1:{port}: nothing answers there \("):
        cluster.probe(f"127.0.0.1:{port}", "execution.address")


def test_probe_passes_where_something_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cluster.probe(f"127.0.0.1:{s.getsockname()[1]}")


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(BenchError, match=r"--executor ray needs Ray: pip install"):
        cluster.ray_available()


@pytest.fixture
def no_ray(monkeypatch):
    """preflight and RayCluster with `ray` stood in for (nothing is imported or started)."""
    fake = FakeRay()
    monkeypatch.setattr(cluster, "ray_available", lambda: fake)
    return fake


def test_preflight_refuses_more_cpus_than_this_machine_has(no_ray):
    cores = len(os.sched_getaffinity(0))
    ex = ExecutionConfig(executor="ray", cpus_per_run=cores + 1, flags=("cpus_per_run",))
    with pytest.raises(BenchError, match=rf"^--cpus-per-run {cores + 1}: this machine has {cores} cores; a run "):
        cluster.preflight(ex)


@pytest.mark.parametrize(("gpus", "says"), [(0, "has no GPU that torch can use"), (2, "has 2 GPUs")])
def test_preflight_refuses_more_gpus_than_this_machine_has(no_ray, monkeypatch, gpus, says):
    monkeypatch.setattr(cluster, "local_gpus", lambda: gpus)
    with pytest.raises(BenchError, match=rf"^--gpus-per-run 2.5: this machine {says}; a run could never"):
        cluster.preflight(ExecutionConfig(executor="ray", gpus_per_run=2.5, flags=("gpus_per_run",)))
    cluster.preflight(ExecutionConfig(executor="ray", gpus_per_run=float(gpus)))  # as many as there are: accepted


def test_preflight_at_an_address_probes_it_and_checks_nothing_local(no_ray, monkeypatch):
    probed = []
    monkeypatch.setattr(cluster, "probe", lambda address, name: probed.append((address, name)))
    monkeypatch.setattr(cluster, "local_gpus", lambda: 0)
    cluster.preflight(ExecutionConfig(executor="ray", address="h:1", gpus_per_run=4, flags=("address",)))
    assert probed == [("h:1", "--address")]


def test_check_cluster_compares_with_the_largest_live_node():
    ray = FakeRay([node(2), node(4, 1), node(64, 8, alive=False)])
    ex = ExecutionConfig(executor="ray", address="h:1", gpus_per_run=1, flags=("gpus_per_run", "cpus_per_run"))
    cluster.check_cluster(ray, ex, 4)  # the 4-CPU node with a GPU takes it
    with pytest.raises(BenchError, match=r"^--cpus-per-run 5: no node of the cluster at h:1 has that many "
                                         r"CPUs \(the most: 4\); a run could never be scheduled$"):
        cluster.check_cluster(ray, ex, 5)
    with pytest.raises(BenchError, match=r"^--gpus-per-run 2: no node .* many GPUs \(the most: 1\)"):
        cluster.check_cluster(ray, ExecutionConfig(executor="ray", address="h:1", gpus_per_run=2, flags=("gpus_per_run",)), 1)
    with pytest.raises(BenchError, match=r"many GPUs \(it has none\)"):
        cluster.check_cluster(FakeRay([node(8)]), ex, 1)
    with pytest.raises(BenchError, match=r"the most: 0\)"):
        cluster.check_cluster(FakeRay([]), ex, 1)


def test_stale_temp_folders_of_dead_drivers_are_removed_and_no_other(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster.tempfile, "gettempdir", lambda: str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    names = [f"{cluster.TEMP_PREFIX}{gone.pid}-a", f"{cluster.TEMP_PREFIX}{os.getpid()}-b",
             f"{cluster.TEMP_PREFIX}{os.getppid()}-c", f"{cluster.TEMP_PREFIX}abc-d", "other-1-e"]
    for name in names:
        (tmp_path / name).mkdir()
    cluster.remove_stale_temp_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_joining_a_cluster_too_small_for_a_run_shuts_the_connection_again(no_ray):
    no_ray._nodes = [node(1)]
    ex = ExecutionConfig(executor="ray", address="h:1", cpus_per_run=2, flags=("cpus_per_run",))
    with pytest.raises(BenchError, match=r"cpus-per-run 2: no node of the cluster at h:1"):
        cluster.RayCluster(ex, SignalNote()).__enter__()
    assert no_ray.calls == ["init ['address', 'log_to_driver', 'logging_level']", "shutdown"]
    assert not no_ray.initialized


def test_joining_a_cluster_that_fits_returns_ray_and_exits_clean(no_ray):
    no_ray._nodes = [node(4)]
    with cluster.RayCluster(ExecutionConfig(executor="ray", address="h:1"), SignalNote()) as ray:
        assert ray is no_ray and ray.initialized
    assert no_ray.calls[-1] == "shutdown"


@pytest.mark.parametrize(("says", "message"), [
    ("", "--address h:1: Ray did not start (no route)"),
    ("... InvalidAuthToken ...", "--address h:1: the cluster refused this driver's token"),
])
def test_a_failed_start_is_one_line(no_ray, says, message):
    no_ray.fail, no_ray.says = ConnectionError("no route\nmore detail"), says
    ex = ExecutionConfig(executor="ray", address="h:1", flags=("address",))
    with pytest.raises(BenchError) as info:
        cluster.RayCluster(ex, SignalNote()).__enter__()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_signal_during_the_start_stops_it_after_cleaning_up(no_ray):
    from curlora_bench.core.errors import Interrupted

    no_ray._nodes = [node(4)]
    note = SignalNote()
    note.signum = 15  # arrived while ray.init ran
    note.install = lambda: None  # the test's own handlers stay
    with pytest.raises(Interrupted):
        cluster.RayCluster(ExecutionConfig(executor="ray", address="h:1"), note).__enter__()
    assert no_ray.calls[-1] == "shutdown"


def test_stderr_is_caught_while_ray_starts(tmp_path):
    with open(tmp_path / "said", "w+b") as f:
        with cluster._stderr_to(f):
            os.write(2, b"from C++\n")
        f.seek(0)
        assert f.read() == b"from C++\n"


def test_reap_kills_what_outlived_the_shutdown(monkeypatch):
    import psutil

    monkeypatch.setattr(cluster, "GRACE", 0.2)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        c = cluster.RayCluster(ExecutionConfig(executor="ray"), SimpleNamespace())
        c.processes = [psutil.Process(child.pid)]
        c._reap()
        assert child.wait(timeout=10) == -9 and c.processes == []
    finally:
        if child.poll() is None:
            child.kill()
