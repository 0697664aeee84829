"""The config reference, generated from the schema's own fields, types, defaults and help texts.

`reference_sections()` lists every key of an experiment YAML, section by section (the top level,
the method entries and their strategies, tasks, train, eval, perplexity, general, execution),
each key with its type, default and meaning, and each section with an example.
docs/reference/config.md renders them as tables (`scripts/gen_docs.py`; a test keeps it
current), so the documented defaults are the code's; tests/test_config.py loads every example.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ..adapters import ADAPTERS
from ..core.parse import declared_fields, written_type
from ..sources.tasks import TaskConfig
from ..strategies.base import strategies
from .experiment import (
    DiagnosticsConfig,
    EvalConfig,
    ExecutionConfig,
    ExperimentConfig,
    GeneralConfig,
    PerplexityConfig,
    TrainConfig,
)
from .methods import MethodEntry

NESTED = {"perplexity": PerplexityConfig, "general": GeneralConfig, "diagnostics": DiagnosticsConfig, "train": TrainConfig, "eval": EvalConfig, "execution": ExecutionConfig}
TASK_SKIP = {"description", "version", "card", "builder", "asset"}  # set by built-in task files
COMMON = [f.name for f in declared_fields(MethodEntry)]  # the keys every method entry takes
LISTS = {"methods": "list of method entries", "tasks": "list of task names and tasks"}


@dataclass(frozen=True)
class Key:
    """One row of the reference: a key, its type, its default (as YAML) and what it means."""

    key: str
    type: str
    default: str
    meaning: str


@dataclass(frozen=True)
class Section:
    """One section of the reference: a heading, a sentence, its keys and an example (YAML)."""

    id: str  # stable name: "top", "methods", "method lora", "strategy ewc", "tasks", "train", ...
    title: str
    level: int  # heading level: 2 for a YAML section, 3 and 4 below methods
    intro: str
    keys: tuple[Key, ...]
    example: str  # a YAML fragment of a config; "" where the intro says all there is


# `grid:` is read before an entry is parsed (config/grid.py), so it is no field of the entry's schema
GRID = Key("grid", "mapping of lists", "`null`",
           "one entry per point of the Cartesian product of these lists, expanded before anything runs; keys are "
           "the entry's own (`rank`, PEFT keys), dotted train keys (`train.lr`) or strategy options "
           "(`strategy.lambda`)")

# `sequence:` and `order:` are read before the config is parsed (config/loading.py's expand_sequence)
SEQUENCE_KEYS = (
    Key("sequence", "string", "`null`",
        "a built-in task sequence (`curlora-bench sequences` lists them), expanded before anything runs into "
        "its `tasks` (in the first chosen order) and `orders`; a config gives `sequence` or `tasks`, not both"),
    Key("order", "order name, or list of them", "`null`",
        "which of the sequence's named orders run: one (its tasks in that order), a list, or all when unset"),
)


# The examples below each section, as YAML fragments of an experiment config (tests/test_config.py
# merges each into a small valid config and loads it). A method without one gets a one-line
# example of its own name.
EXAMPLES = {
    "diagnostics": """\
diagnostics: {top_k: 10, epsilons: [0.5, 0.7, 0.9], recovery_steps: 20}   # intruders per stage; recovery at the end
""",
    "top": """\
name: my-sequence
seeds: [0, 1, 2]
model: smollm2-135m
methods:
  - {method: lora, rank: 8}
  - {method: curlora, rank: 8}
tasks: [bible-paraphrase, rt-sentiment, tweet-sentiment]
perplexity: {corpus: nyt-editorials, max_tokens: 8192}
train: {epochs: 1, lr: 1.0e-3, max_length: 64, limit: 640}
eval: {limit: 300}
""",
    "methods": """\
methods:
  - {method: lora, rank: 8, alpha: 1}
  - {method: lora, rank: 8, label: lora-slow, train: {lr: 1.0e-4}}
  - {method: curlora, rank: 8, grid: {train.lr: [1.0e-3, 1.0e-2]}}   # two runs: one per lr
  - {method: lora, rank: 8, strategy: {name: replay, per_task: 64}}
  - {method: lora, rank: 8, regime: joint}                          # joint-lora-r8
""",
    "method curlora": """\
methods:
  - {method: curlora, rank: 8, alpha: 1}
  - {method: curlora, rank: 8, sampling: uniform, replacement: false}
  - {method: curlora, rank: 8, cr: random}        # the mechanism control
""",
    "method full": """\
methods:
  - {method: full, train: {lr: 1.0e-5}}
""",
    "method head-only": """\
methods:
  - {method: head-only}
""",
    "method lora": """\
methods:
  - {method: lora, rank: 8, alpha: 1}
  - {method: lora, rank: 8, init: reference}      # the paper code's larger A
""",
    "method i-lora": """\
methods:
  - {method: i-lora, rank: 8, per_task: 64}        # ema 0.25, consistency 1.0: I-LoRA's code
  - {method: i-lora, rank: 8, per_task: 64, consistency: 0}   # the control: replay and the slow LoRA, no consistency loss
""",
    "method inflora": """\
methods:
  - {method: inflora, rank: 8}                     # gpm_threshold 0.95 rising to 1.0: InfLoRA's configs
  - {method: inflora, rank: 8, gpm_threshold: 0.99}
""",
    "method o-lora": """\
methods:
  - {method: o-lora, rank: 8, alpha: 1}            # lambda_orth 0.5, lambda_l2 0: O-LoRA's scripts
  - {method: o-lora, rank: 8, lambda_orth: 0}      # the control: per-task LoRAs, no orthogonality loss
""",
    "method peft": """\
methods:
  - {method: peft, type: DORA, r: 8}
  - {method: peft, type: VERA, r: 64}
  - {method: peft, type: OSF, effective_rank: 0.25, rank_step: 0.25, train: {lr: 1.0e-4}}
""",
    "method osf": """\
methods:
  - {method: peft, type: OSF, effective_rank: 8}   # rank_step 8: the preserved rank grows by 8 per task
  - {method: osf, effective_rank: 0.25, rank_step: 0.25}   # the same adapter, stored as {method: peft, type: OSF}
""",
    "strategy": """\
methods:
  - {method: lora, rank: 8, strategy: {name: replay, per_task: 64}}
  - {method: lora, rank: 8, strategy: {name: ewc, lambda: 1000}}
  - {method: lora, rank: 8, strategy: {name: l2, lambda: 0.5}}
  - {method: lora, rank: 8, strategy: naive}       # the same as no strategy
""",
    "tasks": """\
tasks:
  - rt-sentiment                   # a built-in task, by name
  - name: pairs                    # a CSV task: two text columns, an integer label
    format: csv
    train: data/pairs_train.csv
    eval: data/pairs_dev.csv
    text: [sentence1, sentence2]
  - name: polarity                 # a prompted task, answered through the LM head
    format: csv
    train: data/polarity_train.csv
    eval: data/polarity_dev.csv
    prompt: "Review: {text}\\nSentiment:"
    choices: [" negative", " positive"]
""",
    "train": "train: {epochs: 1, batch_size: 8, lr: 1.0e-3, max_length: 64, limit: 640, warmup_steps: 10}\n",
    "eval": "eval: {batch_size: 64, limit: 300, validation: 100}\n",
    "perplexity": """\
perplexity:
  - {corpus: nyt-editorials, max_tokens: 8192}    # the primary corpus: perplexity drift
  - {file: data/corpus.txt, window: 256, stride: 128}
""",
    "general": "general: {tasks: [brown_next_sentence, nyt_cloze], limit: 200, batch_size: 16}\n",
    "execution": "execution: {log: [tensorboard], log_every: 10, executor: ray, workers: 2, cpus_per_run: 1}\n",
}


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


def _shown(v: Any) -> str:
    """A default as the table shows it: `value` in code, or 'required'."""
    text = _value(v)
    return "required" if text == "(required)" else f"`{text}`"


def _sentence(text: str) -> str:
    """A help text as a sentence: its first letter up (unless it starts a name like
    lm-evaluation-harness), one full stop at the end."""
    first = text.split(" ", 1)[0]
    head = text if "-" in first or not text else text[0].upper() + text[1:]
    return head.rstrip(".") + "."


def type_name(tp: Any) -> str:
    """A resolved annotation in YAML terms: `int | null`, `list of string`, `` `a` | `b` ``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(named + (["null"] if type(None) in args else []))
    if origin is list:
        if not args or args[0] is Any:
            return "list"
        inner = type_name(args[0])
        return f"list of ({inner})" if " | " in inner else f"list of {inner}"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "mapping"
    return {str: "string", int: "int", float: "float", bool: "bool", Any: "any"}.get(tp, getattr(tp, "__name__", str(tp)))


def _keys(cls: type, names: list[str] | None = None) -> tuple[Key, ...]:
    """The rows of a dataclass's fields (all, or `names` in that order)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in declared_fields(cls)}
    rows = []
    for name in names if names is not None else list(fields):
        f = fields[name]
        key = "<key>" if f.metadata.get("inline") else name
        rows.append(Key(key, "any" if f.metadata.get("inline") else type_name(written_type(f, hints)),
                        "" if f.metadata.get("inline") else _shown(_default(f)), f.metadata.get("help", "")))
    return tuple(rows)


def _top() -> Section:
    rows = []
    for key in _keys(ExperimentConfig):
        if key.key in NESTED:
            doc = NESTED[key.key].__doc__.splitlines()[0].rstrip(".")
            meaning = key.meaning or doc[0].lower() + doc[1:]
            default = "`null`" if key.default == "`null`" else "its keys' defaults"
            key = Key(key.key, key.type, default, f"{meaning}: see [{key.key}](#{key.key})")
        elif key.key in LISTS:
            key = Key(key.key, LISTS[key.key], key.default, f"{key.meaning}: see [{key.key}](#{key.key})")
        rows.append(key)
        if key.key == "tasks":
            rows.extend(SEQUENCE_KEYS)
    return Section("top", "Top-level keys", 2, "An experiment YAML is a mapping of these keys; only `name` is required.",
                   tuple(rows), EXAMPLES["top"])


def _methods() -> list[Section]:
    out = [Section("methods", "methods", 2,
                   "A list of method entries, each one independent run per seed (or one per point of its `grid:`). "
                   "Every entry names its `method` and may carry these keys; each method's own keys follow.",
                   (*_keys(MethodEntry, COMMON), GRID), EXAMPLES["methods"])]
    for name, adapter in ADAPTERS.items():
        own = [f.name for f in declared_fields(adapter.config_cls)]
        example = EXAMPLES.get(f"method {name}", f"methods:\n  - {{method: {name}}}\n")
        out.append(Section(f"method {name}", f"method: {name}", 3, _sentence(adapter.help),
                           _keys(adapter.config_cls, own), example))
    out.append(Section("strategy", "strategy", 3,
                       "Any method entry may carry `strategy:`, a continual-learning strategy applied to its adapter: "
                       "a name (`strategy: naive`) or a mapping of `name` and the strategy's keys below.",
                       (), EXAMPLES["strategy"]))
    for name, cls in strategies().items():
        rows = tuple(Key(key, type_name(tp), "required" if default is None and key not in cls.optional
                         else _shown(default), help_)
                     for key, (tp, default, help_) in cls.options_spec.items())
        intro = _sentence(cls.help) + ("" if rows else " It has no keys.")
        out.append(Section(f"strategy {name}", f"name: {name}", 4, intro, rows, ""))
    return out


def _tasks() -> Section:
    names = [f.name for f in dataclasses.fields(TaskConfig) if f.name not in TASK_SKIP]
    return Section("tasks", "tasks", 2,
                   "The tasks in training order: each item is the name of a built-in task (`curlora-bench tasks` "
                   "lists them) or a task of these keys.",
                   _keys(TaskConfig, names), EXAMPLES["tasks"])


def reference_sections() -> list[Section]:
    """Every section of the config reference, in the order the page shows them."""
    sections = [_top(), *_methods(), _tasks()]
    for name in ("train", "eval", "perplexity", "general", "diagnostics", "execution"):
        field = next(f for f in dataclasses.fields(ExperimentConfig) if f.name == name)
        intro = field.metadata.get("help") or NESTED[name].__doc__.splitlines()[0]
        sections.append(Section(name, name, 2, _sentence(intro), _keys(NESTED[name]),
                                EXAMPLES[name]))
    return sections
