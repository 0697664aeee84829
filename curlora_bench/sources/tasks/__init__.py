"""Task and corpus definitions: built-ins are versioned YAML files beside this module.

Embedded tasks and corpora are built from their asset's files by a builder of `embedded.py`,
found by name in `EMBEDDED_TASKS` / `EMBEDDED_CORPORA` (each imported on its first lookup).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ...core.errors import BenchError
from ...core.parse import check_name, from_dict, positive
from ...core.registry import Registry
from ..kinds import (
    KINDS,
    PROMPTED_METRICS,
    KindSpec,
    PromptedSpec,
    check_kind,
    inferred_kind,
    prompt_fields,
)

Format = Literal["csv", "jsonl", "parquet", "hub", "embedded"]
# the fields of a prompted task (its kind's, `sources.kinds`): left out of a run's identity while unset
PROMPT_FIELDS = PromptedSpec.fields
__all__ = ["CORPORA", "EMBEDDED_CORPORA", "EMBEDDED_TASKS", "PROMPTED_METRICS", "PROMPT_FIELDS", "TASKS", "CorpusConfig",
           "TaskConfig", "check_paper_overrides", "prompt_fields", "same_file"]


@dataclass
class TaskConfig:
    """A task: where its splits come from, which columns to read, and (prompted) how it is asked."""

    name: str = field(metadata={"help": "task name (unique in a config)"})
    format: Format = field(default="csv", metadata={"help": "csv | jsonl | parquet | hub | embedded"})
    train: str | None = field(default=None, metadata={"help": "train file (hub: split name)"})
    eval: str | None = field(default=None, metadata={"help": "eval file (hub: split name)"})
    val: str | None = field(default=None, metadata={
        "help": "validation file (hub: split name), read with `eval.validation`; null = rows of the train split"})
    path: str | None = field(default=None, metadata={"help": "hub dataset id or local dataset folder"})
    config: str | None = field(default=None, metadata={"help": "hub dataset config name"})
    rows_field: str | None = field(default=None, metadata={
        "help": "jsonl: the key whose list holds the rows when a file is one JSON object (Super-NaturalInstructions "
                "task files: Instances); null = the file is the rows"})
    builder: str | None = field(default=None, metadata={"help": "embedded: the builder's name"})
    asset: str | None = field(default=None, metadata={"help": "embedded: the asset it is built from"})
    text: list[str] = field(default_factory=lambda: ["text"], metadata={"help": "one or two text columns"})
    label: str = field(default="label", metadata={"help": "integer label column"})
    num_classes: int | None = field(default=None, metadata={"help": "inferred from train labels if unset"})
    label_map: dict[int | str, int] | None = field(
        default=None, metadata={"help": "raw label (an integer, or a label's text) -> class; rows with other "
                                        "labels are dropped"}
    )
    train_rows: int | None = field(default=None, metadata={"help": "use only the first N raw train rows"})
    eval_rows: int | None = field(default=None, metadata={"help": "use only the first N raw eval rows"})
    description: str = field(default="", metadata={"help": "one line shown by `curlora-bench tasks`"})
    version: int = field(default=1, metadata={"help": "definition version (recorded in results)"})
    card: dict[str, str] = field(default_factory=dict, metadata={"help": "source, licence, notes"})
    paper: dict[str, Any] | None = field(
        default=None, metadata={"help": "overrides applied under `protocol: paper` (the reference code's splits)"}
    )
    kind: str | None = field(default=None, metadata={
        "help": "task kind (see `sources/kinds.py`): classification | prompted | ...; null = from the fields "
                "(prompted when `prompt:` is set)"})
    prompt: str | None = field(default=None, metadata={
        "help": "a prompted task: a template over the row's columns ('Review: {text}\\nSentiment:'), answered "
                "through the model's own LM head (loss on the answer tokens only; no head); give choices or target"})
    choices: list[str] | None = field(default=None, metadata={
        "help": "prompted: the answer text of each class (label i -> choices[i], e.g. [' negative', ' positive']); "
                "scored by the log-likelihood of each choice, and by greedy generation (exact match)"})
    target: str | None = field(default=None, metadata={
        "help": "prompted: the column holding the answer text; scored by greedy generation (ROUGE-L, exact match, chrF)"})
    target_prefix: str | None = field(default=None, metadata={
        "help": "prompted target: the text between the prompt and the answer; null = one space"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "prompted: greedy generation's budget in tokens; null = the longest answer (choices) or "
                "training answer (target), EOS included"})
    stop: list[str] | None = field(default=None, metadata={
        "help": "prompted: a generation ends at the first of these strings (or EOS); null = a newline"})
    metric: str | None = field(default=None, metadata={
        "help": "prompted: the primary metric (the accuracy matrix's entry): choices accuracy | accuracy_norm "
                "| exact_match, target rouge_l | exact_match | chrf | edit_similarity | first_char; null = the first"})

    @property
    def task_kind(self) -> KindSpec:
        """How the task trains and is scored: the kind it names, or the one its fields select
        (`sources.kinds`: classification through a head of its own, or prompted: a `prompt:`)."""
        return KINDS.get(self.kind or inferred_kind(self))

    @property
    def answer(self) -> str | None:
        """How a prompted task is answered: `choices` or `target` (None: not a prompted task)."""
        return PromptedSpec.answer(self) if isinstance(self.task_kind, PromptedSpec) else None

    @property
    def primary_metric(self) -> str:
        """The metric of the task's accuracy-matrix entries."""
        return self.task_kind.primary_metric(self)

    @property
    def columns(self) -> list[str]:
        """The text columns the task reads: its `text`, or a prompted task's fields and target."""
        return self.task_kind.columns(self)

    def validate(self, where: str) -> None:
        check_name(f"{where}.name", self.name, "task name")
        # the name is also the key of the task's head module (torch forbids '.' there)
        from torch import nn

        if "." in self.name or hasattr(nn.ModuleDict(), self.name):
            raise BenchError(f"{where}.name: task name {self.name!r} cannot be a head's module name "
                             "(no '.', not an attribute of torch's ModuleDict)")
        if self.paper is not None:  # the task as the paper protocol reads it must be valid too
            check_paper_overrides(TaskConfig, self, where)
        if isinstance(self.text, str):
            self.text = [self.text]
        if not 1 <= len(self.text) <= 2:
            raise BenchError(f"{where}.text: one or two text columns, got {self.text!r}")
        if self.label_map and len({isinstance(k, str) for k in self.label_map}) > 1:
            raise BenchError(f"{where}.label_map: keys are all integers or all label texts, got {self.label_map!r}")
        positive(where, "num_classes", self.num_classes)
        if self.num_classes is not None and self.num_classes < 2:
            raise BenchError(f"{where}.num_classes: must be >= 2, got {self.num_classes}")
        if check_kind(self, where).name == inferred_kind(self):
            self.kind = None  # stored as the fields say it, so writing the inferred kind keeps run keys
        if self.rows_field is not None and self.format != "jsonl":
            raise BenchError(f"{where}.rows_field: only for format 'jsonl' (a JSON file whose object holds the rows), "
                             f"not {self.format!r}")
        if self.format == "embedded":
            for key in ("builder", "asset"):
                if not getattr(self, key):
                    raise BenchError(f"{where}.{key}: required for format 'embedded'")
            if self.val is not None:
                raise BenchError(f"{where}.val: an embedded task's validation rows come from its train split; "
                                 "leave val unset")
        elif self.format == "hub":
            if not self.path:
                raise BenchError(f"{where}.path: required for format 'hub' (a hub dataset id)")
            self.train = self.train or "train"
            self.eval = self.eval or "validation"
        else:
            for key in ("train", "eval"):
                if not getattr(self, key):
                    raise BenchError(f"{where}.{key}: required for format {self.format!r} (a file path)")
        if self.val is not None and self.eval is not None and self.format != "embedded" and \
                (self.val == self.eval if self.format == "hub" else same_file(self.val, self.eval)):
            raise BenchError(f"{where}.val: {self.val!r} is the eval {'split' if self.format == 'hub' else 'file'}: "
                             "a point selected on its eval rows would be reported on them; give other rows, or "
                             "leave val unset (rows carved from train)")


def same_file(a: str, b: str) -> bool:
    """Two spellings of one file (relative, `..`, a symlink, a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing: compared as written, resolved (the reader names the missing one)
        return Path(a).resolve() == Path(b).resolve()


@dataclass
class CorpusConfig:
    """A perplexity corpus."""

    name: str = field(metadata={"help": "corpus name"})
    format: Literal["text", "hub", "embedded"] = field(default="text")
    file: str | None = field(default=None, metadata={"help": "plain-text file"})
    path: str | None = field(default=None, metadata={"help": "hub dataset id"})
    config: str | None = field(default=None)
    split: str = field(default="test")
    column: str = field(default="text")
    join: str = field(default="\n\n", metadata={"help": "hub: separator between rows (the HF perplexity guide's)"})
    drop_empty: bool = field(default=False, metadata={"help": "hub: drop empty rows before joining"})
    builder: str | None = field(default=None)
    asset: str | None = field(default=None)
    description: str = field(default="")
    version: int = field(default=1)
    card: dict[str, str] = field(default_factory=dict)
    paper: dict[str, Any] | None = field(
        default=None, metadata={"help": "overrides applied under `protocol: paper` (the reference code's text)"}
    )

    def validate(self, where: str) -> None:
        if self.paper is not None:
            check_paper_overrides(CorpusConfig, self, where)


def check_paper_overrides(cls: type, obj: Any, where: str) -> None:
    """`paper:` overrides go through the same schema as the definition they override."""
    if not isinstance(obj.paper, dict):
        raise BenchError(f"{where}.paper: expected a mapping of overrides, got {obj.paper!r}")
    for key in ("name", "paper"):
        if key in obj.paper:
            raise BenchError(f"{where}.paper.{key}: cannot be overridden under the paper protocol")
    base = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls) if f.name != "paper"}
    from_dict(cls, {**base, **obj.paper}, f"{where}.paper")


TASKS: Registry[TaskConfig] = Registry("task")
CORPORA: Registry[CorpusConfig] = Registry("corpus")


# the embedded builders: name -> "module:function", each function named as its builder
# (`tweet-sentiment-3` -> `tweet_sentiment_3`), imported on the first lookup of its name
_BUILDERS = "curlora_bench.sources.tasks.embedded"
# function(asset folder) returning {"train": Dataset, "eval": Dataset}
EMBEDDED_TASKS: Registry[Any] = Registry("embedded task builder", entries={
    name: f"{_BUILDERS}:{name.replace('-', '_')}" for name in (
        "rt-sentiment", "tweet-sentiment", "tweet-sentiment-1k", "tweet-sentiment-3", "bible-paraphrase", "bible-rewrite",
        "amazon-sentiment", "brown-genre", "bible-genre")})
# function(asset folder) returning the corpus text
EMBEDDED_CORPORA: Registry[Any] = Registry("embedded corpus builder", entries={
    name: f"{_BUILDERS}:{name.replace('-', '_')}" for name in ("nyt-editorials", "brown")})


def _load_builtins() -> None:
    for path in sorted(Path(__file__).parent.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data.get("kind") == "corpus":  # a task's `kind:` is its task kind
            del data["kind"]
            CORPORA.register(data["name"], from_dict(CorpusConfig, data, path.name))
        else:
            TASKS.register(data["name"], from_dict(TaskConfig, data, path.name))


_load_builtins()
