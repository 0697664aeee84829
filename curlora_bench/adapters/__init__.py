"""Adapters: one module per method, each registering itself in ADAPTERS (loaded on first lookup).

A method *entry* of a config (adapter options, label, train overrides, strategy, regime) is
parsed by `config.methods`.
"""

from __future__ import annotations

from .base import ADAPTERS, Adapter, AdapterConfig, find_targets, freeze, uses_conv1d

__all__ = ["ADAPTERS", "Adapter", "AdapterConfig", "find_targets", "freeze", "uses_conv1d"]
