"""Task kinds' run-time side (see `base.py`): classification through a head of the task's own, and
prompted tasks answered in text through the model's own LM head (`prompted.py`).

`KINDS` holds one `TaskKind` per kind of `sources.kinds.KINDS`, loaded from that kind's `runtime`
entry on first lookup; a prepared task carries its kind (`PreparedTask.kind`).
"""

from __future__ import annotations

from typing import Any

from ...core.registry import Registry
from ...sources.kinds import KINDS as SPECS
from .base import Score, TaskKind


def _entries() -> None:
    for name, spec in SPECS.items():
        KINDS.entry(name, spec.runtime)


KINDS: Registry[TaskKind] = Registry("task kind", base=TaskKind, make=lambda cls: cls(), load=_entries)


def kind_of(task: Any) -> TaskKind:
    """The run-time side of a task definition's kind."""
    return KINDS.get(task.task_kind.name)


__all__ = ["KINDS", "Score", "TaskKind", "kind_of"]
