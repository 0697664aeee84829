"""An experiment: check everything, write the resolved config, then every (method, seed) run."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..adapters import method_dict
from ..config.experiment import (
    ExperimentConfig,
    experiment_settings,
    resolved_dict,
    run_key,
    without_execution_keys,
)
from ..core.env import release_memory
from ..core.errors import BenchError
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
    `executor` says where the runs execute (default: here, one after another).
    """
    events = events or RunEvents()
    executor = executor or Executor()
    executor.validate()
    if executor.kind == "ray":
        ray_available()
    check_trackers(cfg.log)
    check_writable(out)
    with FolderLock(out):  # a second run on this folder is refused, not interleaved
        return _run_locked(cfg, out, events, fresh, force, executor)


def _run_locked(cfg: ExperimentConfig, out: Path, events: RunEvents, fresh: bool, force: bool,
                executor: Executor) -> list[RunSummary]:
    # loads and checks everything before anything is written
    prepared = prepare(cfg, events, executor.threads() if executor.cpus_per_run else None)
    check_same_experiment(cfg, out, force)
    orders = range(len(cfg.orders)) if cfg.orders else [None]
    specs = [RunSpec.of(cfg, i, seed, out, order) for i in range(len(cfg.methods)) for order in orders
             for seed in cfg.seeds]
    if not fresh:
        check_runs_unchanged(cfg, specs, other_settings_ok=force)
    write_atomic(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
    if "mlflow" in cfg.log:  # the store and experiment exist before runs (maybe in parallel) log there
        mlflow_experiment(mlflow_client(out), cfg.name, out)
    if fresh:  # set aside, deleted only once each new run has checkpointed its first stage
        for spec in specs:
            checkpoint.set_aside(spec.folder(cfg))
    if executor.kind == "ray":
        labels = [f"{s.method(cfg).display_label} seed {s.seed}" + (f" order {s.order}" if s.order else "")
                  for s in specs]
        del prepared  # each Ray task prepares its own data and model
        return run_ray(specs, executor, labels, len(cfg.tasks), events)
    prepared.initial_perplexity(events)
    release_memory()
    summaries = []
    for spec in specs:
        summaries.append(run_one(spec, prepared, events))
        release_memory()  # injected adapters can hold reference cycles: free the run's model now
    return summaries


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"output directory {out}: cannot write there ({exc.strerror})") from None


def check_runs_unchanged(cfg: ExperimentConfig, specs: list[RunSpec], other_settings_ok: bool = False) -> None:
    """Refuse to replace a label's finished or started work that has other settings (its run key),
    and to keep a complete run whose files are damaged; each is one line naming the file and --fresh."""
    for spec in specs:
        method = spec.method(cfg)
        folder = spec.folder(cfg)
        stored = checkpoint.stored_work(folder)
        if stored is None:
            continue
        path, key, old_method, old_settings = stored
        if key == run_key(cfg, method, spec.seed, spec.task_order(cfg)):
            finished_summary(folder, key)  # a complete run's records are checked before it is kept
            continue
        if other_settings_ok:
            continue
        old_method, new_method = without_execution_keys(old_method), without_execution_keys(method_dict(method))
        differ = sorted(k for k in set(old_method) | set(new_method) if old_method.get(k) != new_method.get(k))
        if old_settings is not None:
            old_settings = without_execution_keys(old_settings)
            new_settings = without_execution_keys(experiment_settings(resolved_dict(cfg)))
            differ += sorted(k for k in set(old_settings) | set(new_settings)
                             if old_settings.get(k) != new_settings.get(k))
        name = f"{method.display_label} seed {spec.seed}" + (f" order {spec.order}" if spec.order else "")
        raise BenchError(f"{name}: {folder} holds work of other settings "
                         f"(differs in: {', '.join(differ) or 'run key'}; see {path.name}); pass --fresh to "
                         "replace it, or give the method another `label:`")


def check_same_experiment(cfg: ExperimentConfig, out: Path, force: bool) -> None:
    """Refuse to mix runs of different experiments in one folder (adding methods/seeds is fine)."""
    path = out / "config.yaml"
    if force or not path.is_file():
        return
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        old = None
    if not isinstance(old, dict):
        raise BenchError(f"{path}: unreadable (damaged?); use --force to run into {out} anyway, or --fresh "
                         "with --force to start it over")
    old = without_execution_keys(experiment_settings(old))
    new = without_execution_keys(experiment_settings(resolved_dict(cfg)))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise BenchError(f"{out} holds results of a different config (differs in: {', '.join(differ)}); "
                         f"choose another --output, or pass --force to run there anyway")
