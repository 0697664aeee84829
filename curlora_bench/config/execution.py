"""How the runs of an experiment execute: the config's `execution:` section, overridden by the
`run` and `calibrate` flags through one function (`with_flags`). The executor reads this one
type; none of it is part of a run's identity (`config.identity`)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from ..core.errors import BenchError
from ..core.parse import coerce, positive

# the default of `execution.max_runs`: more runs than this is a typo more often than a plan
MAX_RUNS = 1000
# a cluster to join: `auto` (the one `ray start` left running here), HOST:PORT or a Ray client ray://HOST:PORT
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"(?:ray://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})")


def check_address(name: str, value: str | None) -> None:
    """`auto`, HOST:PORT or ray://HOST:PORT, the port in 1..65535 (None: start a local cluster)."""
    if value is None or value == "auto":
        return
    match = ADDRESS.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise BenchError(f"{name}: {value!r} is not auto, HOST:PORT or ray://HOST:PORT")


def check_gpus(name: str, value: float) -> None:
    """A finite number >= 0; above 1, whole GPUs (Ray shares a GPU only in fractions below 1)."""
    if not math.isfinite(value) or value < 0:
        raise BenchError(f"{name}: must be a number >= 0, got {value!r}")
    if value > 1 and not float(value).is_integer():
        raise BenchError(f"{name}: {value!r} GPUs; give a fraction below 1 (runs share a GPU) or whole GPUs")


@dataclass
class ExecutionConfig:
    """How the runs execute: never what they measure, so no part of a run's identity."""

    log: list[Literal["tensorboard", "mlflow"]] = field(default_factory=list, metadata={
        "help": "trackers besides train_log.jsonl: tensorboard (event files in each run folder), mlflow "
                "(MLFLOW_TRACKING_URI, default sqlite in the experiment folder); `run --log` overrides"})
    log_every: int = field(default=1, metadata={
        "help": "a train_log.jsonl line (and tracker point) every N optimizer steps and at a stage's last "
                "step; its loss is the mean since the previous line"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute each transformer layer's activations during backward (transformers' non-reentrant "
                "checkpointing) instead of keeping them: less memory, more time, the same numbers"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the model body (in place, dynamic shapes); worth it on CUDA, compile time "
                "dominates short CPU runs"})
    emulated_bf16: bool = field(default=False, metadata={
        "help": "let train.precision: bf16 run on a CPU without native bfloat16 (oneDNN emulates it, about "
                "four times slower than fp32, with bf16's rounding): for an agreement study on such a machine"})
    executor: Literal["local", "ray"] = field(default="local", metadata={
        "help": "local: one run after another here; ray: every (method point, seed) as a Ray task; `run --executor` "
                "overrides"})
    workers: int | None = field(default=None, metadata={
        "help": "ray: concurrent runs of the local Ray cluster started for the sweep (default: cores // cpus_per_run)"})
    address: str | None = field(default=None, metadata={
        "help": "ray: join an existing cluster (auto | HOST:PORT) instead of starting one"})
    cpus_per_run: int | None = field(default=None, metadata={
        "help": "torch threads of each run (ray: also its CPU resource; default 1 there, all cores locally)"})
    gpus_per_run: float = field(default=0.0, metadata={
        "help": "ray: GPUs of each run (1 = a GPU each; 0.5 = two runs share one)"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "embedded-asset cache (default: $CURLORA_BENCH_CACHE or ~/.cache/curlora-bench)"})
    max_runs: int = field(default=MAX_RUNS, metadata={
        "help": "refuse an experiment of more runs than this (method entries and grid points x task orders x "
                "seeds), counted before anything is expanded; `run --max-runs` overrides"})
    # the options a command-line flag set (`with_flags`), so a message names the flag; no part of the schema
    flags: tuple[str, ...] = field(default=(), compare=False, repr=False, metadata={"derived": True})

    def name(self, key: str, where: str = "execution") -> str:
        """How a message names option `key`: the flag that set it, else its `execution.` key."""
        if key in self.flags:
            return FLAGS[key]
        return f"{where}.{key}" if where else key

    def validate(self, where: str) -> None:
        for key in ("log_every", "max_runs"):
            name = self.name(key, where)
            positive(name.rpartition(".")[0], name.rpartition(".")[2], getattr(self, key))
        self.log = list(dict.fromkeys(self.log))
        for key in ("workers", "cpus_per_run"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise BenchError(f"{self.name(key, where)}: must be >= 1, got {value}")
        check_gpus(self.name("gpus_per_run", where), self.gpus_per_run)
        check_address(self.name("address", where), self.address)

    def check_placement(self) -> None:
        """The options that only mean something together (checked once the flags are applied)."""
        if self.executor == "local" and (self.workers or self.address or self.gpus_per_run):
            given = [self.name(k) for k in ("workers", "address", "gpus_per_run") if getattr(self, k)]
            raise BenchError(f"{' and '.join(given)}: need --executor ray (or execution.executor: ray)")
        if self.address and self.workers:
            raise BenchError(f"{self.name('workers')} sizes a local Ray cluster; with {self.name('address')} the "
                             "cluster has its own size")

    def threads(self) -> int:
        """Torch threads of each run: `cpus_per_run`, else 1 on Ray and every core here."""
        if self.cpus_per_run:
            return self.cpus_per_run
        return 1 if self.executor == "ray" else len(os.sched_getaffinity(0))


# the command-line flag of each execution option that has one (`run`; `calibrate` takes none)
FLAGS = {"executor": "--executor", "workers": "--workers", "address": "--address", "cpus_per_run": "--cpus-per-run",
         "gpus_per_run": "--gpus-per-run", "max_runs": "--max-runs", "log": "--log"}


def with_flags(execution: ExecutionConfig, **flags: Any) -> ExecutionConfig:
    """The execution options with each flag given (not None) in place of the config's, checked and
    named as the flag in messages: the one way a command overrides `execution:`."""
    given = {key: value for key, value in flags.items() if value is not None}
    unknown = sorted(set(given) - set(FLAGS))
    if unknown:
        raise TypeError(f"no execution flag {unknown[0]!r}")
    if "log" in given:  # the one flag the command line does not type (a list of tracker names)
        given["log"] = coerce(get_type_hints(ExecutionConfig)["log"], given["log"], FLAGS["log"])
    out = dataclasses.replace(execution, **given, flags=tuple(dict.fromkeys((*execution.flags, *given))))
    out.validate("execution")
    return out
