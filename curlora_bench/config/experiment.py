"""The experiment schema: validated dataclasses, method grids expanded, labels made explicit,
and the identity of each run (`config.identity`). Reading YAML and `--set` is `config.loading`."""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..adapters import adapter_of
from ..core.errors import BenchError
from ..core.parse import check_name, from_dict, positive, short_value, to_dict
from ..core.protocol import Protocol
from ..sources.tasks import CORPORA, TASKS, CorpusConfig, TaskConfig, same_file
from ..strategies import strategy_suffix
from .execution import ExecutionConfig
from .grid import expand, grid_points, point_suffix, train_suffix
from .identity import RunIdentity
from .legacy import hashed_joint, is_legacy_joint, unwrap_joint
from .methods import MethodEntry, method_dict, parse_method, regime_of
from .regimes import REGIMES

# upper bounds of integer train settings: beyond them a run never ends (or never starts) in practice
BOUNDS = {"epochs": 10_000, "batch_size": 1 << 20, "warmup_steps": 1 << 30}


@dataclass
class TrainConfig:
    """One training stage (the same for every task)."""

    epochs: int = field(default=3, metadata={"help": "passes over each task's training records"})
    batch_size: int = field(default=8, metadata={"help": "examples per optimizer step"})
    lr: float = field(default=2.5e-4, metadata={"help": "AdamW peak learning rate"})
    head_lr: float | None = field(default=None, metadata={
        "help": "peak learning rate of the task heads (their own AdamW group, the same schedule), so a sweep "
                "over the adapter's lr keeps the heads' learning fixed; null = lr (the heads learn at the "
                "adapter's rate)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (torch default)"})
    max_length: int = field(default=128, metadata={"help": "tokens per example (truncated)"})
    limit: int | None = field(default=1000, metadata={"help": "train records per task (seeded subset); null = all"})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up, in optimizer steps"})
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(
        default="cosine", metadata={"help": "learning-rate schedule over the stage's optimizer steps"}
    )
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping; null = off"})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={
        "help": "bf16: autocast to bfloat16 for training, evaluation, perplexity, choice scoring and generation "
                "(trainable parameters and optimizer state stay fp32), on a CUDA GPU or a CPU with native "
                "bf16 (AVX-512 BF16, AMX, Arm BF16); refused elsewhere, where it would be emulated about "
                "four times slower than fp32. Changes numbers: part of a run's identity"})
    dropout: Literal["model", "off"] | None = field(
        default=None,
        metadata={"help": "model: the model's own dropout is on while training (the paper's code calls "
                          "model.train()); off: the body stays in eval mode, deterministic and the same "
                          "across architectures (SmolLM2/Llama have none anyway), so only the adapter is "
                          "measured. Evaluation never has dropout. null = the protocol's: standard off, paper model"},
    )

    def validate(self, where: str) -> None:
        for key in ("epochs", "batch_size", "lr", "head_lr", "max_length", "limit"):
            positive(where, key, getattr(self, key))
        for key, bound in BOUNDS.items():  # an integer the float check does not catch (10**30 epochs)
            value = getattr(self, key)
            if value is not None and value > bound:
                raise BenchError(f"{where}.{key}: {value:,} is more than {bound:,}; a typo? (the run would not end)")
        for key in ("weight_decay", "warmup_steps", "max_grad_norm"):
            positive(where, key, getattr(self, key), allow_zero=True)


@dataclass
class EvalConfig:
    """Accuracy evaluation."""

    batch_size: int = field(default=32, metadata={"help": "examples per forward pass"})
    limit: int | None = field(default=500, metadata={"help": "eval records per task (seeded subset); null = all"})
    validation: int | None = field(default=None, metadata={
        "help": "validation examples per task, scored after every stage beside eval (to choose settings on, "
                "`report --select-on validation`): a task's own `val` split, else the training rows after the train "
                "subset (never a train or eval row); null = none"})
    lookahead: bool = field(default=False, metadata={
        "help": "also score each task that has a base-model score (prompted tasks) after every stage before its "
                "own, filling the score matrix above its diagonal: forward transfer (FWT) in the report"})

    def validate(self, where: str) -> None:
        if not isinstance(self.lookahead, bool):
            raise BenchError(f"{where}.lookahead: expected true or false, got {self.lookahead!r}")
        positive(where, "batch_size", self.batch_size)
        positive(where, "limit", self.limit)
        positive(where, "validation", self.validation)


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


# data file extensions a harness task's local copy may have, and the `datasets` builder that reads each
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# what lm-evaluation-harness calls its splits (a `data_files:` key names one of them)
HARNESS_SPLITS = ("train", "validation", "test")


@dataclass
class DiagnosticsConfig:
    """Per-stage diagnostics of what forgetting is made of (opt-in: each costs time)."""

    intruders: bool = field(default=True, metadata={
        "help": "count intruder dimensions of every adapted matrix after each stage: of its top_k singular "
                "vectors, those whose largest |cosine| with every singular vector of the pre-trained matrix is "
                "below an epsilon (Shuttleworth et al. 2024); two SVDs per matrix and stage"})
    top_k: int = field(default=10, metadata={"help": "highest-ranking singular vectors examined (the paper's k = 10)"})
    epsilons: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9], metadata={
        "help": "cosine thresholds, each counted apart (the paper sweeps them; PEFT's mitigation uses 0.5)"})
    recovery_steps: int | None = field(default=None, metadata={
        "help": "after the last stage, retrain the final model on each earlier task for this many optimizer steps "
                "(weights restored after each) and score it: how much lost score returns (spurious vs real "
                "forgetting, Zheng et al. 2025); null = no recovery probe"})

    def validate(self, where: str) -> None:
        positive(where, "top_k", self.top_k)
        positive(where, "recovery_steps", self.recovery_steps)
        if not isinstance(self.epsilons, list) or not self.epsilons or \
                not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 1 for e in self.epsilons):
            raise BenchError(f"{where}.epsilons: give a list of cosine thresholds in (0, 1], got {self.epsilons!r}")


@dataclass
class GeneralConfig:
    """General ability: lm-evaluation-harness tasks scored on the base model once per experiment and on
    the adapted model after every stage (in memory), each metric a record."""

    tasks: list[Any] = field(default_factory=list, metadata={
        "help": "harness tasks: a built-in probe (brown_next_sentence_1k, nyt_cloze_1k; their first versions "
                "brown_next_sentence, nyt_cloze), a harness task name "
                "(hellaswag, arc_challenge, winogrande: needs the hub or its HF datasets cache), a path to a "
                "task YAML, or {task: <harness name>, data_files: {<split>: <local .jsonl/.parquet/.csv>}} for "
                "a harness task over a local copy of its data"})
    limit: int | None = field(default=200, metadata={
        "help": "examples per task (the harness's first N); null = all"})
    num_fewshot: int | None = field(default=None, metadata={
        "help": "few-shot examples per prompt; null = each task's own default (0 for the probes)"})
    batch_size: int = field(default=16, metadata={"help": "requests per forward pass (the harness's batch_size)"})

    def validate(self, where: str) -> None:
        if not isinstance(self.tasks, list) or not self.tasks:
            raise BenchError(f"{where}.tasks: give at least one harness task (a name, a YAML path or "
                             "{task: NAME, data_files: {SPLIT: FILE}})")
        for i, entry in enumerate(self.tasks):
            check_harness_entry(entry, f"{where}.tasks[{i}]")
        positive(where, "limit", self.limit)
        positive(where, "num_fewshot", self.num_fewshot, allow_zero=True)
        positive(where, "batch_size", self.batch_size)


def check_harness_entry(entry: Any, where: str) -> None:
    """A task name, an existing YAML file, or {task, data_files} with existing data files; whether a
    name is one the harness knows is checked when the harness is loaded (`run.general.check_general`)."""
    if isinstance(entry, str):
        if not entry.strip():
            raise BenchError(f"{where}: an empty task name")
        if entry.endswith((".yaml", ".yml")) and not Path(entry).is_file():
            raise BenchError(f"{where}: task YAML not found: {entry}")
        return
    if not isinstance(entry, dict) or set(entry) != {"task", "data_files"}:
        raise BenchError(f"{where}: expected a task name, a YAML path or {{task: NAME, data_files: {{SPLIT: FILE}}}}, "
                         f"got {entry!r}")
    if not isinstance(entry["task"], str) or not entry["task"].strip():
        raise BenchError(f"{where}.task: expected a harness task name, got {entry['task']!r}")
    files = entry["data_files"]
    if not isinstance(files, dict) or not files:
        raise BenchError(f"{where}.data_files: expected {{SPLIT: FILE}} with SPLIT one of {', '.join(HARNESS_SPLITS)}")
    for split, path in files.items():
        if split not in HARNESS_SPLITS:
            raise BenchError(f"{where}.data_files.{split}: not a split (expected one of {', '.join(HARNESS_SPLITS)})")
        if not isinstance(path, str) or Path(path).suffix not in DATA_FORMATS:
            raise BenchError(f"{where}.data_files.{split}: {path!r} is not a {'/'.join(DATA_FORMATS)} file")
        if not Path(path).is_file():
            raise BenchError(f"{where}.data_files.{split}: file not found: {path}")
    if len({DATA_FORMATS[Path(p).suffix] for p in files.values()}) > 1:
        raise BenchError(f"{where}.data_files: every split must have the same format")


@dataclass
class ExperimentConfig:
    """A task sequence run once per method and seed."""

    name: str = field(metadata={"help": "results go to results/<name>/"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "one full run per seed"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    model: str = field(default="tiny-gpt2", metadata={"help": "built-in name | hub id | local folder"})
    methods: list[MethodEntry] = field(default_factory=list, metadata={
        "written": list[Any],  # entries and grids, parsed and expanded by `parse_written`
        "help": "one independent run each; any entry may carry `train:` (overrides) and `grid:` (lists)"})
    target_modules: str | list[str] = field(
        default="auto", metadata={"help": "auto = attention Q/K/V of the architecture, or module names"}
    )
    tasks: list[TaskConfig] = field(default_factory=list, metadata={
        "written": list[Any], "help": "training order: names or inline tasks"})
    perplexity: PerplexityConfig | list[PerplexityConfig] | None = field(default=None, metadata={
        "help": "a corpus, or a list of them (the first is the primary one: perplexity drift; each further one "
                "is measured alike and reported in a row of its own); null = no perplexity"})
    general: GeneralConfig | None = field(default=None, metadata={
        "help": "lm-evaluation-harness tasks before the first stage and after every stage (general ability: "
                "its drop is a forgetting axis of `report --forgetting general`); null = none"})
    diagnostics: DiagnosticsConfig | None = field(default=None, metadata={
        "help": "diagnostics of what forgetting is made of (intruder dimensions per stage, a recovery probe at the end); null = none"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    protocol: Literal["standard", "paper"] = field(
        default="standard", metadata={"help": "standard (corrected) or paper (reference code's choices)"}
    )
    data_seed: int | Literal["per-run"] = field(default=0, metadata={
        "help": "seed of the train/eval subsets (the same rows for every run); per-run: each run seed draws its own "
                "train subset (eval and validation rows stay data_seed 0's, so runs still pair example by example)"})
    orders: list[list[str]] | None = field(default=None, metadata={
        "written": int | list[list[str]] | None,  # N: drawn by `parse_written`
        "help": "task orders: N (the listed order, then N-1 seeded distinct permutations) or a list of "
                "permutations of the task names; every method and seed runs each; null = as listed"})
    execution: ExecutionConfig = field(default_factory=ExecutionConfig, metadata={
        "help": "how runs execute (trackers, logging, memory, compile, executor, cache); no part of a run's identity"})
    # the entry each method came from, for messages: (`methods[k]`, its grid point or None)
    origins: list[tuple[str, str | None]] = field(default_factory=list, metadata={"derived": True})

    @classmethod
    def parse_written(cls, values: dict[str, Any], written: dict[str, Any], where: str) -> ExperimentConfig:
        """The config from its checked fields (`values`) and its entries as written: method entries
        parsed and grids expanded (labels explicit), tasks looked up or parsed, task orders drawn."""
        cfg = cls(**values)
        cfg.validate(where)
        methods, tasks = written.get("methods", []), written.get("tasks", [])
        if not methods:
            raise BenchError("methods: the list is empty; give at least one method")
        if not tasks:
            raise BenchError("tasks: the list is empty; give at least one task")
        cfg.check_protocol()
        cfg.check_size(methods, written.get("orders"))
        cfg.methods, cfg.origins = cfg._expand_methods(methods)
        cfg.check_labels()
        cfg.tasks = [parse_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)]
        names = [t.name for t in cfg.tasks]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise BenchError(f"tasks[{i}].name: task {n!r} appears twice")
        cfg._check_prompted()
        if written.get("orders") is not None:
            cfg.orders = task_orders(written["orders"], names, cfg.subset_seed)
        cfg.check_corpora()
        return cfg

    def validate(self, where: str) -> None:
        """The fields that need nothing else (`parse_written` checks the rest, in this order)."""
        check_name("name", self.name)
        if not self.seeds:
            raise BenchError("seeds: the list is empty; give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise BenchError(f"seeds: duplicate seeds in {self.seeds}")
        data_seed = [("data_seed", self.data_seed)] if isinstance(self.data_seed, int) else []
        for key, seed in [*((f"seeds[{i}]", s) for i, s in enumerate(self.seeds)), *data_seed]:
            if not 0 <= seed < 2**32:  # NumPy's and datasets' seed range
                raise BenchError(f"{key}: {seed} is outside 0 .. 2**32 - 1")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise BenchError(f"device: {self.device!r} is not auto, cpu, cuda, cuda:N or mps")

    def check_protocol(self) -> None:
        """The protocol's choices where the config leaves them open, and what it rules out."""
        if self.data_seed == "per-run" and self.protocol == "paper":
            raise BenchError("data_seed: per-run draws seeded subsets; the paper protocol takes the first rows")
        if self.train.dropout is None:
            self.train.dropout = Protocol.of(self.protocol).dropout

    def check_labels(self) -> None:
        """Every label a folder name (an explicit empty label is refused, not defaulted), each used once."""
        seen: dict[str, int] = {}
        for i, method in enumerate(self.methods):
            label = method.display_label
            # a folder of results/<name>/ (an explicit empty label is refused, not defaulted)
            check_name(f"{self.origin(i)}.label", label if method.label is None else method.label, "label", plus=True)
            if label in seen:
                (entry, point), (other, first) = self._origin_parts(i), self._origin_parts(seen[label])
                if entry == other:  # two points of one grid
                    raise BenchError(f"{entry}.grid: its points {first} and {point} both get the label {label!r}; "
                                     "give the grid distinct values (or set `label:` per entry)")
                raise BenchError(f"{self.origin(i)}: label {label!r} is used twice (also by {self.origin(seen[label])}); "
                                 "set `label:` to tell them apart")
            seen[label] = i

    def check_corpora(self) -> None:
        """Perplexity corpora and harness tasks listed once each; target modules as a list."""
        if isinstance(self.perplexity, list):
            if not self.perplexity:
                raise BenchError("perplexity: the list is empty; give a corpus, or null for no perplexity")
            for i, p in enumerate(self.perplexity):
                for j, q in enumerate(self.perplexity[:i]):
                    if (p.corpus is not None and p.corpus == q.corpus) or \
                            (p.file is not None and q.file is not None and same_file(p.file, q.file)):
                        raise BenchError(f"perplexity[{i}]: corpus {p.corpus or p.file!r} is listed twice (also "
                                         f"perplexity[{j}]{'' if p.corpus or p.file == q.file else f' as {q.file!r}'})")
        if self.general is not None:
            check_general_names(self.general)
        if isinstance(self.target_modules, str) and self.target_modules != "auto":
            self.target_modules = [self.target_modules]

    def _check_prompted(self) -> None:
        """A prompted task trains through the model's own LM head and adds no head: a method that
        trains nothing but task heads (head-only) would have nothing to train there."""
        prompted = [t.name for t in self.tasks if not t.task_kind.has_head]
        for i, method in enumerate(self.methods):
            if prompted and adapter_of(method).trains_only_heads:
                raise BenchError(f"methods[{i}]: {method.display_label} trains only task heads, and prompted task "
                                 f"{prompted[0]!r} has none (it trains through the model's LM head): nothing to "
                                 "train; drop that method or use classification tasks")

    def _check_method(self, entry: Any, where: str) -> MethodEntry:
        """One method entry, parsed, with its train overrides checked against the experiment's."""
        method = parse_method(entry, where)
        for key in method.train or {}:
            if key in DATA_KEYS:
                raise BenchError(f"{where}.train.{key}: set per experiment, not per method (the data is "
                                 "tokenised once for every method)")
            if key == "precision":
                raise BenchError(f"{where}.train.precision: set per experiment, not per method (the base model's "
                                 "perplexity and zero-shot scores are measured once for every method, in it)")
            if key in EXECUTION_TRAIN_KEYS:
                raise BenchError(f"{where}.train.{key}: an execution option, set for the whole experiment in "
                                 f"execution.{key} (it is no part of what a method is)")
        self.train_for(method, where)
        return method

    def check_size(self, methods: list[Any], orders: Any) -> None:
        """Refuse more runs than `execution.max_runs`, counted from the grids' list lengths and the
        `orders:` value as written, before anything is expanded (a typo of a 10**9-point grid is one
        line, at once)."""
        limit = self.execution.max_runs
        points = [grid_points(entry) for entry in methods]
        orders = orders if isinstance(orders, int) and not isinstance(orders, bool) else \
            len(orders) if isinstance(orders, list) else 1
        orders = max(orders, 1)
        total = sum(points) * orders * len(self.seeds)
        if total <= limit:
            return
        biggest = max(range(len(points)), key=points.__getitem__)
        where = f"methods[{biggest}].grid" if points[biggest] > limit else "orders" if orders > limit else "methods"
        n = sum(points)  # a method point: an entry without a grid, or one point of a grid
        parts = [f"{n:,} method point{'s' if n != 1 else ''}", *([f"{orders:,} task orders"] if orders > 1 else []),
                 *([f"{len(self.seeds)} seeds"] if len(self.seeds) > 1 else [])]
        raise BenchError(f"{where}: {total:,} runs ({' x '.join(parts)}), more than execution.max_runs ({limit:,}); "
                         "raise the limit (run --max-runs N, or execution.max_runs: N) to run them all")

    def origin(self, i: int) -> str:
        """The entry the user wrote for method `i`: `methods[k]`, or a grid point of it."""
        entry, point = self._origin_parts(i)
        return f"{entry} (grid point {point})" if point else entry

    def _origin_parts(self, i: int) -> tuple[str, str | None]:
        return self.origins[i] if i < len(self.origins) else (f"methods[{i}]", None)

    def _expand_methods(self, entries: list[Any]) -> tuple[list[MethodEntry], list[tuple[str, str | None]]]:
        """Grids expanded, options that follow the protocol filled in, labels made explicit; with
        the entry (and grid point) each came from."""
        out, origins = [], []
        for i, entry in enumerate(entries):
            if is_legacy_joint(entry):  # the spelling before `regime:` (config.legacy)
                entry = unwrap_joint(entry, f"methods[{i}]")
            points = expand(entry, f"methods[{i}]", self._check_method)
            group = []
            for raw, where, point in points:
                method = self._check_method(raw, where)
                method.follow_protocol(self.protocol)  # resolved here so config.yaml and run keys show it
                explicit = isinstance(raw, dict) and raw.get("label") is not None
                if explicit and point:
                    method.label = raw["label"] + point_suffix(point, list(point))
                elif not explicit:
                    method.label = (REGIMES.get(regime_of(method)).label_prefix() + method.display_label
                                    + strategy_suffix(method.strategy) + train_suffix(method.train))
                group.append((method, point))
                origins.append((where, ", ".join(f"{k}={short_value(v)}" for k, v in point.items()) or None))
            labels = [m.display_label for m, _ in group]
            if len(set(labels)) < len(labels):  # grid keys the default label does not show
                for method, point in group:
                    method.label += point_suffix(point, [k for k in point if not k.startswith(("train.", "strategy."))])
            out += [m for m, _ in group]
        return out, origins

    @property
    def subset_seed(self) -> int:
        """The seed of the shared subsets: eval and validation rows, and train rows unless per-run."""
        return self.data_seed if isinstance(self.data_seed, int) else 0

    def train_for(self, method: MethodEntry, where: str = "") -> TrainConfig:
        """The experiment's training settings with the method's own `train:` overrides."""
        if not method.train:
            return self.train
        return from_dict(TrainConfig, {**to_dict(self.train), **method.train}, f"{where or method.display_label}.train")

    def identity(self, method: MethodEntry, seed: int, order: list[str] | None = None,
                 resolved: dict[str, Any] | None = None) -> RunIdentity:
        """The identity of one run of this experiment (see `config.identity`); `resolved`:
        `resolved_dict(self)`, when the caller has it. A `head_lr` equal to the run's own `lr`
        computes what no `head_lr` computes, so it is the same run."""
        settings, entry = resolved if resolved is not None else resolved_dict(self), method_dict(method)
        hashed_settings, hashed = settings, method
        train = self.train_for(method)
        if train.head_lr is not None and train.head_lr == train.lr:
            hashed_settings = {**settings, "train": {**settings["train"], "head_lr": None}}
            if method.train and "head_lr" in method.train:
                hashed = copy.deepcopy(method)
                hashed.train = {k: v for k, v in method.train.items() if k != "head_lr"} or None
        return RunIdentity.of(settings, entry, seed, order, hashed_method=hashed_form(hashed, self.protocol)
                              or (method_dict(hashed) if hashed is not method else None),
                              hashed_settings=hashed_settings)


# Train keys that shape the tokenised data, shared by every method of an experiment.
DATA_KEYS = ("max_length", "limit")
# Execution options a method's `train:` may not hold (they were train keys once).
EXECUTION_TRAIN_KEYS = ("gradient_checkpointing", "log_every", "compile")


def hashed_form(method: MethodEntry, protocol: str) -> dict[str, Any] | None:
    """The form a method entry is hashed in when it differs from `method_dict`: a joint entry as
    `{method: joint, label, [train], adapter: {...}}`, as joint training was written before
    regimes existed, so those runs keep their run keys (`config.identity`)."""
    if method.regime is None:
        return None
    inner = copy.deepcopy(method)
    inner.label, inner.train, inner.regime = None, None, None
    inner.follow_protocol(protocol)
    return hashed_joint(method.regime, method.display_label, method.train, method_dict(inner))


def check_general_names(general: GeneralConfig) -> None:
    """The same harness task twice would write the same records twice."""
    seen: dict[str, int] = {}
    for i, entry in enumerate(general.tasks):
        key = entry if isinstance(entry, str) else entry["task"]
        if key in seen:
            raise BenchError(f"general.tasks[{i}]: {key!r} is listed twice (also general.tasks[{seen[key]}])")
        seen[key] = i


def parse_task(entry: Any, where: str) -> TaskConfig:
    if isinstance(entry, str):
        return copy.deepcopy(TASKS.get(entry, where))
    if isinstance(entry, dict) and set(entry) == {"name"} and entry["name"] in TASKS:
        return copy.deepcopy(TASKS.get(entry["name"], where))
    return from_dict(TaskConfig, entry, where)


def resolved_dict(cfg: ExperimentConfig) -> dict:
    """The config as run: defaults filled in, built-in tasks expanded, labels explicit."""
    data = to_dict(cfg)
    data["methods"] = [method_dict(m) for m in cfg.methods]
    return data


def task_orders(orders: int | list[list[str]], names: list[str], seed: int) -> list[list[str]]:
    """`orders: N` -> the listed order and N-1 seeded distinct permutations; a list is checked."""
    if isinstance(orders, int):
        positive("", "orders", orders)
        possible = _factorial_up_to(len(names), orders)
        if orders > possible:
            raise BenchError(f"orders: {orders} distinct orders of {len(names)} tasks do not exist "
                             f"(at most {possible})")
        out, seen = [list(names)], {tuple(names)}
        gen = random.Random(seed)
        while len(out) < orders:
            perm = gen.sample(names, len(names))
            if tuple(perm) not in seen:
                seen.add(tuple(perm))
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


def _factorial_up_to(n: int, bound: int) -> int:
    """n!, or the first partial product above `bound` (enough to compare, without the huge number)."""
    out = 1
    for k in range(2, n + 1):
        out *= k
        if out > bound:
            break
    return out


def corpus_config(p: PerplexityConfig, where: str = "perplexity") -> CorpusConfig:
    if p.corpus is not None:
        return CORPORA.get(p.corpus, f"{where}.corpus")
    return CorpusConfig(name=Path(p.file).name, format="text", file=p.file)
