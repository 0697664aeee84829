"""The results schema: typed, versioned records, run summaries and stage checkpoints.

This module alone turns them into JSON and back. Reading is strict: an unknown or missing
key, a wrong type or another schema version is one error naming the file, never a silent
"-" in a report. Bump `SCHEMA_VERSION` when a field changes meaning or disappears.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config.legacy import OLDER_SCHEMAS, renamed_fields, upgrade_summary
from ..core.errors import BenchError
from ..core.metrics import MATRIX_METRICS
from ..core.parse import from_dict, to_dict
from ..sources.kinds import record_metrics

SCHEMA_VERSION = 3  # 3: `accuracy_matrix` -> `score_matrix`, `majority_baseline` -> `baseline`
# the format number of adapter tensor files and exports (their layout did not change with the schema)
TENSORS_FORMAT = 2
# a record's metric outside `general:`: a task's (one its kind records, `sources.kinds`), or perplexity
RECORD_METRICS = (*record_metrics(), "perplexity")


@dataclass
class Record:
    """One measurement, one line of records.jsonl."""

    stage: int  # 0 = before the first stage
    after_task: str | None
    task: str | None  # the task evaluated, the perplexity corpus, or the harness task (`general`)
    # a task's (core.metrics.TASK_METRICS), perplexity, or (`general`) the harness's metric name
    metric: str
    value: float
    n: int  # examples (a task's metric) or scored tokens (perplexity)
    # what a trivial predictor scores: a classification task's majority class; a prompted task's
    # base model, zero-shot (the stage-0 record of the same metric)
    baseline: float | None = None
    protocol: dict[str, Any] | None = None  # perplexity records: how it was measured
    # the initial perplexity and a prompted task's zero-shot scores (stage 0), shared by every run
    measured_once: bool | None = None
    split: Literal["validation"] | None = None  # None: the eval split (what every report reads)
    # an lm-evaluation-harness task's metric (`general:`): acc, acc_norm, ... as the harness names it
    general: bool | None = None

    @staticmethod
    def upgrade(data: dict) -> dict:
        """A record written before schema 3, its fields under their new names (`config.legacy`)."""
        return renamed_fields(data)

    def validate(self, where: str) -> None:
        if not self.general and self.metric not in RECORD_METRICS:
            raise BenchError(f"{where}.metric: {self.metric!r} is not one of {', '.join(RECORD_METRICS)}")

    def to_json(self) -> str:
        """One JSON line; the optional fields only where they apply."""
        optional = ("baseline", "protocol", "measured_once", "split", "general")
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in optional})


@dataclass
class Prediction:
    """One line of predictions.jsonl: every eval example's score on one task after one stage, in
    the eval split's order (accuracy: 1 correct, 0 wrong), so a report can resample eval examples
    and pair two runs example by example."""

    stage: int
    after_task: str
    task: str
    metric: str
    scores: list[float]
    split: Literal["validation"] | None = None  # None: the eval split

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if data["split"] is None:
            del data["split"]
        return json.dumps(data, separators=(",", ":"))


@dataclass
class Generation:
    """One line of generations.jsonl: a prompted task's greedy generations (each eval example's
    text, in the eval split's order, cut at its stop string) after one stage; stage 0 is the base
    model's, zero-shot."""

    stage: int
    after_task: str | None
    task: str
    texts: list[str]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


@dataclass
class TaskData:
    """Where a task's data came from and which rows were used."""

    version: int
    source: str | None
    train_records: int
    eval_records: int
    train_fingerprint: str
    eval_fingerprint: str


@dataclass
class StageStats:
    stage: int
    task: str
    train_seconds: float
    eval_seconds: float
    steps: int
    examples: int
    train_tokens: int
    final_loss: float
    mean_loss: float
    # the whole stage (train, evaluate, perplexity, drift; not the checkpoint write); None: not measured
    wall_seconds: float | None = None
    peak_memory_bytes: int | None = None  # over the same span; how it was measured: memory_kind
    # cuda: torch.cuda.max_memory_allocated; rss: the process's peak resident set over the stage;
    # rss-process: its peak since the process started (where the peak cannot be reset)
    memory_kind: Literal["cuda", "rss", "rss-process"] | None = None
    general_seconds: float | None = None  # of wall_seconds: the `general:` harness tasks (None: none)


@dataclass
class TrainLogEntry:
    """One line of train_log.jsonl: every `train.log_every` optimizer steps and a stage's last step."""

    stage: int
    task: str
    step: int  # optimizer step within the stage, 1-based
    global_step: int  # optimizer steps over the whole sequence (earlier stages included)
    loss: float  # mean training loss over the steps since the previous line of the stage
    lr: float  # learning rate of this step
    grad_norm: float  # L2 norm of every trained gradient of this step, before clipping
    examples: int  # training examples of the stage so far
    tokens: int  # real (unpadded) tokens of the stage so far
    tokens_per_s: float  # over the steps since the previous line (wall clock)
    seconds: float  # since the stage's training began (wall clock)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass
class Intruders:
    """Intruder dimensions after one stage (`diagnostics.intruders`): for each threshold in
    `epsilons`, how many of each adapted matrix's `top_k` singular vectors are intruders."""

    top_k: int
    epsilons: list[float]
    per_module: dict[str, list[int]]  # matrix -> one count per epsilon
    total: list[int]  # summed over the matrices, one per epsilon


@dataclass
class Recovery:
    """One earlier task under the recovery probe (`diagnostics.recovery_steps`): its score just after
    it was learned, at the run's end, and after `steps` optimizer steps of retraining on it from
    the end (the run's weights restored afterwards)."""

    task: str
    metric: str
    steps: int
    learned: float | None
    final: float | None
    recovered: float

    @property
    def share(self) -> float | None:
        """How much of the lost score the steps brought back (None: nothing was lost)."""
        if self.learned is None or self.final is None or self.learned <= self.final:
            return None
        return (self.recovered - self.final) / (self.learned - self.final)


@dataclass
class StageDrift:
    """‖ΔW‖/‖W‖ of every adapted matrix after one stage, with its mean and max (and, with
    `diagnostics:`, its intruder dimensions)."""

    stage: int
    mean: float
    max: float
    modules: int
    per_module: dict[str, float]
    intruders: Intruders | None = None


@dataclass
class PerplexitySummary:
    initial: float | None
    after_stage: list[float | None]
    final: float | None
    protocol: dict[str, Any] | None


@dataclass
class RunProgress:
    """What a run has measured so far; saved in every stage checkpoint."""

    matrix: list[list[float | None]]
    ppl_after: list[float | None]
    stages: list[StageStats] = field(default_factory=list)
    drift: list[StageDrift] = field(default_factory=list)
    records: int = 0
    train_log: int = 0  # lines of train_log.jsonl
    predictions: int = 0  # lines of predictions.jsonl
    generations: int = 0  # lines of generations.jsonl
    extra_ppl: dict[str, list[float | None]] = field(default_factory=dict)  # corpora after the primary one
    val_matrix: list[list[float | None]] | None = None  # with eval.validation: the matrix on validation rows
    # `general:` harness tasks: task -> metric -> [base model, after stage 1, ...]
    general: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)

    @classmethod
    def empty(cls, T: int) -> RunProgress:
        return cls([[None] * T for _ in range(T)], [None] * T)


@dataclass
class RunSummary:
    """summary.json: everything one (method, seed) run measured, and how."""

    schema_version: int
    label: str
    method: dict[str, Any]  # the method entry as resolved (options, label)
    seed: int
    run_key: str  # settings + seed: which checkpoints belong to this run
    settings_hash: str  # experiment settings + method options: runs differing only in seed share it
    settings: dict[str, Any]  # the experiment settings every run of the experiment shares
    status: Literal["complete", "failed"]
    error: str | None
    model: str
    protocol: str
    padding_side: str  # of training and evaluation batches
    tasks: list[str]
    num_classes: dict[str, int]  # a prompted task's: its choices (0: a target task)
    # the floor of each task's primary metric: the majority class, or a prompted task's zero-shot score
    baseline: dict[str, float]
    data: dict[str, TaskData]
    # each task's primary metric (`metric`: accuracy, or ROUGE-L for a target task) after each stage
    score_matrix: list[list[float | None]]
    perplexity: PerplexitySummary
    metrics: dict[str, float | None]  # MATRIX_METRICS by key; {} if no stage finished
    drift: list[StageDrift]
    diagnostics: dict[str, Any]  # the adapter's own (CURLoRA: column/row sampling)
    trainable_parameters: int
    head_parameters: dict[str, int]
    adapted_modules: int
    stages: list[StageStats]
    resumed_from_stage: int | None
    wall_seconds: float
    device: str
    threads: int
    versions: dict[str, str]
    git_commit: str | None
    # the continual-learning strategy and what it kept (replay: memory_examples/tokens;
    # ewc/l2: memory_floats); None = naive
    strategy: dict[str, Any] | None = None
    # index into the config's `orders` when the tasks ran in another order than listed
    # (`tasks` above is always the order they ran in); None = as listed
    order: int | None = None
    # the training regime (config.regimes): sequential, or joint (one stage over every task)
    regime: str = "sequential"
    # how the run executed (the config's `execution:` section): no part of its identity
    execution: dict[str, Any] | None = None
    # the further perplexity corpora (after the primary one, `perplexity`), by name; None: one or none
    perplexities: dict[str, PerplexitySummary] | None = None
    # with eval.validation: the accuracy matrix on the validation rows (to choose settings on)
    validation_matrix: list[list[float | None]] | None = None
    # each task's primary metric (its accuracy-matrix entries) when one is not accuracy; None: all are
    metric: dict[str, str] | None = None
    # the base model's zero-shot scores of each prompted task, by metric (measured once per experiment)
    zero_shot: dict[str, dict[str, float]] | None = None
    # `general:` harness tasks: task -> metric -> [base model (measured once), after stage 1, ...]
    general: dict[str, dict[str, list[float | None]]] | None = None
    recovery: list[Recovery] | None = None  # `diagnostics.recovery_steps`: each earlier task

    def primary(self, task: str) -> str:
        """The metric of `task`'s accuracy-matrix entries."""
        return (self.metric or {}).get(task, "accuracy")

    @staticmethod
    def upgrade(data: dict) -> dict:
        """A summary of an older schema or written before regimes existed, read as it is meant
        (`config.legacy`)."""
        return upgrade_summary(data)

    def validate(self, where: str) -> None:
        n = len(self.tasks)  # one row per stage (joint fills one), one column per task
        rows = [len(row) for row in self.score_matrix]
        if rows != [n] * n:
            raise BenchError(f"{where}.score_matrix: {len(rows)} rows of {sorted(set(rows)) or [0]} values, "
                             f"expected {n} x {n} ({n} tasks)")
        for name, matrix in (("score_matrix", self.score_matrix), ("validation_matrix", self.validation_matrix)):
            for i, row in enumerate(matrix or []):
                for j, value in enumerate(row):
                    check_score(f"{where}.{name}[{i}][{j}]", value)
        for task, value in self.baseline.items():
            check_score(f"{where}.baseline.{task}", value)
        expected = {m.key for m in MATRIX_METRICS}
        if self.metrics and set(self.metrics) != expected:
            raise BenchError(f"{where}.metrics: keys {sorted(self.metrics)}, expected {sorted(expected)}")


@dataclass
class HeadInfo:
    name: str
    num_classes: int
    head: bool = True  # False: a prompted task (it trains through the model's LM head, no head of its own)


@dataclass
class StageCheckpoint:
    """state.json of checkpoints/stage-N: how to rebuild the run and resume it after stage N."""

    schema_version: int
    stage: int
    run_key: str
    label: str
    method: dict[str, Any]
    seed: int
    model: str
    modules: list[str]
    conv1d: bool  # GPT-2 Conv1D layers (weights stored in x out)
    protocol: str
    pooling: str
    tasks: list[HeadInfo]
    hidden_size: int
    adapter_tensors: dict[str, list[int]]  # name -> shape of every tensor in adapter.safetensors
    progress: RunProgress
    rng: dict[str, Any]
    # name -> shape of every tensor in strategy.safetensors ({}: the strategy keeps none, no file)
    strategy_tensors: dict[str, list[int]] = field(default_factory=dict)


def check_score(where: str, value: Any) -> None:
    """An accuracy-like score (every primary metric: accuracy, exact match, ROUGE-L) is a number in
    [0, 1] or None (not measured); anything else would be averaged into a report silently."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise BenchError(f"{where}: {value!r} is not a score in [0, 1]")


def dump(obj: Any) -> str:
    """A schema object as indented JSON."""
    return json.dumps(to_dict(obj), indent=2) + "\n"


def parse(cls: type, data: Any, path: Path | str) -> Any:
    """A schema object from decoded JSON; any mismatch is one error naming the file."""
    if isinstance(data, dict) and "schema_version" in {f.name for f in dataclasses.fields(cls)}:
        version = data.get("schema_version")
        # a summary of an older schema is read (reports of published runs); a checkpoint is not resumed
        older = version in OLDER_SCHEMAS and hasattr(cls, "upgrade")
        if version != SCHEMA_VERSION and not older:
            raise BenchError(f"{path}: results schema version {version!r}, this curlora-bench reads "
                             f"version {SCHEMA_VERSION}; rerun with --fresh (or use the version that wrote it)")
        if older:  # read as this version: its fields renamed (`config.legacy`)
            data = {**renamed_fields(data), "schema_version": SCHEMA_VERSION}
    upgrade = getattr(cls, "upgrade", None)
    if upgrade is not None and isinstance(data, dict):
        data = upgrade(data)
    try:
        return from_dict(cls, data, cls.__name__)
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}; rerun with --fresh to discard it") from None


def load(cls: type, path: Path) -> Any:
    """Read a schema object from a JSON file (missing or undecodable: one error naming it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror}); rerun with --fresh to discard it") from None
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not UTF-8 text (damaged?); rerun with --fresh to discard it") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); rerun with --fresh to discard it") from None
    return parse(cls, data, path)


def read_lines(cls: type, path: Path) -> list[Any]:
    """Every line of a JSON-lines file (records.jsonl, train_log.jsonl) as `cls`, each checked."""
    if not path.is_file():
        return []
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BenchError(f"{path}: line {line} is not UTF-8 text (damaged?); rerun with --fresh to discard the "
                         "run") from None
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchError(f"{path}: line {i} is not valid JSON ({exc})") from None
            out.append(parse(cls, data, f"{path}: line {i}"))
    return out


def read_records(path: Path) -> list[Record]:
    """Every record of a records.jsonl, each line checked."""
    return read_lines(Record, path)


def read_predictions(path: Path) -> list[Prediction]:
    """Every line of a predictions.jsonl ([] for a run made before they were kept)."""
    return read_lines(Prediction, path)


def read_generations(path: Path) -> list[Generation]:
    """Every line of a generations.jsonl ([] when the run has no prompted task)."""
    return read_lines(Generation, path)


def read_train_log(path: Path) -> list[TrainLogEntry]:
    """Every line of a train_log.jsonl, each checked."""
    return read_lines(TrainLogEntry, path)
