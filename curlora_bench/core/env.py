"""Seeds, device, threads, memory and the environment facts recorded with every run.

torch is imported where it is used: this module sits in the foundation, which the CLI's
`--help` and `report` import without torch.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import platform
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BenchError

if TYPE_CHECKING:
    import torch


def set_seed(seed: int) -> int:
    """Seed Python, NumPy and torch (all devices) with transformers' own; return the seed."""
    import transformers

    transformers.set_seed(seed)
    return seed


def resolve_device(name: str) -> torch.device:
    """`auto` -> the best available accelerator, else CPU; explicit names are checked."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    import re

    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise BenchError(f"device: {name!r} is not auto, cpu, cuda, cuda:N or mps")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device: {name!r} requested but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BenchError(f"device: {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"device: {name!r} requested but MPS is not available here")
    return device


def cpu_capability() -> str:
    """The CPU kernels torch dispatches to here (AVX512, AVX2, DEFAULT, ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: x86 AVX-512 BF16 or AMX, Arm's BF16
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as the kernel lists them (None where they cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        return None
    return None


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 runs natively on `device`: a CUDA GPU that has it, or a CPU with AVX-512 BF16,
    AMX or Arm BF16. Elsewhere oneDNN emulates it, about four times slower than fp32 (on an AVX-512
    CPU without BF16: a 1024x1024 matmul 37.8 ms against 9.6 ms), so bf16 there is refused."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        flags = cpu_flags()
        return flags is not None and any(f in flags for f in BF16_CPU_FLAGS)
    return False


def check_precision(precision: str, device: torch.device, emulated: bool = False) -> None:
    """Refuse bf16 in one line where the device has no native bf16 (unless `emulated` allows a CPU's
    emulation: `execution.emulated_bf16`, for numbers rather than speed)."""
    if precision == "bf16" and not bf16_supported(device) and not (emulated and device.type == "cpu"):
        what = (f"this CPU ({cpu_capability()}, without {', '.join(BF16_CPU_FLAGS[:2])} or Arm bf16)"
                if device.type == "cpu" else f"device {device}")
        raise BenchError(f"train.precision: bf16 needs native bfloat16 arithmetic, and {what} has none "
                         "(emulated, it runs about four times slower than fp32); use fp32, or set "
                         "execution.emulated_bf16: true for bf16's numbers at that cost")


def configure_threads(threads: int | None = None, busy: Callable[[], float] | None = None) -> int:
    """`threads` intra-op threads if given; unless the user set OMP_NUM_THREADS, else one per core
    the process may run on that other processes do not keep busy now (`busy_cores`, at least one).

    OpenMP threads that wait for a core another process holds spin: beside two busy processes on
    two cores, two threads trained at 71-82 tokens/s, one thread at 132-144 (alone: about 390 with
    two). Waiting passively instead (OMP_WAIT_POLICY=PASSIVE) helps there too but costs a run alone
    a quarter (about 285), so the thread count is what adapts (docs/performance.md)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        taken = (busy or busy_cores)()
        torch.set_num_threads(max(1, min(n, n - round(taken))))
    return torch.get_num_threads()


def busy_cores(interval: float = 0.3) -> float:
    """How many cores other processes kept busy over `interval` seconds, from the kernel's CPU
    counters (/proc/stat); 0 where they cannot be read (not Linux)."""
    import time

    def counters() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(x) for x in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = counters()
        time.sleep(interval)
        total1, idle1 = counters()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


_LIBC: list = []  # glibc's handle once looked up; [None] where there is none (macOS, musl)


def module_seed(seed: int, name: str) -> int:
    """A seed derived from the run seed and a name (a module, `head:<task>`, `replay:<task>`):
    stable across runs and processes, independent of any global RNG."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def release_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`); True if it could.

    A stage's tensors come and go in 1-4 MB pieces that glibc keeps in its heap after they are
    freed, with live ones in between, so the resident set stays at the phase's high-water mark
    (+300 MB after a checkpointed training step whose live activations are 35 MB) and the next
    phase's peak lands on top of it. The run calls this between phases (training, evaluation,
    perplexity) and between runs; no result changes. Its cost is the full `gc.collect` over the
    process's objects: about 0.3 s a call in a run on the embedded model (under 3 s of a
    15-minute run: scripts/profile_eval.py), more in a process that has imported more.
    """
    gc.collect()  # adapters can hold reference cycles
    if not _LIBC:
        try:
            libc = ctypes.CDLL("libc.so.6")
            _LIBC.append(libc if hasattr(libc, "malloc_trim") else None)
        except OSError:
            _LIBC.append(None)
    if _LIBC[0] is None:
        return False
    _LIBC[0].malloc_trim(0)
    return True


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "datasets", "curlora-bench"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
