"""Trackers: TensorBoard and MLflow as sinks of a run's events (`log: [tensorboard, mlflow]`).

Both are optional extras (`pip install 'curlora-bench[trackers]'`), imported only when a run
asks for them: importing MLflow alone takes seconds. A tracker opens with the run, in whatever
process runs it (here or a Ray worker). On a resumed run it starts its run over and first
replays what train_log.jsonl and records.jsonl kept, so every step is logged exactly once
whatever the interrupted process had sent.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from ..core.errors import BenchError, first_line
from ..core.layout import RECORDS, REPORT, SUMMARY, TENSORBOARD, TRAIN_LOG
from ..run.events import RunEvents, RunStart, StageNumbers
from ..store.folders import write_atomic
from ..store.schema import Record, RunSummary, TrainLogEntry
from .events import Fanout

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracker -> the package it needs
TRAIN_SCALARS = ("loss", "lr", "grad_norm", "tokens_per_s")
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


def check_trackers(names: list[str], experiment_folder: Path | None = None) -> None:
    """One line naming what to install if a tracker's package is missing; with the experiment
    folder, one line if MLflow's tracking store cannot be opened (before any run starts)."""
    for name in names:
        package = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise BenchError(f"log: {name} needs the {package} package: pip install 'curlora-bench[trackers]' "
                             "(make install installs it)")
    if "mlflow" in names and experiment_folder is not None:
        check_mlflow(experiment_folder)


# what MLflow's tracking client accepts: a path, file:, a database, a server
MLFLOW_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                  "databricks-uc", "uc")


def check_mlflow(experiment_folder: Path) -> None:
    """MLFLOW_TRACKING_URI, when set, opens: a known scheme, a folder that can be written, a
    store that answers (a server gets one short try)."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return  # the default: a SQLite file in the experiment folder, which is writable (checked); made with the runs
    uri = mlflow_uri(experiment_folder)
    where = f"MLFLOW_TRACKING_URI={uri}"
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if re.match(r"[A-Za-z][\w+.-]*:", uri) else ""
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme not in MLFLOW_SCHEMES:
        raise BenchError(f"{where}: unknown scheme {scheme!r} (MLflow takes a path, file:, sqlite:, postgresql:, "
                         "mysql:, mssql:, http(s): or databricks)")
    if scheme == "sqlite" and ":///" in uri:  # sqlite:///relative.db, sqlite:////absolute.db
        _check_writable(Path(uri.split(":///", 1)[1].split("?", 1)[0]).parent, where)
    elif scheme == "file":
        _check_writable(Path(unquote(urlparse(uri).path)), where)
    elif scheme == "":
        _check_writable(Path(uri), where)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")  # one short try
    try:
        mlflow_client(experiment_folder).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises its own exceptions, the database drivers theirs, OSError
        raise BenchError(f"{where}: cannot open the tracking store ({first_line(exc)})") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_writable(folder: Path, where: str) -> None:
    """The folder, or the nearest existing folder above it (where it would be made), is writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(f"{where}: {existing} is not a folder this process can write")


def train_scalars(entry: TrainLogEntry) -> list[tuple[str, float, int]]:
    """(tag, value, step) of one train_log line: the step axis is the whole sequence's."""
    return [(f"train/{k}", float(getattr(entry, k)), entry.global_step) for k in TRAIN_SCALARS]


def record_scalar(record: Record) -> tuple[str, float, int]:
    """(tag, value, step) of one record: accuracy/<task> or perplexity/<corpus> at its stage
    (validation records: accuracy/<task>/validation)."""
    split = f"/{record.split}" if record.split else ""
    return f"{record.metric}/{_tag(Path(record.task or 'corpus').name)}{split}", float(record.value), record.stage


def summary_scalars(summary: RunSummary) -> list[tuple[str, float, int]]:
    stage = len(summary.stages)
    return [(f"summary/{k}", float(v), stage) for k, v in summary.metrics.items() if v is not None]


def _tag(text: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", text)


def tracked(events: RunEvents, spec: Any) -> RunEvents:
    """`events` and the trackers of the spec's `execution.log`, opened in whatever process runs
    the run (a Ray worker too); each replays what the run's files kept, so each step reaches it once."""
    return Fanout([events, *open_trackers(spec.experiment.execution.log, Path(spec.out))])


def open_trackers(names: list[str], experiment_folder: Path) -> list[RunEvents]:
    check_trackers(names)
    sinks: list[RunEvents] = []
    if "tensorboard" in names:
        sinks.append(TensorBoardEvents())
    if "mlflow" in names:
        sinks.append(MlflowEvents(experiment_folder))
    return sinks


class TensorBoardEvents(RunEvents):
    """Event files in <run folder>/tensorboard/: train scalars per step, records per stage, the config."""

    def __init__(self) -> None:
        self.writer: Any = None

    def run_started(self, run: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = run.folder / TENSORBOARD
        shutil.rmtree(folder, ignore_errors=True)  # rebuilt from the kept files: each step once
        self.writer = SummaryWriter(log_dir=str(folder))
        text = yaml.safe_dump(run.config, sort_keys=False)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()), 0)
        for entry in run.train_log:
            self.logged(entry)
        for record in run.records:
            self.record(record)
        self.writer.flush()

    def logged(self, entry: TrainLogEntry) -> None:
        for tag, value, step in train_scalars(entry):
            self.writer.add_scalar(tag, value, step)

    def record(self, record: Record) -> None:
        self.writer.add_scalar(*record_scalar(record))

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        if self.writer is not None:
            self.writer.flush()

    def run_finished(self, summary: RunSummary) -> None:
        for tag, value, step in summary_scalars(summary):
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def mlflow_uri(experiment_folder: Path) -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store inside the experiment folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{experiment_folder.resolve() / MLFLOW_DB}"


def mlflow_experiment(client: Any, name: str, experiment_folder: Path) -> str:
    """The id of the experiment `name`, created if needed (by another worker at the same time, too)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else \
        (experiment_folder.resolve() / MLFLOW_ARTIFACTS).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def mlflow_client(experiment_folder: Path) -> Any:
    for name in ("alembic", "mlflow.store.db.utils"):  # table creation chatter on a new store
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_uri(experiment_folder))


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.lr": "0.001", "method.rank": "8", ...}."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and data and all(isinstance(v, (dict, list)) for v in data):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return {prefix: str(data)}
    out: dict[str, str] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


class MlflowEvents(RunEvents):
    """One MLflow run per (method, seed) in the experiment named after the config.

    Params: the run's resolved config, flattened; metrics: the same tags and steps as
    TensorBoard; artifacts: summary.json, records.jsonl, train_log.jsonl and the run's report.
    Metrics are sent in batches, at the latest every `FLUSH_SECONDS` and at each stage's end.
    """

    FLUSH_SECONDS = 10.0

    def __init__(self, experiment_folder: Path) -> None:
        self.folder = experiment_folder
        self.client: Any = None
        self.run_id: str | None = None
        self.run_folder: Path | None = None
        self._pending: list[Any] = []
        self._last = time.monotonic()

    def run_started(self, run: RunStart) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        self.client = mlflow_client(self.folder)
        self.run_folder = run.folder
        exp = mlflow_experiment(self.client, run.experiment, self.folder)
        folder = str(run.folder.resolve())
        # a resumed run replaces the MLflow run the interrupted process began: each step once. The
        # filter holds only the run key (hex digits); the folder, which may hold any character, is
        # compared here, never written into a filter string
        for old in self.client.search_runs([exp], filter_string=f"tags.curlora_run_key = '{run.run_key}'"):
            if old.data.tags.get("curlora_folder") == folder:
                self.client.delete_run(old.info.run_id)
        tags = {"curlora_folder": folder, "curlora_run_key": run.run_key, "label": run.label, "seed": str(run.seed)}
        self.run_id = self.client.create_run(exp, run_name=f"{run.label} seed {run.seed}", tags=tags).info.run_id
        params = [Param(k[:250], v[:MAX_PARAM_VAL_LENGTH]) for k, v in flatten(run.config).items()]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i: i + MAX_PARAMS_TAGS_PER_BATCH])
        for entry in run.train_log:
            self._add(train_scalars(entry))
        for record in run.records:
            self._add([record_scalar(record)])
        self._flush()

    def _add(self, scalars: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(tag, value, now, step) for tag, value, step in scalars]

    def _flush(self) -> None:
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        for i in range(0, len(self._pending), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=self._pending[i: i + MAX_METRICS_PER_BATCH])
        self._pending, self._last = [], time.monotonic()

    def logged(self, entry: TrainLogEntry) -> None:
        self._add(train_scalars(entry))
        if time.monotonic() - self._last > self.FLUSH_SECONDS:
            self._flush()

    def record(self, record: Record) -> None:
        self._add([record_scalar(record)])

    def stage_finished(self, run: str, stage: int, numbers: StageNumbers | None = None) -> None:
        if self.run_id is not None:
            self._flush()

    def run_finished(self, summary: RunSummary) -> None:
        from ..analysis.report import render
        from ..store.folders import Run

        self._add(summary_scalars(summary))
        self._flush()
        assert self.run_folder is not None
        for name in (SUMMARY, RECORDS, TRAIN_LOG):
            if (self.run_folder / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_folder / name))
        with tempfile.TemporaryDirectory() as tmp:  # the run's own report, not a file in its folder
            write_atomic(Path(tmp) / REPORT, render([Run(self.run_folder, summary)], "md"))
            self.client.log_artifact(self.run_id, str(Path(tmp) / REPORT))
        self.client.set_terminated(self.run_id, "FINISHED" if summary.status == "complete" else "FAILED")
        self.run_id = None

    def close(self) -> None:
        if self.run_id is not None:  # interrupted: keep what was measured, mark it
            self._flush()
            self.client.set_terminated(self.run_id, "KILLED")
            self.run_id = None
