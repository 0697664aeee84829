"""Task kinds, the task side: the fields a kind adds to a task definition, how they are checked,
what its records measure, and which kind a task is.

A task names its kind with `kind:` or leaves it to the fields (`prompted` when `prompt:` is set,
else `classification`). Each kind here owns its slice of a task definition: its `fields` (left
out of a run's identity while unset, so runs made before a kind existed keep their keys), its
`validate`, its `metrics` (keys of `core.metrics.TASK_METRICS`; the first the default primary
one) and the `"module:Class"` of its run-time side (`runtime`: how its examples become a loss
and how it is scored, `run/kinds/`). This module imports no torch: the config, the identity
and the report read it.
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

from ..core.errors import BenchError
from ..core.metrics import TASK_METRICS
from ..core.parse import positive
from ..core.registry import Registry


class KindSpec:
    """What one task kind asks of a task definition (`TaskConfig`)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()  # task fields only this kind reads (None while unset)
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)  # what its records measure; the first the default primary
    runtime: ClassVar[str] = ""  # "module:TaskKind subclass" of its run-time side
    has_head: ClassVar[bool] = True  # its run-time side gives the task a head of its own (heads.safetensors)

    def inferred(self, task: Any) -> bool:
        """Whether a task that writes no `kind:` is of this kind (its fields say so)."""
        return False

    def validate(self, task: Any, where: str) -> None:
        """Check the kind's own fields of `task` (the other kinds' are checked unset already)."""

    def primary_metric(self, task: Any) -> str:
        """The metric of the task's accuracy-matrix entries."""
        return self.metrics[0]

    def columns(self, task: Any) -> list[str]:
        """The text columns the task reads."""
        return list(task.text)


class ClassificationSpec(KindSpec):
    name = "classification"
    help = "a linear head of the task's own on the body's last hidden state, scored by accuracy (the default)"
    runtime = "curlora_bench.run.kinds.classification:Classification"

    def inferred(self, task):
        return task.prompt is None


# how a prompted task is answered -> the metrics it is scored by (the first is the default primary)
PROMPTED_METRICS = {"choices": ("accuracy", "accuracy_norm", "exact_match"),
                    "target": ("rouge_l", "exact_match", "chrf", "edit_similarity", "first_char")}
# target metrics a task's records carry only where they are its primary metric (the first three always)
TARGET_EXTRA = ("edit_similarity", "first_char")


def prompt_fields(template: str) -> list[str]:
    """The `{column}` fields of a prompt template, in order (ValueError: not a template)."""
    return [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]


class PromptedSpec(KindSpec):
    name = "prompted"
    help = "a prompt template answered through the model's own LM head: choices (log-likelihood) or a target text"
    fields = ("prompt", "choices", "target", "target_prefix", "max_new_tokens", "stop", "metric")
    metrics = tuple(dict.fromkeys(m for ms in PROMPTED_METRICS.values() for m in ms))
    runtime = "curlora_bench.run.kinds.prompted:Prompted"
    has_head = False  # it trains through the model's own LM head

    def inferred(self, task):
        return task.prompt is not None

    @staticmethod
    def answer(task: Any) -> str:
        """How the task is answered: `choices` or `target`."""
        return "choices" if task.choices is not None else "target"

    def primary_metric(self, task):
        return task.metric or PROMPTED_METRICS[self.answer(task)][0]

    def columns(self, task):
        fields = list(dict.fromkeys(prompt_fields(task.prompt)))
        return fields + ([task.target] if task.target and task.target not in fields else [])

    def validate(self, task, where):
        """A template over the task's columns and exactly one of choices / target."""
        if task.prompt is None:
            raise BenchError(f"{where}.prompt: required for a prompted task (a template over the row's columns)")
        try:
            fields = prompt_fields(task.prompt)
        except ValueError as exc:
            raise BenchError(f"{where}.prompt: not a template ({exc}); write a literal brace as {{{{ or }}}}") from None
        bad = [f for f in fields if not f or not f.isidentifier()]
        if bad:
            raise BenchError(f"{where}.prompt: {{{bad[0]}}} is not a column name (fields are {{column}})")
        if (task.choices is None) == (task.target is None):
            raise BenchError(f"{where}: a prompted task gives exactly one of `choices` (one answer per class) "
                             "or `target` (a column holding the answer text)")
        if task.choices is not None:
            self.validate_choices(task, where)
        positive(where, "max_new_tokens", task.max_new_tokens)
        if task.stop is not None and any(not s for s in task.stop):
            raise BenchError(f"{where}.stop: empty strings stop nothing, got {task.stop!r}")
        answer = self.answer(task)
        allowed = PROMPTED_METRICS[answer]
        if task.metric is not None and task.metric not in allowed:
            raise BenchError(f"{where}.metric: a {answer} task is scored by {' | '.join(allowed)}, "
                             f"got {task.metric!r}")

    @staticmethod
    def validate_choices(task: Any, where: str) -> None:
        choices = task.choices
        if len(choices) < 2 or any(not c.strip() for c in choices):
            raise BenchError(f"{where}.choices: at least 2 non-empty answers, got {choices!r}")
        if len(set(choices)) != len(choices):
            raise BenchError(f"{where}.choices: answers must differ, got {choices!r}")
        if len({c.strip() for c in choices}) != len(choices):  # exact match compares them stripped
            raise BenchError(f"{where}.choices: answers must differ beyond surrounding whitespace (exact match "
                             f"strips it, so one generation would match two labels), got {choices!r}")
        if task.num_classes is not None and task.num_classes != len(choices):
            raise BenchError(f"{where}.num_classes: {task.num_classes}, but {len(choices)} choices")
        if task.target_prefix is not None:
            raise BenchError(f"{where}.target_prefix: only for a target task (choices carry their own spacing)")


def make_spec(cls: type[KindSpec]) -> KindSpec:
    """The registry's item of a `KindSpec` subclass: an instance, its metrics checked."""
    unknown = [m for m in cls.metrics if m not in TASK_METRICS]
    if unknown or not cls.metrics:
        raise BenchError(f"its metrics {list(cls.metrics)} must be keys of core.metrics.TASK_METRICS")
    return cls()


# name -> "module:KindSpec subclass"; the first kind whose `inferred` holds is a task's without `kind:`
KINDS: Registry[KindSpec] = Registry("task kind", base=KindSpec, make=make_spec, entries={
    "classification": "curlora_bench.sources.kinds:ClassificationSpec",
    "prompted": "curlora_bench.sources.kinds:PromptedSpec",
})
INFERRED = ("prompted", "classification")  # the kinds a task's fields select, in the order asked


def inferred_kind(task: Any) -> str:
    """The kind a task's fields select when it writes no `kind:`."""
    return next(name for name in INFERRED if KINDS.get(name).inferred(task))


def check_kind(task: Any, where: str) -> KindSpec:
    """The task's kind (written or inferred), its own fields checked and every other kind's unset."""
    written = task.kind is not None
    spec = KINDS.get(task.kind, f"{where}.kind") if written else KINDS.get(inferred_kind(task))
    for name, other in KINDS.items():
        stray = [k for k in other.fields if k not in spec.fields and getattr(task, k, None) is not None]
        if stray:
            tip = f", not a {spec.name} task" if written else " (set `prompt:` too)" if name == "prompted" \
                else f" (set `kind: {name}`)"
            raise BenchError(f"{where}.{stray[0]}: only for a {name} task{tip}")
    spec.validate(task, where)
    return spec


def omitted_fields() -> tuple[str, ...]:
    """The task fields every kind adds, and `kind` itself: left out of a run's identity while unset."""
    return ("kind", *dict.fromkeys(f for _, spec in KINDS.items() for f in spec.fields))


def record_metrics() -> tuple[str, ...]:
    """Every metric a task's records may carry: each kind's."""
    return tuple(dict.fromkeys(m for _, spec in KINDS.items() for m in spec.metrics))
