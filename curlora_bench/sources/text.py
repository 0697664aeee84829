"""Plain-text helpers shared by the embedded tasks and the general-ability probes built from the
same assets (kept apart so that neither imports the other)."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def sentences(paragraph: str) -> list[str]:
    """A paragraph's sentences: split after `.`, `!` or `?` where a capital, quote or bracket follows."""
    return [s.strip() for s in _SENTENCE.split(paragraph) if s.strip()]
