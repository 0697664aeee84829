"""Adapters: one module per method, each registering itself in ADAPTERS."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config.parse import from_dict
from ..errors import BenchError
from . import curlora, lora, peft_any, simple  # noqa: F401  (registration side effects)
from .base import ADAPTERS, Adapter, AdapterConfig, find_targets, freeze
from .peft_any import PeftPassthroughConfig

__all__ = ["ADAPTERS", "Adapter", "AdapterConfig", "find_targets", "freeze", "method_dict", "parse_method"]


def parse_method(data: Any, where: str) -> AdapterConfig:
    """One `methods:` entry -> the named adapter's validated config."""
    if isinstance(data, str):
        data = {"method": data}
    if not isinstance(data, dict) or "method" not in data:
        raise BenchError(f"{where}: expected a mapping with a 'method' key, got {data!r}")
    adapter = ADAPTERS.get(data["method"], f"{where}.method")
    if adapter.config_cls is PeftPassthroughConfig:
        fixed = {k: data[k] for k in ("method", "label", "type") if k in data}
        options = {k: v for k, v in data.items() if k not in fixed}
        return from_dict(PeftPassthroughConfig, {**fixed, "options": options}, where)
    return from_dict(adapter.config_cls, data, where)


def method_dict(cfg: AdapterConfig) -> dict[str, Any]:
    """The flat mapping a user writes (PEFT options inline, label explicit); parse_method's inverse."""
    data = dataclasses.asdict(cfg)
    data["label"] = cfg.display_label
    data.update(data.pop("options", {}))
    return data
