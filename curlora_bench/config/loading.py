"""Reading a config: YAML (checked for alias bombs and duplicate keys) -> legacy positions moved
-> `--set` overrides -> a built-in `sequence:` expanded into `tasks:` / `orders:` -> validated
`ExperimentConfig`, data paths made absolute."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..core.errors import BenchError
from ..core.parse import declared_fields, from_dict, written_type
from .execution import ExecutionConfig, with_flags
from .experiment import ExperimentConfig
from .legacy import legacy_set_key, move_legacy_keys

# top-level keys read before the config is parsed: a built-in sequence and which of its orders
# (`expand_sequence`); they become `tasks:` and `orders:`, so they are no part of the schema
# and a run of a sequence is the run of the tasks it expands to
SEQUENCE_KEYS = ("sequence", "order")


def expand_sequence(raw: dict) -> None:
    """`sequence: NAME` (`order:` one of its orders, a list of them, or all when unset) -> the
    sequence's tasks in the first selected order as `tasks:`, and the selected orders as
    `orders:` when there are several."""
    if "sequence" not in raw:
        if "order" in raw:
            raise BenchError("order: selects orders of a built-in `sequence:`; for your own tasks give `orders:`")
        return
    from ..sources.sequences import SEQUENCES

    name, order = raw.pop("sequence"), raw.pop("order", None)
    if "tasks" in raw:
        raise BenchError("sequence: a config gives either `sequence:` (a built-in sequence's tasks and orders) "
                         "or `tasks:`, not both")
    if "orders" in raw:
        raise BenchError("orders: a sequence brings its own orders; choose among them with `order:`")
    if not isinstance(name, str):
        raise BenchError(f"sequence: expected the name of a built-in sequence, got {name!r} "
                         "(`curlora-bench sequences` lists them)")
    seq = SEQUENCES.get(name, "sequence")
    names = seq.select(order)
    raw["tasks"] = list(seq.orders[names[0]])
    if len(names) > 1:
        raw["orders"] = [list(seq.orders[n]) for n in names]


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set a.b=value` (list items by index: `methods.0.rank=16`)."""
    if "=" not in assignment:
        raise BenchError(f"--set {assignment}: expected KEY=VALUE")
    key, _, value = assignment.partition("=")
    parts = legacy_set_key(key.strip().split("."))
    if len(parts) == 1 and parts[0] in SEQUENCE_KEYS:  # read before the schema (expand_sequence)
        raw[parts[0]] = _parse_value(value)
        return
    # check the key against the schema so a typo is named, not silently added
    cls: Any = ExperimentConfig
    for depth, part in enumerate(parts):
        if cls is None:
            break
        fields = {f.name: f for f in declared_fields(cls)}
        if part not in fields:
            known = ", ".join(fields)
            raise BenchError(f"--set {key}: unknown key {'.'.join(parts[: depth + 1])!r} (expected one of: {known})")
        hint = written_type(fields[part], get_type_hints(cls))
        cls = next((a for a in getattr(hint, "__args__", (hint,)) if dataclasses.is_dataclass(a)), None)
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise BenchError(f"--set {key}: no list item {part!r}")
            node = node[int(part)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise BenchError(f"--set {key}: {'.'.join(parts[:depth])} is {node!r}, not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise BenchError(f"--set {key}: no list item {last!r}")
        node[int(last)] = _parse_value(value)
    elif isinstance(node, dict):
        node[last] = _parse_value(value)
    else:
        raise BenchError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


# anchors and aliases may share a subtree; expanded, a config never needs more nodes than this
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, path: Path) -> int:
    """Nodes of the document with every alias expanded; refuses an alias bomb before loading it."""
    count, stack = 0, [node]
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise BenchError(f"{path}: more than {MAX_YAML_NODES:,} values once its anchors/aliases are "
                             "expanded (an alias bomb?)")
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:  # YAML would keep the last silently
                        raise BenchError(f"{path}: line {k.start_mark.line + 1}: key {k.value!r} appears twice "
                                         "in one mapping")
                    seen.add(k.value)
                stack.extend((k, v))
    return count


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise BenchError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _expanded_size(node, path)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{path}: not valid YAML{where}: {problem}") from None


def raw_config(path: Path, overrides: list[str] | None = None) -> dict:
    """A config file as the mapping a user wrote, legacy keys moved, `--set`s applied and a
    `sequence:` expanded (unvalidated)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: expected a mapping at the top level")
    move_legacy_keys(raw, "")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    expand_sequence(raw)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None,
                flags: dict[str, Any] | None = None) -> tuple[ExperimentConfig, Path]:
    """Read, override and validate a config; return it and the folder relative paths resolve from.
    `flags`: a command's execution flags (`--executor ray`, ...; None: not given) over `execution:`."""
    path = Path(path)
    raw = raw_config(path, overrides)
    if flags and any(v is not None for v in flags.values()):  # before the rest is checked: `--max-runs` decides whether the size is refused
        execution = raw.get("execution")
        raw["execution"] = with_flags(from_dict(ExecutionConfig, {} if execution is None else execution,
                                                "execution"), **flags)
    cfg = from_dict(ExperimentConfig, raw, "")
    absolutize(cfg, path.resolve().parent)
    return cfg, path.resolve().parent


def resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def absolutize(cfg: ExperimentConfig, base_dir: Path) -> None:
    """Resolve relative data paths against the config file's folder (hub ids stay as they are)."""
    for task in cfg.tasks:
        if task.format in ("csv", "jsonl", "parquet"):
            task.train = str(resolve(task.train, base_dir).resolve())
            task.eval = str(resolve(task.eval, base_dir).resolve())
            if task.val is not None:
                task.val = str(resolve(task.val, base_dir).resolve())
        elif task.format == "hub" and task.path and resolve(task.path, base_dir).is_dir():
            task.path = str(resolve(task.path, base_dir).resolve())
    for p in cfg.perplexity if isinstance(cfg.perplexity, list) else [cfg.perplexity] if cfg.perplexity else []:
        if p.file:
            p.file = str(resolve(p.file, base_dir).resolve())
