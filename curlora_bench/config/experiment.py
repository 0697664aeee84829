"""YAML -> validated experiment config; defaults < YAML < --set overrides."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

import yaml

from ..adapters import AdapterConfig, method_dict, parse_method
from ..core.errors import BenchError
from ..core.parse import check_name, from_dict, positive, to_dict
from ..sources.tasks import CORPORA, TASKS, CorpusConfig, TaskConfig
from ..strategies.base import strategy_of
from .grid import expand, point_suffix, train_suffix


@dataclass
class TrainConfig:
    """One training stage (the same for every task)."""

    epochs: int = field(default=3, metadata={"help": "passes over each task's training records"})
    batch_size: int = field(default=8, metadata={"help": "examples per optimizer step"})
    lr: float = field(default=2.5e-4, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (torch default)"})
    max_length: int = field(default=128, metadata={"help": "tokens per example (truncated)"})
    limit: int | None = field(default=1000, metadata={"help": "train records per task (seeded subset); null = all"})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up, in optimizer steps"})
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "learning-rate schedule over the stage's optimizer steps"}
    )
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping; null = off"})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"help": "bf16 autocast (CUDA only)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model body (in place, dynamic shapes); worth it on CUDA, compile time dominates short CPU runs"})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "recompute each transformer layer's activations during backward (transformers' "
                          "non-reentrant checkpointing) instead of keeping them: less memory, more time, the "
                          "same numbers. An execution choice, so it is not part of a run's settings hash"},
    )
    dropout: Literal["model", "off"] | None = field(
        default=None,
        metadata={"help": "model: the model's own dropout is on while training (the paper's code calls "
                          "model.train()); off: the body stays in eval mode, deterministic and the same "
                          "across architectures (SmolLM2/Llama have none anyway), so only the adapter is "
                          "measured. Evaluation never has dropout. null = the protocol's: standard off, paper model"},
    )
    log_every: int = field(default=1, metadata={
        "help": "a train_log.jsonl line (and tracker point) every N optimizer steps and at a stage's last "
                "step; its loss is the mean since the previous line. Changes no result"})

    def validate(self, where: str) -> None:
        for key in ("epochs", "batch_size", "lr", "max_length", "limit", "log_every"):
            positive(where, key, getattr(self, key))
        for key in ("weight_decay", "warmup_steps", "max_grad_norm"):
            positive(where, key, getattr(self, key), allow_zero=True)


@dataclass
class EvalConfig:
    """Accuracy evaluation."""

    batch_size: int = field(default=32, metadata={"help": "examples per forward pass"})
    limit: int | None = field(default=500, metadata={"help": "eval records per task (seeded subset); null = all"})

    def validate(self, where: str) -> None:
        positive(where, "batch_size", self.batch_size)
        positive(where, "limit", self.limit)


@dataclass
class PerplexityConfig:
    """Sliding-window perplexity on a corpus, before the first stage and after each."""

    corpus: str | None = field(default=None, metadata={"help": "built-in corpus name"})
    file: str | None = field(default=None, metadata={"help": "or a plain-text file"})
    max_tokens: int | None = field(default=20000, metadata={"help": "corpus truncated to this many tokens"})
    window: int = field(default=1024, metadata={"help": "tokens per window (BOS included)"})
    stride: int = field(default=1024, metadata={"help": "window step; < window gives context tokens"})
    batch_size: int = field(default=4, metadata={"help": "windows per forward pass"})

    def validate(self, where: str) -> None:
        if (self.corpus is None) == (self.file is None):
            raise BenchError(f"{where}: give exactly one of 'corpus' or 'file'")
        for key in ("max_tokens", "window", "stride", "batch_size"):
            positive(where, key, getattr(self, key))
        if self.stride > self.window:
            raise BenchError(f"{where}.stride: {self.stride} is larger than window {self.window}")
        if self.corpus is not None:
            CORPORA.get(self.corpus, f"{where}.corpus")


@dataclass
class ExperimentConfig:
    """A task sequence run once per method and seed."""

    name: str = field(metadata={"help": "results go to results/<name>/"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "one full run per seed"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    model: str = field(default="tiny-gpt2", metadata={"help": "built-in name | hub id | local folder"})
    methods: list[Any] = field(default_factory=list, metadata={
        "help": "one independent run each; any entry may carry `train:` (overrides) and `grid:` (lists)"})
    target_modules: str | list[str] = field(
        default="auto", metadata={"help": "auto = attention Q/K/V of the architecture, or module names"}
    )
    tasks: list[Any] = field(default_factory=list, metadata={"help": "training order: names or inline tasks"})
    perplexity: PerplexityConfig | None = field(default=None, metadata={"help": "null = no perplexity"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    protocol: Literal["standard", "paper"] = field(
        default="standard", metadata={"help": "standard (corrected) or paper (reference code's choices)"}
    )
    data_seed: int = field(default=0, metadata={"help": "seed of the train/eval subsets (fixed across runs)"})
    orders: int | list[list[str]] | None = field(default=None, metadata={
        "help": "task orders: N (the listed order, then N-1 seeded distinct permutations) or a list of "
                "permutations of the task names; every method and seed runs each; null = as listed"})
    cache_dir: str | None = field(default=None, metadata={"help": "embedded-asset cache (default: env or ~/.cache)"})
    log: list[Literal["tensorboard", "mlflow"]] = field(default_factory=list, metadata={
        "help": "trackers besides train_log.jsonl: tensorboard (event files in each run folder), mlflow "
                "(MLFLOW_TRACKING_URI, default sqlite in the experiment folder); `run --log` overrides"})

    def validate(self, where: str) -> None:
        check_name("name", self.name)
        if not self.seeds:
            raise BenchError("seeds: the list is empty; give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise BenchError(f"seeds: duplicate seeds in {self.seeds}")
        for key, seed in [*((f"seeds[{i}]", s) for i, s in enumerate(self.seeds)), ("data_seed", self.data_seed)]:
            if not 0 <= seed < 2**32:  # NumPy's and datasets' seed range
                raise BenchError(f"{key}: {seed} is outside 0 .. 2**32 - 1")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise BenchError(f"device: {self.device!r} is not auto, cpu, cuda, cuda:N or mps")
        if not self.methods:
            raise BenchError("methods: the list is empty; give at least one method")
        if not self.tasks:
            raise BenchError("tasks: the list is empty; give at least one task")
        if self.train.dropout is None:
            self.train.dropout = "model" if self.protocol == "paper" else "off"
        self.methods = self._expand_methods(self.methods)
        labels = [m.display_label for m in self.methods]
        for i, label in enumerate(labels):
            # a folder of results/<name>/ (an explicit empty label is refused, not defaulted)
            check_name(f"methods[{i}].label", label if self.methods[i].label is None else self.methods[i].label,
                       "label", plus=True)
            if labels.index(label) != i:
                raise BenchError(f"methods[{i}]: label {label!r} is used twice; set `label:` to tell them apart")
        self.tasks = [parse_task(t, f"tasks[{i}]") for i, t in enumerate(self.tasks)]
        names = [t.name for t in self.tasks]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise BenchError(f"tasks[{i}].name: task {n!r} appears twice")
        if self.orders is not None:
            self.orders = task_orders(self.orders, names, self.data_seed)
        if isinstance(self.target_modules, str) and self.target_modules != "auto":
            self.target_modules = [self.target_modules]
        self.log = list(dict.fromkeys(self.log))


    def _check_method(self, entry: Any, where: str) -> AdapterConfig:
        """One method entry, parsed, with its train overrides checked against the experiment's."""
        method = parse_method(entry, where)
        for key in DATA_KEYS:
            if key in (method.train or {}):
                raise BenchError(f"{where}.train.{key}: set per experiment, not per method (the data is "
                                 "tokenised once for every method)")
        if "log_every" in (method.train or {}):
            raise BenchError(f"{where}.train.log_every: set per experiment, not per method (logging is not "
                             "part of what a method is)")
        self.train_for(method, where)
        return method

    def _expand_methods(self, entries: list[Any]) -> list[AdapterConfig]:
        """Grids expanded, options that follow the protocol filled in, labels made explicit."""
        out = []
        for i, entry in enumerate(entries):
            points = expand(entry, f"methods[{i}]", self._check_method)
            group = []
            for raw, where, point in points:
                method = self._check_method(raw, where)
                method.follow_protocol(self.protocol)  # resolved here so config.yaml and run keys show it
                explicit = isinstance(raw, dict) and raw.get("label") is not None
                if explicit and point:
                    method.label = raw["label"] + point_suffix(point, list(point))
                elif not explicit:
                    method.label = method.display_label + strategy_suffix(method.strategy) + train_suffix(method.train)
                group.append((method, point))
            labels = [m.display_label for m, _ in group]
            if len(set(labels)) < len(labels):  # grid keys the default label does not show
                for method, point in group:
                    method.label += point_suffix(point, [k for k in point if not k.startswith(("train.", "strategy."))])
            out += [m for m, _ in group]
        return out

    def train_for(self, method: AdapterConfig, where: str = "") -> TrainConfig:
        """The experiment's training settings with the method's own `train:` overrides."""
        if not method.train:
            return self.train
        return from_dict(TrainConfig, {**to_dict(self.train), **method.train}, f"{where or method.display_label}.train")


def strategy_suffix(options: dict[str, Any] | None) -> str:
    """'+replay64' for a method with a strategy, '' for naive."""
    return strategy_of(options).suffix if options else ""


# Train keys that shape the tokenised data, shared by every method of an experiment.
DATA_KEYS = ("max_length", "limit")


def parse_task(entry: Any, where: str) -> TaskConfig:
    if isinstance(entry, str):
        return copy.deepcopy(TASKS.get(entry, where))
    if isinstance(entry, dict) and set(entry) == {"name"} and entry["name"] in TASKS:
        return copy.deepcopy(TASKS.get(entry["name"], where))
    return from_dict(TaskConfig, entry, where)


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
    parts = key.strip().split(".")
    # check the key against the schema so a typo is named, not silently added
    cls: Any = ExperimentConfig
    for depth, part in enumerate(parts):
        if cls is None:
            break
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            known = ", ".join(fields)
            raise BenchError(f"--set {key}: unknown key {'.'.join(parts[: depth + 1])!r} (expected one of: {known})")
        hint = get_type_hints(cls)[part]
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


def load_config(path: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, Path]:
    """Read, override and validate a config; return it and the folder relative paths resolve from."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: expected a mapping at the top level")
    for assignment in overrides or []:
        apply_override(raw, assignment)
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
        elif task.format == "hub" and task.path and resolve(task.path, base_dir).is_dir():
            task.path = str(resolve(task.path, base_dir).resolve())
    if cfg.perplexity and cfg.perplexity.file:
        cfg.perplexity.file = str(resolve(cfg.perplexity.file, base_dir).resolve())


def resolved_dict(cfg: ExperimentConfig) -> dict:
    """The config as run: defaults filled in, built-in tasks expanded, labels explicit."""
    data = to_dict(cfg)
    data["methods"] = [method_dict(m) for m in cfg.methods]
    return data


# Keys a run of an experiment does not share with the others (methods, seeds and orders may grow),
# and `log`, which only says where progress goes: none of them is part of what the experiment measures.
RUN_LOCAL_KEYS = ("name", "seeds", "methods", "cache_dir", "orders", "log")


def experiment_settings(resolved: dict) -> dict:
    """The part of a resolved config every run of an experiment shares, as plain JSON data."""
    return json.loads(json.dumps({k: v for k, v in resolved.items() if k not in RUN_LOCAL_KEYS}))


# Train keys that change how a run executes or what it logs (memory, speed, train_log.jsonl),
# never its numbers: the settings record them, but a run keeps its identity (settings hash, run
# key, the folder's config check, its finished stages) when only these change.
EXECUTION_KEYS = ("gradient_checkpointing", "log_every")


def without_execution_keys(part: dict) -> dict:
    """Experiment settings or a method's options as far as they decide the numbers."""
    if not isinstance(part.get("train"), dict):
        return part
    return {**part, "train": {k: v for k, v in part["train"].items() if k not in EXECUTION_KEYS}}


def _digest(data: dict) -> str:
    data = {**data, "experiment": without_execution_keys(data["experiment"]),
            "method": without_execution_keys(data["method"])}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def settings_hash(cfg: ExperimentConfig, method: AdapterConfig) -> str:
    """What one point of an experiment is: its settings and the method's options (not the seed)."""
    return _digest({"experiment": experiment_settings(resolved_dict(cfg)), "method": method_dict(method)})


def run_key(cfg: ExperimentConfig, method: AdapterConfig, seed: int, order: list[str] | None = None) -> str:
    """Identity of one run: the experiment's settings, the method's options, the seed and the
    task order when it is not the listed one."""
    extra = {"order": order} if order is not None else {}
    return _digest({"experiment": experiment_settings(resolved_dict(cfg)), "method": method_dict(method),
                    "seed": seed, **extra})


def task_orders(orders: int | list[list[str]], names: list[str], seed: int) -> list[list[str]]:
    """`orders: N` -> the listed order and N-1 seeded distinct permutations; a list is checked."""
    if isinstance(orders, int):
        positive("", "orders", orders)
        if orders > math.factorial(len(names)):
            raise BenchError(f"orders: {orders} distinct orders of {len(names)} tasks do not exist "
                             f"(at most {math.factorial(len(names))})")
        out = [list(names)]
        gen = random.Random(seed)
        while len(out) < orders:
            perm = gen.sample(names, len(names))
            if perm not in out:
                out.append(perm)
        return out
    for i, perm in enumerate(orders):
        if sorted(perm) != sorted(names):
            raise BenchError(f"orders[{i}]: {perm} is not a permutation of the tasks {names}")
        if orders.index(perm) != i:
            raise BenchError(f"orders[{i}]: {perm} is listed twice")
    if not orders:
        raise BenchError("orders: the list is empty; give at least one order (or null)")
    return [list(p) for p in orders]


def corpus_config(p: PerplexityConfig) -> CorpusConfig:
    if p.corpus is not None:
        return CORPORA.get(p.corpus, "perplexity.corpus")
    return CorpusConfig(name=Path(p.file).name, format="text", file=p.file)
