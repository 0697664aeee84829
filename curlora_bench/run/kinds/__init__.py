"""Task kinds (see `base.py`): classification through a head of the task's own."""

from .base import KINDS, Score, TaskKind

__all__ = ["KINDS", "Score", "TaskKind"]
