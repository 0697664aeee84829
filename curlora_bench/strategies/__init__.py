"""Continual-learning strategies (naive, replay, EWC, L2, LwF, MIGU): options and run-time behaviour."""

from .base import (
    STRATEGIES,
    Strategy,
    make_strategy,
    parse_strategy,
    strategy_suffix,
)

__all__ = ["STRATEGIES", "Strategy", "make_strategy", "parse_strategy", "strategy_suffix"]
