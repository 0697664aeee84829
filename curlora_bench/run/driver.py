"""An experiment: check everything, write the resolved config, then every (method, seed) run."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config.experiment import ExperimentConfig, resolved_dict
from ..config.identity import comparable, differing
from ..core.env import release_memory
from ..core.errors import BenchError
from ..core.layout import CONFIG
from ..store import checkpoint
from ..store.folders import FolderLock, finished_summary, write_atomic
from ..store.schema import RunSummary
from .events import RunEvents
from .executors import Executor, ray_available, run_ray
from .prepare import prepare
from .recipe import run_one
from .spec import RunSpec
from .trackers import check_trackers, mlflow_client, mlflow_experiment


def run_experiment(cfg: ExperimentConfig, out: Path, events: RunEvents | None = None,
                   fresh: bool = False, force: bool = False, executor: Executor | None = None) -> list[RunSummary]:
    """Run every (method, seed) of `cfg` into `out`, resuming finished stages; return the summaries
    of the runs that finished (a run whose worker died is left to resume on the next call).

    `fresh` starts every run of `cfg` over; `force` accepts a folder that holds another config;
    `executor` says where the runs execute (default: the config's `execution:` section).
    """
    events = events or RunEvents()
    executor = executor or Executor.of(cfg.execution)
    executor.validate()
    if executor.kind == "ray":
        ray_available()
    check_trackers(cfg.execution.log)
    check_writable(out)
    with FolderLock(out):  # a second run on this folder is refused, not interleaved
        return _run_locked(cfg, out, events, fresh, force, executor)


def _run_locked(cfg: ExperimentConfig, out: Path, events: RunEvents, fresh: bool, force: bool,
                executor: Executor) -> list[RunSummary]:
    # loads and checks everything before anything is written
    prepared = prepare(cfg, events, executor.threads() if executor.cpus_per_run else None)
    check_same_experiment(cfg, out, force)
    specs = run_specs(cfg, out)
    if not fresh:
        check_runs_unchanged(specs, other_settings_ok=force)
    write_atomic(out / CONFIG, yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
    if "mlflow" in cfg.execution.log:  # the store and experiment exist before runs (maybe in parallel) log there
        mlflow_experiment(mlflow_client(out), cfg.name, out)
    if fresh:  # set aside, deleted only once each new run has checkpointed its first stage
        for spec in specs:
            checkpoint.set_aside(spec.folder)
    if executor.kind == "ray":
        del prepared  # each Ray task prepares its own data and model
        return run_ray(specs, executor, [spec.name for spec in specs], len(cfg.tasks), events)
    prepared.initial_perplexity(events)
    release_memory()
    summaries = []
    for spec in specs:
        summaries.append(run_one(spec, prepared, events))
        release_memory()  # injected adapters can hold reference cycles: free the run's model now
    return summaries


def run_specs(cfg: ExperimentConfig, out: Path) -> list[RunSpec]:
    """Every (method, order, seed) of the experiment, in config order."""
    orders = range(len(cfg.orders)) if cfg.orders else [None]
    return [RunSpec.of(cfg, i, seed, out, order) for i in range(len(cfg.methods)) for order in orders
            for seed in cfg.seeds]


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"output directory {out}: cannot write there ({exc.strerror})") from None


def check_runs_unchanged(specs: list[RunSpec], other_settings_ok: bool = False) -> None:
    """Refuse to replace a label's finished or started work that has other settings (its run key),
    and to keep a complete run whose files are damaged; each is one line naming the file and --fresh."""
    for spec in specs:
        stored = checkpoint.stored_work(spec.folder)
        if stored is None:
            continue
        path, key, old_method, old_settings = stored
        if key == spec.identity.run_key:
            finished_summary(spec.folder, key)  # a complete run's records are checked before it is kept
            continue
        if other_settings_ok:
            continue
        differ = spec.identity.differences(old_method, old_settings)
        raise BenchError(f"{spec.name}: {spec.folder} holds work of other settings "
                         f"(differs in: {', '.join(differ) or 'run key'}; see {path.name}); pass --fresh to "
                         "replace it, or give the method another `label:`")


def check_same_experiment(cfg: ExperimentConfig, out: Path, force: bool) -> None:
    """Refuse to mix runs of different experiments in one folder (adding methods/seeds is fine)."""
    path = out / CONFIG
    if force or not path.is_file():
        return
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        old = None
    if not isinstance(old, dict):
        raise BenchError(f"{path}: unreadable (damaged?); use --force to run into {out} anyway, or --fresh "
                         "with --force to start it over")
    differ = differing(comparable(old), comparable(resolved_dict(cfg)))
    if differ:
        raise BenchError(f"{out} holds results of a different config (differs in: {', '.join(differ)}); "
                         f"choose another --output, or pass --force to run there anyway")
