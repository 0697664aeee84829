"""The Ray cluster of a sweep: checked before anything is submitted, joined within a timeout,
quiet, and gone when the sweep ends.

Without `address` a local cluster is started for the sweep. Its temp folder (sessions, logs,
sockets) is a folder of our own in the system temp dir, `curlora-bench-ray-<driver pid>-*`,
removed when the sweep ends however it ends (when a run failed, its logs are copied to the
experiment folder's `ray-logs/` first); one left by a driver that was killed (kill -9) is
removed by the next sweep. Every process the cluster started is gone when `RayCluster`
exits (those still alive after Ray's own shutdown are killed). Token authentication stays on
(Ray's default for a local cluster); Ray's start-up notes about it stay off the screen.

With `address` the cluster is someone else's: nothing of it is started, stopped or removed;
the address is tried first (a TCP connection, `CONNECT_TIMEOUT` seconds), and the resources
each run asks for are checked against its nodes before any run is submitted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import BenchError, SignalNote, first_line

CONNECT_TIMEOUT = 10.0  # seconds to wait for the cluster at `address` to answer
TEMP_PREFIX = "curlora-bench-ray-"
GRACE = 5.0  # seconds the cluster's processes get to exit after Ray's shutdown
QUIET_LOGGERS = ("ray", "ray._private.authentication.authentication_token_setup", "ray._private.worker")


def ray_available() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'ray>=2.40' (make install installs it)") from None
    return ray


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def preflight(executor: Any) -> None:
    """What can be checked before anything is loaded: Ray is installed; on a local cluster, each
    run's CPUs and GPUs exist on this machine; at an address, something answers there."""
    ray_available()
    threads = executor.threads()
    if executor.address:
        probe(executor.address, executor.name("address"))
        return
    cores = len(os.sched_getaffinity(0))
    if threads > cores:
        raise BenchError(f"{executor.name('cpus_per_run')} {threads}: this machine has {cores} cores; a run could "
                         "never be scheduled")
    gpus = local_gpus()
    if executor.gpus_per_run > gpus:
        have = f"has {gpus} GPUs" if gpus else "has no GPU that torch can use"
        raise BenchError(f"{executor.name('gpus_per_run')} {executor.gpus_per_run:g}: this machine {have}; a run "
                         "could never be scheduled")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; `auto` as Ray resolves it (None: none found)."""
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # Ray's own lookup (a private function): leave it to ray.init
            return None
        if not address:
            raise BenchError("--address auto: no Ray cluster found on this machine (start one with "
                             "`ray start --head`, or give HOST:PORT)")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def probe(address: str, name: str = "--address") -> None:
    """One line, within `CONNECT_TIMEOUT` seconds, when nothing answers at `address`."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        why = f"no answer within {CONNECT_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else \
            (exc.strerror or first_line(exc)).lower()
        raise BenchError(f"{name} {address}: nothing answers there ({why}); is the cluster started "
                         "(`ray start --head` prints its address)?") from None


def check_cluster(ray: Any, executor: Any, threads: int) -> None:
    """Refuse a run no node of the joined cluster could ever take (it would wait forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    where = f"the cluster at {executor.address}"
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    if threads > most_cpus:
        raise BenchError(f"{executor.name('cpus_per_run')} {threads}: no node of {where} has that many CPUs "
                         f"(the most: {most_cpus:g}); a run could never be scheduled")
    if executor.gpus_per_run > most_gpus:
        have = f"the most: {most_gpus:g}" if most_gpus else "it has none"
        raise BenchError(f"{executor.name('gpus_per_run')} {executor.gpus_per_run:g}: no node of {where} has that "
                         f"many GPUs ({have}); a run could never be scheduled")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs() -> None:
    """Temp folders of local clusters whose driver is gone (killed before it could remove them)."""
    for d in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        pid = d.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


class RayCluster:
    """`with RayCluster(executor, note) as ray:` a connected Ray, checked; on exit, nothing left."""

    def __init__(self, executor: Any, note: SignalNote, logs_to: Path | None = None) -> None:
        self.executor, self.note = executor, note
        self.logs_to = logs_to  # where the local cluster's logs are copied when `keep_logs` is set
        self.keep_logs = False  # a run failed: its worker's logs outlive the temp folder
        self.temp: Path | None = None
        self.processes: list[Any] = []

    def __enter__(self) -> Any:
        ray = ray_available()
        ex, threads = self.executor, self.executor.threads()
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        # Ray's start-up notes (token authentication on, a local instance started) stay off the screen;
        # its errors still come through as one line
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        said = tempfile.TemporaryFile()  # what Ray's own (C++) logging writes during start-up
        try:
            with _stderr_to(said):
                if ex.address:
                    ray.init(address=ex.address, **quiet)
                else:
                    remove_stale_temp_dirs()
                    self.temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
                    workers = ex.workers or max(1, len(os.sched_getaffinity(0)) // threads)
                    ray.init(num_cpus=workers * threads, num_gpus=local_gpus(), include_dashboard=False,
                             object_store_memory=100 * 1024 * 1024, _temp_dir=str(self.temp), **quiet)
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, BenchError) or not isinstance(exc, Exception):  # a signal: as it is
                raise
            what = f"{ex.name('address')} {ex.address}" if ex.address else "a local Ray cluster"
            said.seek(0)
            log = said.read().decode(errors="replace")
            if "InvalidAuthToken" in log or "Unauthenticated" in log:
                raise BenchError(f"{what}: the cluster refused this driver's token (Ray's token authentication: "
                                 "the token of `ray get-auth-token` on the head, or the same RAY_AUTH_MODE "
                                 "on both sides)") from None
            raise BenchError(f"{what}: Ray did not start ({first_line(exc)})") from None
        finally:
            said.close()
        self.note.install()  # Ray's init installed SIGTERM handlers of its own
        self._remember_processes()
        try:
            self.note.check()  # a signal during the start-up
            if ex.address:
                check_cluster(ray, ex, threads)
        except BaseException:
            self.__exit__()
            raise
        return ray

    def _remember_processes(self) -> None:
        """The local cluster's processes: this driver's children that run in its temp folder, and
        theirs (the workers), to see them gone at exit. Nothing else is ever touched."""
        if self.temp is None:
            return
        import psutil

        found: dict[int, Any] = {p.pid: p for p in self.processes}
        try:
            for child in psutil.Process().children(recursive=True):
                try:
                    if str(self.temp) in " ".join(child.cmdline()):
                        found[child.pid] = child
                        found.update((p.pid, p) for p in child.children(recursive=True))
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        self.processes = list(found.values())

    def __exit__(self, *exc: object) -> None:
        ray = ray_available()
        self._remember_processes()  # the workers started since
        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            self._reap()
            if self.temp is not None:
                self._save_logs()
                shutil.rmtree(self.temp, ignore_errors=True)
                self.temp = None

    def _save_logs(self) -> None:
        """A failed run's worker logs (Ray's message points at them) into the experiment folder."""
        logs = self.temp / "session_latest" / "logs" if self.temp is not None else None
        if not (self.keep_logs and self.logs_to and logs and logs.is_dir()):
            return
        shutil.rmtree(self.logs_to, ignore_errors=True)
        shutil.copytree(logs, self.logs_to, ignore=shutil.ignore_patterns("*.sock", "events"), dirs_exist_ok=True)

    def _reap(self) -> None:
        """Whatever of the local cluster outlived Ray's shutdown: a grace period, then SIGKILL."""
        if not self.processes:
            return
        import psutil

        deadline = time.monotonic() + GRACE
        alive = self.processes
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _running(p)]
            if alive:
                time.sleep(0.1)
        for p in alive:
            try:
                p.kill()  # psutil checks the process is still the one it saw (pid reuse)
            except psutil.Error:
                pass
        self.processes = []


@contextlib.contextmanager
def _stderr_to(file: Any) -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ logging writes, retrying for half a minute when a
    cluster will not take us) into `file` while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _running(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
