"""Read a task's raw splits (files, hub, embedded) into `datasets.Dataset`s, checked."""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets import Dataset, load_dataset

from ...core.errors import BenchError, first_line
from ..assets import ensure
from . import EMBEDDED_CORPORA, EMBEDDED_TASKS, CorpusConfig, TaskConfig

datasets.disable_progress_bars()  # the runner shows its own progress
# its parsers log their own error lines; ours (which names the line, `locate_problem`) is the one
datasets.logging.set_verbosity(datasets.logging.CRITICAL)

FILE_BUILDERS = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}


def _load_file(fmt: str, path: Path, where: str, get: str | None = None, rows_field: str | None = None) -> Dataset:
    if not path.is_file():
        raise BenchError(f"{where}: data file not found: {path}" + (f"; get it: {get}" if get else ""))
    try:
        extra = {"field": rows_field} if rows_field else {}
        ds = load_dataset(FILE_BUILDERS[fmt], data_files=str(path), split="train", **extra)
    except Exception as exc:  # datasets raises many types for malformed files
        if "corresponds to no data" in str(exc):  # a header and no rows
            raise BenchError(f"{path}: split is empty (no data rows)") from None
        raise BenchError(f"{path}: cannot read as {fmt}: {locate_problem(fmt, path) or _deepest(exc)}") from None
    return ds


def _deepest(exc: BaseException) -> str:
    """The innermost cause's first line: datasets wraps the parser's error (which names the row)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return first_line(exc)


def locate_problem(fmt: str, path: Path) -> str | None:
    """Find the first malformed line of a CSV/JSONL file ourselves (datasets' message omits it)."""
    import csv
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        return f"line {line}: not UTF-8 text (byte {exc.start})"
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {i}: not valid JSON ({exc.msg}, column {exc.colno})"
            if not isinstance(row, dict):
                return f"line {i}: expected a JSON object, got {type(row).__name__}"
    elif fmt == "csv":
        try:
            rows = list(csv.reader(text.splitlines()))
        except csv.Error as exc:
            return f"not valid CSV ({exc})"
        width = len(rows[0]) if rows else 0
        for i, row in enumerate(rows[1:], 2):
            if row and len(row) != width:
                return f"line {i}: {len(row)} fields, the header has {width}"
    return None


def _load_hub(task: TaskConfig | CorpusConfig, split: str, where: str) -> Dataset:
    get = task.card.get("get")  # a pack's files, fetched by the user: where from (no hub id to fall back on)
    if get and not Path(task.path).is_dir():
        raise BenchError(f"{where}: data folder not found: {task.path} (a relative path is read beside the "
                         f"config); get it: {get}")
    try:
        return load_dataset(task.path, task.config, split=split)
    except Exception as exc:  # offline: ConnectionError, OSError, DatasetNotFoundError, ...
        raise BenchError(
            f"{where}: cannot load hub dataset {task.path!r}"
            f"{f' config {task.config!r}' if task.config else ''} split {split!r} ({first_line(exc)}). "
            "This needs a dataset hub (or a local copy: set the task's `path` to its folder); "
            "offline, use the embedded stand-ins (`curlora-bench tasks`)"
        ) from None


def load_splits(task: TaskConfig, cache_dir: str | None, where: str) -> dict[str, Dataset]:
    """Raw train/eval (and val, when the task names one) splits with the task's columns checked and
    labels mapped to 0..K-1.

    File paths are already absolute (`config.absolutize`)."""
    names = ("train", "eval", "val") if task.val is not None else ("train", "eval")
    if task.format == "embedded":
        splits = EMBEDDED_TASKS.get(task.builder, f"{where}.builder")(ensure(task.asset, cache_dir))
        sources = {"train": f"{task.name} (embedded train)", "eval": f"{task.name} (embedded eval)"}
    elif task.format == "hub":
        splits = {s: _load_hub(task, getattr(task, s), where) for s in names}
        sources = {s: f"{task.path}:{getattr(task, s)}" for s in names}
    else:
        paths = {s: Path(getattr(task, s)) for s in names}
        splits = {s: _load_file(task.format, p, f"{where}.{s}", task.card.get("get"), task.rows_field)
                  for s, p in paths.items()}
        sources = {s: str(p) for s, p in paths.items()}
    for split, rows in (("train", task.train_rows), ("eval", task.eval_rows)):
        if rows is not None:
            splits[split] = splits[split].select(range(min(rows, len(splits[split]))))
    return {s: check_split(task, ds, sources[s]) for s, ds in splits.items()}


def class_of(task: TaskConfig, raw: object, label_col: str | None, where: str) -> int | None:
    """A row's class from its raw label: an integer (or integer text), or a label's text that
    `label_map` names (O-LoRA's files label rows by name), through `label_map` when there is one;
    None: a label `label_map` leaves out (the row is dropped)."""
    mapping = task.label_map if label_col else None
    if mapping is not None and isinstance(raw, str) and not raw.strip().lstrip("-").isdigit():
        return mapping.get(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)  # one bad row makes a CSV column text: judge every row on its own
        else:
            raise BenchError(f"{where}: label {raw!r} in column {task.label!r} is not an integer")
    return raw if mapping is None else mapping.get(raw)


def check_split(task: TaskConfig, ds: Dataset, source: str) -> Dataset:
    """Columns present, labels integers (mapped through label_map), split non-empty. A prompted
    task reads its prompt's fields (and target) instead of `text`; a target task has no labels
    (its `label` column is all 0)."""
    label_col = None if task.target is not None else task.label
    classes = len(task.choices) if task.choices is not None else task.num_classes
    for col in [*task.columns, *([label_col] if label_col else [])]:
        if col not in ds.column_names:
            what = "label" if col == label_col else "target" if col == task.target else \
                "prompt field" if task.prompt is not None else "text"
            raise BenchError(
                f"{source}: missing {what} column {col!r} (columns: {', '.join(ds.column_names)})"
            )
    if task.target is not None and len(ds) and task.target in ds.column_names and isinstance(ds[0][task.target], list):
        # several reference answers (Super-NaturalInstructions' `output`): the first is trained on and scored against
        answers = [v[0] if v else "" for v in ds[task.target]]
        ds = ds.remove_columns([task.target]).add_column(task.target, answers)
    labels = list(ds[label_col]) if label_col else [0] * len(ds)
    texts = {col: list(ds[col]) for col in task.columns}
    keep = []
    mapped = []
    # data rows are numbered from 1 (a CSV's header line is not counted)
    for i, raw in enumerate(labels):
        raw = class_of(task, raw, label_col, f"{source}: row {i + 1}")
        if raw is None:
            continue
        if raw < 0 or (classes is not None and raw >= classes):
            limit = f"0..{classes - 1}" if classes else ">= 0"
            what = f" ({classes} choices)" if task.choices is not None else ""
            raise BenchError(f"{source}: row {i + 1}: label {raw} outside {limit}{what}")
        keep.append(i)
        mapped.append(raw)
    for col in task.columns:
        for i in keep:
            value = texts[col][i]
            if task.prompt is not None and col != task.target and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                continue  # a number in a prompt is text enough
            if not isinstance(value, str) or not value.strip():
                raise BenchError(f"{source}: row {i + 1}: {'target' if col == task.target else 'text'} column "
                                 f"{col!r} is empty or not text")
    if len(keep) != len(ds):
        ds = ds.select(keep)
    if label_col:
        ds = ds.remove_columns([label_col])
    elif "label" in ds.column_names:
        if "label" in task.columns:
            raise BenchError(f"{source}: a target task keeps its row labels in column 'label': rename the column "
                             "the prompt or target reads")
        ds = ds.remove_columns(["label"])
    ds = ds.add_column("label", mapped)
    if len(ds) == 0:
        raise BenchError(f"{source}: split is empty")
    return ds


def load_corpus_text(corpus: CorpusConfig, cache_dir: str | None, where: str) -> str:
    if corpus.format == "embedded":
        return EMBEDDED_CORPORA.get(corpus.builder, f"{where}.builder")(ensure(corpus.asset, cache_dir))
    if corpus.format == "hub":
        ds = _load_hub(corpus, corpus.split, where)
        if corpus.column not in ds.column_names:
            raise BenchError(f"{where}: hub corpus has no column {corpus.column!r}")
        rows = [r for r in ds[corpus.column] if r != ""] if corpus.drop_empty else ds[corpus.column]
        return corpus.join.join(rows)
    path = Path(corpus.file)
    if not path.is_file():
        raise BenchError(f"{where}.file: corpus file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise BenchError(f"{path}: corpus file is empty")
    return text
