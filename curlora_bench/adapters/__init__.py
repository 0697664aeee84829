"""Adapters: one module per method, each registering itself in ADAPTERS."""

from __future__ import annotations

from typing import Any

from ..core.errors import BenchError
from ..strategies.base import parse_strategy
from . import curlora, joint, lora, peft_any, simple  # noqa: F401  (registration side effects)
from .base import ADAPTERS, Adapter, AdapterConfig, find_targets, freeze, uses_conv1d

__all__ = ["ADAPTERS", "Adapter", "AdapterConfig", "find_targets", "freeze", "method_dict", "parse_method",
           "uses_conv1d"]


def parse_method(data: Any, where: str) -> AdapterConfig:
    """One `methods:` entry -> the named adapter's validated config."""
    if isinstance(data, str):
        data = {"method": data}
    if not isinstance(data, dict) or "method" not in data:
        raise BenchError(f"{where}: expected a mapping with a 'method' key, got {data!r}")
    cfg = ADAPTERS.get(data["method"], f"{where}.method").parse(data, where)
    cfg.strategy = parse_strategy(cfg.strategy, f"{where}.strategy")
    return cfg


def method_dict(cfg: AdapterConfig) -> dict[str, Any]:
    """The flat mapping a user writes (label explicit); parse_method's inverse."""
    return ADAPTERS.get(cfg.method).options(cfg)
