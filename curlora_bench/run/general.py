"""General ability: lm-evaluation-harness tasks on the model in memory (`general:`).

The harness is an optional extra (`pip install 'curlora-bench[general]'`, in `make install`),
imported only by an experiment with `general:`; a missing package or a task the harness does not
know is one line before any run starts (`check_general`). Scoring is the harness's own:
`lm_eval.simple_evaluate` on an `HFLM` that wraps the run's model as it is (adapters injected,
not merged), so a stage's numbers are what `lm_eval` gives for that model and task YAML. The
harness seeds Python's, NumPy's and torch's global generators; `evaluate_general` puts them back,
so evaluating changes nothing the training draws.

Offline by default: the harness and `datasets` never wait on a network (HF_HUB_OFFLINE and
HF_DATASETS_OFFLINE, unless the environment sets them: `HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0`
lets hub tasks download their data).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config.experiment import DATA_FORMATS, GeneralConfig
from ..core.errors import BenchError, first_line
from ..sources.general import PROBES, probe_yaml

INSTALL = "pip install 'curlora-bench[general]' (make install installs it)"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
# keys of a harness result that are no metric
NOT_METRICS = ("name", "alias", "sample_len", "samples")
_MANAGERS: dict[bool, Any] = {}  # with the harness's own tasks indexed or not: built once per process


@dataclass
class GeneralScore:
    task: str  # the harness task's name
    metric: str  # the harness's metric name ("acc"; "acc,<filter>" for a filter other than none)
    value: float
    n: int  # examples scored


@contextlib.contextmanager
def offline():
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE on (where the environment leaves them unset), also in
    the already imported hub client and `datasets`, which read them at import."""
    unset = [k for k in OFFLINE_VARS if k not in os.environ]
    if not unset:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    os.environ.update({k: "1" for k in unset})
    huggingface_hub.constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for k in unset:
            os.environ.pop(k, None)
        huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def task_manager(builtin: bool):
    """The harness's TaskManager; indexing its own ~15k task files takes seconds, so only when a
    built-in name is asked for, once per process."""
    if builtin not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        _MANAGERS[builtin] = TaskManager(include_defaults=builtin)
    return _MANAGERS[builtin]


def needs_index(general: GeneralConfig) -> bool:
    return any(is_name(e) for e in general.tasks)


def is_name(entry: Any) -> bool:
    """A harness task name (not a probe, not a YAML path)."""
    return isinstance(entry, dict) or (entry not in PROBES and not entry.endswith((".yaml", ".yml")))


def local_copy(manager, entry: dict, where: str) -> dict:
    """A built-in harness task's own config over local data files: its splits that the files do
    not give are dropped, so the harness reads only those."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = dict(load_yaml(manager.task_index[entry["task"]].yaml_path, resolve_func=True))
    files = entry["data_files"]
    fmt = DATA_FORMATS[Path(next(iter(files.values()))).suffix]
    split_keys = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
    for split, key in split_keys.items():
        cfg[key] = split if split in files else None
    if cfg.get("fewshot_split") not in files:
        cfg["fewshot_split"] = None
    cfg.update(dataset_path=fmt, dataset_name=None, dataset_kwargs={"data_files": {k: str(v) for k, v in files.items()}})
    if not any(cfg[k] for k in split_keys.values()):
        raise BenchError(f"{where}.data_files: none of the splits {entry['task']!r} reads")
    return cfg


@dataclass
class TaskYaml:
    """A user task YAML as the harness will read it: its declared task name, its metrics, and the
    Python it names with `!function` tags (the harness imports those modules and runs them)."""

    name: str | None
    metrics: list[str]
    code: list[str]  # "<module file> (<function>)" per tag


class _Code(str):
    """A `!function` tag's value, read without importing anything."""


def read_task_yaml(path: Path, where: str, depth: int = 0) -> TaskYaml:
    """`path` read as data (its `include:` chain too), importing nothing: one line if it is no task
    YAML. Everything the harness would import is named in `code`."""
    code: list[str] = []

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> _Code:
        spec = str(loader.construct_scalar(node))  # type: ignore[arg-type]
        module, _, func = spec.rpartition(".")
        code.append(f"{(path.parent / (module.replace('.', '/') + '.py')).resolve()} ({func or spec})")
        return _Code(spec)

    Loader.add_constructor("!function", function)
    try:
        loader = Loader(path.read_text(encoding="utf-8"))  # a SafeLoader: builds plain data only
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise BenchError(f"{where}: {path} is not a readable task YAML ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise BenchError(f"{where}: {path} is not a task YAML (expected a mapping, got {type(data).__name__})")
    name = data.get("task") if isinstance(data.get("task"), str) else None
    metrics = [m["metric"] for m in data.get("metric_list") or [] if isinstance(m, dict)
               and isinstance(m.get("metric"), str) and not isinstance(m["metric"], _Code) and not m.get("hf_evaluate")]
    include = data.get("include")
    if isinstance(include, str) and depth < 8:
        inc = Path(include) if Path(include).is_absolute() else path.parent / include
        if inc.is_file():
            base = read_task_yaml(inc, where, depth + 1)
            code = base.code + code
            name = name or base.name
            metrics = metrics if "metric_list" in data else base.metrics
    return TaskYaml(name, metrics, code)


def known_metrics() -> set[str]:
    """The metric names the harness has registered (a metric it does not know, it looks up in HF
    Evaluate over the network, and without it the task records nothing)."""
    import lm_eval.api.metrics  # noqa: F401 (registers the metrics)
    from lm_eval.api.registry import metric_registry

    return set(metric_registry)


def resolve_general(general: GeneralConfig) -> list[TaskYaml | None]:
    """Every `general:` entry checked without building a probe, fetching an asset or loading a
    task: the harness installed, each name known to it, each task YAML readable with metrics the
    harness knows, and no task declared twice. Returns each entry's `TaskYaml` (None: no YAML of
    the user's)."""
    if importlib.util.find_spec("lm_eval") is None:
        raise BenchError(f"general: lm-evaluation-harness is not installed: {INSTALL}")
    manager = task_manager(needs_index(general))
    out: list[TaskYaml | None] = []
    declared: dict[str, int] = {}
    metrics = None
    for i, entry in enumerate(general.tasks):
        where = f"general.tasks[{i}]"
        parsed = None
        if not is_name(entry):
            if entry in PROBES:
                name = entry
            else:
                parsed = read_task_yaml(Path(entry), where)
                name = parsed.name
                metrics = metrics if metrics is not None else known_metrics()
                unknown = [m for m in parsed.metrics if m not in metrics]
                if unknown:
                    raise BenchError(f"{where}: metric {unknown[0]!r} of {entry} is unknown to the harness (it would "
                                     f"record nothing for it; known: {', '.join(sorted(metrics)[:12])}, ...)")
        else:
            name = entry["task"] if isinstance(entry, dict) else entry
            if name not in manager.task_index:
                hint = f" (probes: {', '.join(PROBES)}; or a path to a task YAML)"
                raise BenchError(f"{where}: unknown harness task {name!r}{hint}")
        if name is not None:
            if name in declared:
                raise BenchError(f"{where}: task {name!r} is declared twice (also by general.tasks[{declared[name]}]); "
                                 "the harness would score only one: give each task YAML its own `task:` name")
            declared[name] = i
        out.append(parsed)
    return out


def code_notes(general: GeneralConfig | None) -> list[str]:
    """One line per `general:` task YAML that names Python code (`!function`): the module the
    harness will import and run, so running someone else's config is never a surprise."""
    if general is None:
        return []
    from rich.markup import escape  # the lines go to the console, and a path may hold [brackets]

    notes = []
    for i, (entry, parsed) in enumerate(zip(general.tasks, resolve_general(general))):
        if parsed is not None and parsed.code:
            notes.append(escape(f"general.tasks[{i}]: {entry} runs Python code when loaded: {'; '.join(parsed.code)}"))
    return notes


def task_specs(general: GeneralConfig, cache_dir: str | None = None) -> list[str | dict]:
    """What `simple_evaluate` is given per `general.tasks` entry: a YAML path (a probe's is built
    into the cache first), a harness task name, or a built-in task's config over local files.
    Every entry is checked (`resolve_general`) before any probe is built."""
    resolve_general(general)
    manager = task_manager(needs_index(general))
    specs: list[str | dict] = []
    for i, entry in enumerate(general.tasks):
        where = f"general.tasks[{i}]"
        if not is_name(entry):
            specs.append(str(probe_yaml(entry, cache_dir)) if entry in PROBES else str(Path(entry).resolve()))
            continue
        specs.append(local_copy(manager, entry, where) if isinstance(entry, dict) else entry)
    return specs


def check_general(general: GeneralConfig | None, cache_dir: str | None = None) -> list[str | dict]:
    """Every `general:` task resolved and loaded once by the harness (its data read, offline), so a
    bad entry is one line before any run starts; returns the specs (`task_specs`)."""
    if general is None:
        return []
    specs = task_specs(general, cache_dir)
    with offline(), quiet():
        for i, spec in enumerate(specs):
            try:
                loaded = task_manager(needs_index(general)).load([spec])
            except Exception as exc:  # the harness raises KeyError, ValueError, datasets' and hub errors
                raise BenchError(f"general.tasks[{i}]: the harness cannot load it ({first_line(exc)})") from None
            for task in (loaded.get("tasks") or {}).values() if isinstance(loaded, dict) else []:
                check_fewshot(task, general.num_fewshot, f"general.tasks[{i}]")
    return specs


def check_fewshot(task: Any, num_fewshot: int | None, where: str) -> None:
    """A few-shot count the task's examples can give: the harness draws n + 1 (to leave out the
    example scored) and otherwise fails mid-run with "Sample larger than population"."""
    n = num_fewshot if num_fewshot is not None else getattr(task.config, "num_fewshot", None) or 0
    if n <= 0:
        return
    try:
        pool = len(task.fewshot_docs())
    except Exception:  # a task without any split to draw from: the harness says so when it scores
        return
    if n + 1 > pool:
        name = getattr(task.config, "task", "?")
        raise BenchError(f"{where}: num_fewshot {n} is more than task {name!r} can draw: {pool} example(s) to take "
                         f"shots from, so at most {max(pool - 1, 0)}")


class WithoutBars(io.TextIOBase):
    """A text stream that passes everything to `target` except tqdm's progress bars (the harness
    draws its own, with no way to turn them off: `Task.build_all_requests` takes no `disable`)."""

    BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")

    def __init__(self, target):
        self.target, self.pending = target, ""

    def write(self, text: str) -> int:
        *lines, self.pending = re.split(r"[\r\n]", self.pending + text)
        for line in lines:
            self._pass(line)
        return len(text)

    def _pass(self, line: str) -> None:
        if line.strip() and not self.BAR.search(line):
            self.target.write(line + "\n")

    def flush(self) -> None:
        self._pass(self.pending)
        self.pending = ""
        self.target.flush()


@contextlib.contextmanager
def quiet():
    """The harness's and `datasets`' progress bars off; anything else they write still shows."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    stream = WithoutBars(sys.stderr)
    try:
        with contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.flush()
        if was:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def no_environment_probe():
    """`simple_evaluate` without the environment notes it adds to its results (which are not read
    here): its git hash runs `git describe` unguarded, whose "fatal: not a git repository" reaches
    stderr when the run is started outside a repository, and its environment report runs more
    subprocesses."""
    import lm_eval.evaluator as evaluator

    saved = {k: getattr(evaluator, k) for k in ("get_git_commit_hash", "add_env_info") if hasattr(evaluator, k)}
    if "get_git_commit_hash" in saved:
        evaluator.get_git_commit_hash = lambda: None
    if "add_env_info" in saved:
        evaluator.add_env_info = lambda results: None
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(evaluator, k, v)


def evaluate_general(model, tokenizer, general: GeneralConfig, specs: list) -> list[GeneralScore]:
    """Every task's metrics for `model` as it is now, by `lm_eval.simple_evaluate` (the global
    random generators put back afterwards)."""
    import numpy as np
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    py_state, np_state = random.getstate(), np.random.get_state()
    with offline(), quiet(), no_environment_probe(), torch.random.fork_rng(devices=[]):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=general.batch_size)
        results = simple_evaluate(model=lm, tasks=list(specs), num_fewshot=general.num_fewshot, limit=general.limit,
                                  bootstrap_iters=0, log_samples=False, task_manager=task_manager(needs_index(general)))
    random.setstate(py_state)
    np.random.set_state(np_state)
    return scores_of(results)


def scores_of(results: dict) -> list[GeneralScore]:
    """(task, metric) values of a `simple_evaluate` result, leaf tasks only, in its order."""
    out = []
    for task, n in results["n-samples"].items():
        for key, value in results["results"][task].items():
            if key in NOT_METRICS or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            out.append(GeneralScore(task, metric if filt in ("", "none") else key, float(value), int(n["effective"])))
    return out
