"""An experiment: check everything, write the resolved config, then every (method, seed) run."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from ..config.execution import ExecutionConfig
from ..config.experiment import ExperimentConfig, resolved_dict
from ..config.identity import comparable, differing
from ..core.env import check_precision, release_memory, resolve_device
from ..core.errors import BenchError
from ..core.layout import CONFIG
from ..run import RunEvents, RunSpec, run_one
from ..run.general import check_general, code_notes
from ..run.prepare import prepare
from ..store import checkpoint
from ..store.folders import FolderLock, finished_summary, write_atomic
from ..store.schema import RunSummary
from .cluster import preflight
from .executors import run_ray
from .trackers import check_trackers, mlflow_client, mlflow_experiment, tracked


def run_experiment(cfg: ExperimentConfig, out: Path, events: RunEvents | None = None,
                   fresh: bool = False, force: bool = False) -> list[RunSummary]:
    """Run every (method, seed) of `cfg` into `out`, resuming finished stages; return the summaries
    of the runs that finished (a run whose worker died is left to resume on the next call).

    `fresh` starts every run of `cfg` over; `force` accepts a folder that holds another config;
    where the runs execute is the config's `execution:` section (a command's flags applied).
    """
    events = events or RunEvents()
    executor = cfg.execution
    executor.check_placement()
    if executor.executor == "ray":
        preflight(executor)  # Ray installed; the runs' CPUs and GPUs exist; something answers at --address
    check_trackers(cfg.execution.log)  # a tracker's package missing: one line, before any asset is built
    if cfg.train.precision != "fp32" and executor.executor != "ray":  # (a Ray worker checks its own device)
        check_precision(cfg.train.precision, resolve_device(cfg.device), executor.emulated_bf16)
    for note in code_notes(cfg.general):  # every entry checked first; then what the harness will import, said
        events.message(note)
    check_general(cfg.general, cfg.execution.cache_dir)  # the harness and its tasks: one line, before any file
    made = not out.exists()
    try:
        check_writable(out)
        check_trackers(cfg.execution.log, out)  # a tracking store that cannot be opened: one line, before any run
        with FolderLock(out):  # a second run on this folder is refused, not interleaved
            return _run_locked(cfg, out, events, fresh, force, executor)
    except BenchError:
        # input refused once the model was read (lengths it cannot take, a method that does not fit it):
        # the folder this call made and left empty goes again, so a refused run leaves nothing behind
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _run_locked(cfg: ExperimentConfig, out: Path, events: RunEvents, fresh: bool, force: bool,
                executor: ExecutionConfig) -> list[RunSummary]:
    specs = run_specs(cfg, out)
    names = {spec.folder: spec.name for spec in specs}
    restored: list[str] = []

    def put_back(run: Path, earlier: bool) -> None:
        if earlier:
            restored.append(names[run])

    # before anything else, results an earlier attempt set aside and never replaced go back; after
    # the runs, however they ended (a Ray worker that died), those of a run without a stage of its own
    with checkpoint.replacing(*names, on_restore=put_back):
        if restored:
            events.message(f"put back the results an unfinished replacement had set aside: {', '.join(restored)}")
        return _run_all(cfg, out, specs, events, fresh, force, executor)


def _run_all(cfg: ExperimentConfig, out: Path, specs: list[RunSpec], events: RunEvents, fresh: bool, force: bool,
             executor: ExecutionConfig) -> list[RunSummary]:
    # loads and checks everything before anything is written
    prepared = prepare(cfg, events, executor.threads() if executor.cpus_per_run else None)
    check_same_experiment(cfg, out, force)
    if not fresh:
        check_runs_unchanged(specs, other_settings_ok=force)
    write_atomic(out / CONFIG, yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
    if "mlflow" in cfg.execution.log:  # the store and experiment exist before runs (maybe in parallel) log there
        mlflow_experiment(mlflow_client(out), cfg.name, out)
    # with `fresh`, each run sets its earlier results aside as it starts (run_one), not all of them now
    if executor.executor == "ray":
        del prepared  # each Ray task prepares its own data and model
        return run_ray(specs, executor, [spec.name for spec in specs], len(cfg.tasks), events, fresh)
    prepared.initial_perplexity(events)
    release_memory()
    summaries = []
    for spec in specs:
        summaries.append(run_one(spec, prepared, tracked(events, spec), fresh=fresh))
        release_memory()  # injected adapters can hold reference cycles: free the run's model now
    return summaries


def run_specs(cfg: ExperimentConfig, out: Path) -> list[RunSpec]:
    """Every (method, order, seed) of the experiment, in config order (the resolved config made
    once and shared: a grid of N points is N specs, not N copies of N entries)."""
    orders = range(len(cfg.orders)) if cfg.orders else [None]
    resolved = resolved_dict(cfg)
    return [RunSpec.of(cfg, i, seed, out, order, resolved) for i in range(len(cfg.methods)) for order in orders
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
