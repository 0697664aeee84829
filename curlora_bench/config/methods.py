"""A method entry of a config: an adapter's options plus what every entry may carry (a label,
`train:` overrides, a `strategy:`, a `regime:`), parsed and written back."""

from __future__ import annotations

from typing import Any

from ..adapters import ADAPTERS, AdapterConfig
from ..core.errors import BenchError
from ..strategies import parse_strategy
from .regimes import REGIMES, SEQUENTIAL


def unwrap_legacy_joint(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`{method: joint, adapter: {...}}`, the spelling of joint training before regimes existed,
    as the entry it means: the inner method with `regime: joint` (and the outer label/train)."""
    inner = data.get("adapter", {"method": "lora"})
    if not isinstance(inner, dict):
        raise BenchError(f"{where}.adapter: expected a method entry mapping, got {inner!r}")
    for key in ("strategy", "train"):
        if inner.get(key) is not None:
            raise BenchError(f"{where}.adapter.{key}: set it on the joint entry itself")
    unknown = sorted(set(data) - {"method", "adapter", "label", "train", "strategy", "regime"})
    if unknown:
        raise BenchError(f"{where}.{unknown[0]}: unknown key of a joint entry (expected: adapter, label, train)")
    out = {**inner, "regime": "joint"}
    out.pop("label", None)  # the inner label names the inner method, not the joint run
    for key in ("label", "train", "strategy"):
        if data.get(key) is not None:
            out[key] = data[key]
    return out


def parse_method(data: Any, where: str) -> AdapterConfig:
    """One `methods:` entry -> the named adapter's validated config (strategy and regime checked)."""
    if isinstance(data, str):
        data = {"method": data}
    if not isinstance(data, dict) or "method" not in data:
        raise BenchError(f"{where}: expected a mapping with a 'method' key, got {data!r}")
    if data["method"] == "joint" and "joint" not in ADAPTERS:
        data = unwrap_legacy_joint(data, where)
    cfg = ADAPTERS.get(data["method"], f"{where}.method").parse(data, where)
    cfg.strategy = parse_strategy(cfg.strategy, f"{where}.strategy")
    if cfg.regime is not None:
        regime = REGIMES.get(cfg.regime, f"{where}.regime")
        if cfg.strategy and not regime.takes_strategy:
            raise BenchError(f"{where}.strategy: {regime.name} training sees every task at once; it takes no strategy")
        if regime.name == SEQUENTIAL:
            cfg.regime = None  # the default, stored as nothing so run keys stay as they were
    return cfg


def method_dict(cfg: AdapterConfig) -> dict[str, Any]:
    """The flat mapping a user writes (label explicit); parse_method's inverse."""
    return ADAPTERS.get(cfg.method).options(cfg)


def regime_of(cfg: AdapterConfig) -> str:
    return cfg.regime or SEQUENTIAL
