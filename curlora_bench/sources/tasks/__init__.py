"""Task and corpus definitions: built-ins are versioned YAML files beside this module.

Embedded tasks and corpora are built from their asset's files by a builder of `embedded.py`,
found by name in `EMBEDDED_TASKS` / `EMBEDDED_CORPORA` (filled on first lookup).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ...core.errors import BenchError
from ...core.parse import check_name, from_dict, positive
from ...core.registry import Registry

Format = Literal["csv", "jsonl", "parquet", "hub", "embedded"]


@dataclass
class TaskConfig:
    """A classification task: where its splits come from and which columns to read."""

    name: str = field(metadata={"help": "task name (unique in a config)"})
    format: Format = field(default="csv", metadata={"help": "csv | jsonl | parquet | hub | embedded"})
    train: str | None = field(default=None, metadata={"help": "train file (hub: split name)"})
    eval: str | None = field(default=None, metadata={"help": "eval file (hub: split name)"})
    val: str | None = field(default=None, metadata={
        "help": "validation file (hub: split name), read with `eval.validation`; null = rows of the train split"})
    path: str | None = field(default=None, metadata={"help": "hub dataset id or local dataset folder"})
    config: str | None = field(default=None, metadata={"help": "hub dataset config name"})
    builder: str | None = field(default=None, metadata={"help": "embedded: the builder's name"})
    asset: str | None = field(default=None, metadata={"help": "embedded: the asset it is built from"})
    text: list[str] = field(default_factory=lambda: ["text"], metadata={"help": "one or two text columns"})
    label: str = field(default="label", metadata={"help": "integer label column"})
    num_classes: int | None = field(default=None, metadata={"help": "inferred from train labels if unset"})
    label_map: dict[int, int] | None = field(
        default=None, metadata={"help": "raw label -> class; rows with other labels are dropped"}
    )
    train_rows: int | None = field(default=None, metadata={"help": "use only the first N raw train rows"})
    eval_rows: int | None = field(default=None, metadata={"help": "use only the first N raw eval rows"})
    description: str = field(default="", metadata={"help": "one line shown by `curlora-bench tasks`"})
    version: int = field(default=1, metadata={"help": "definition version (recorded in results)"})
    card: dict[str, str] = field(default_factory=dict, metadata={"help": "source, licence, notes"})
    paper: dict[str, Any] | None = field(
        default=None, metadata={"help": "overrides applied under `protocol: paper` (the reference code's splits)"}
    )

    @property
    def kind(self) -> str:
        """How the task trains and is scored (`run/kinds`): classification through a head of its own."""
        return "classification"

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
        positive(where, "num_classes", self.num_classes)
        if self.num_classes is not None and self.num_classes < 2:
            raise BenchError(f"{where}.num_classes: must be >= 2, got {self.num_classes}")
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


def _load_builders() -> None:
    from . import embedded  # noqa: F401  (registers the builders)


# name -> function(asset folder) returning {"train": Dataset, "eval": Dataset}
EMBEDDED_TASKS: Registry[Any] = Registry("embedded task builder", load=_load_builders)
# name -> function(asset folder) returning the corpus text
EMBEDDED_CORPORA: Registry[Any] = Registry("embedded corpus builder", load=_load_builders)


def _load_builtins() -> None:
    for path in sorted(Path(__file__).parent.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        kind = data.pop("kind", "task")
        if kind == "corpus":
            CORPORA.register(data["name"], from_dict(CorpusConfig, data, path.name))
        else:
            TASKS.register(data["name"], from_dict(TaskConfig, data, path.name))


_load_builtins()
