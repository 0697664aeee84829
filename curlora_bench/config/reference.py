"""The config reference, generated from the schema's own fields, defaults and help texts.

docs/reference/config.md embeds `reference_yaml()` verbatim (a test keeps them equal), so the
documented defaults are the code's. Regenerate with `python scripts/gen_docs.py --write`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..adapters import ADAPTERS
from ..sources.tasks import TaskConfig
from ..strategies.base import reference_lines
from .experiment import (
    EvalConfig,
    ExecutionConfig,
    ExperimentConfig,
    GeneralConfig,
    PerplexityConfig,
    TrainConfig,
)

COMMENT_COLUMN = 33
NESTED = {"perplexity": PerplexityConfig, "general": GeneralConfig, "train": TrainConfig, "eval": EvalConfig, "execution": ExecutionConfig}
TASK_SKIP = {"description", "version", "card", "builder", "asset"}  # set by built-in task files


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "(required)"


def _value(v: Any) -> str:
    if v == "(required)":
        return v
    return json.dumps(v).replace('"', "") if isinstance(v, (list, dict)) else json.dumps(v).strip('"') \
        if isinstance(v, str) else "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)


def _line(text: str, help_: str) -> str:
    return f"{text:<{COMMENT_COLUMN}}# {help_}".rstrip() if help_ else text


def _fields(cls: type, indent: str, skip: set[str] = frozenset()) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.metadata.get("inline"):  # a mapping written inline, key by key (PEFT's options)
            out.append(_line(f"{indent}<key>: <value>", f.metadata.get("help", "")))
        else:
            out.append(_line(f"{indent}{f.name}: {_value(_default(f))}", f.metadata.get("help", "")))
    return out


def reference_yaml() -> str:
    """Every config key with its default and help, as commented YAML."""
    lines = []
    for f in dataclasses.fields(ExperimentConfig):
        help_ = f.metadata.get("help", "")
        if f.name in NESTED:
            lines.append(_line(f"{f.name}:", help_ or NESTED[f.name].__doc__.splitlines()[0]))
            lines += _fields(NESTED[f.name], "  ")
        elif f.name == "methods":
            lines.append(_line("methods:", f"{help_}; each entry is one of:"))
            for name, adapter in ADAPTERS.items():
                lines.append(_line(f"  - method: {name}", adapter.help))
                lines += _fields(adapter.config_cls, "    ", {"method", "strategy"})
            lines += reference_lines("    ")
        elif f.name == "tasks":
            lines.append(_line("tasks:", f"{help_}; an inline task:"))
            fields = [x for x in dataclasses.fields(TaskConfig) if x.name not in TASK_SKIP]
            lines += [_line(f"  - {fields[0].name}: {_value(_default(fields[0]))}", fields[0].metadata.get("help", ""))]
            lines += [_line(f"    {x.name}: {_value(_default(x))}", x.metadata.get("help", "")) for x in fields[1:]]
        else:
            lines += _fields(ExperimentConfig, "", {x.name for x in dataclasses.fields(ExperimentConfig)} - {f.name})
    return "\n".join(lines) + "\n"
