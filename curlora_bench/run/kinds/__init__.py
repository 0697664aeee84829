"""Task kinds (see `base.py`): classification through a head of the task's own, and prompted tasks
answered in text through the model's own LM head (`prompted.py`)."""

from .base import KINDS, Score, TaskKind

__all__ = ["KINDS", "Score", "TaskKind"]
