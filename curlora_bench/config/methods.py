"""A method entry of a config: an adapter's options plus what every entry may carry (a label,
`train:` overrides, a `strategy:`, a `regime:`), parsed and written back."""

from __future__ import annotations

from typing import Any

from ..adapters import ADAPTERS, AdapterConfig, adapter_of
from ..core.errors import BenchError
from ..strategies import parse_strategy
from .legacy import is_legacy_joint, unwrap_joint
from .regimes import REGIMES, SEQUENTIAL


def parse_method(data: Any, where: str) -> AdapterConfig:
    """One `methods:` entry -> the named adapter's validated config (strategy and regime checked)."""
    if isinstance(data, str):
        data = {"method": data}
    if not isinstance(data, dict) or "method" not in data:
        raise BenchError(f"{where}: expected a mapping with a 'method' key, got {data!r}")
    if is_legacy_joint(data) and "joint" not in ADAPTERS:
        data = unwrap_joint(data, where)
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
    return adapter_of(cfg).options(cfg)


def regime_of(cfg: AdapterConfig) -> str:
    return cfg.regime or SEQUENTIAL
