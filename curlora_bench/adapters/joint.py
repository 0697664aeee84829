"""`joint`: the multi-task upper bound. Not a new layer: the adapter of `adapter:` (LoRA by
default), trained once on the union of every task (each example through its own task's head,
as many optimizer steps as the whole sequence) and then evaluated on every task. The run
loop reads `method: joint` and trains one stage over all tasks (`run/joint.py`); everything
else here is the inner adapter's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import BenchError
from .base import ADAPTERS, Adapter, AdapterConfig, register


@dataclass
class JointConfig(AdapterConfig):
    """`{method: joint, adapter: {method: lora, rank: 8}}`."""

    adapter: dict[str, Any] = field(default_factory=lambda: {"method": "lora"}, metadata={
        "help": "the method entry trained on all tasks at once (any method but joint; no strategy)"})

    def inner(self, where: str = "") -> AdapterConfig:
        from . import parse_method  # the package's parser (this module is imported by it)

        return parse_method(self.adapter, f"{where}.adapter" if where else "adapter")

    def default_label(self) -> str:
        return "joint-" + self.inner().display_label

    def validate(self, where: str) -> None:
        from . import method_dict

        if not isinstance(self.adapter, dict):
            raise BenchError(f"{where}.adapter: expected a method entry mapping, got {self.adapter!r}")
        inner = self.inner(where)
        if inner.method == "joint":
            raise BenchError(f"{where}.adapter.method: joint cannot wrap joint")
        if inner.strategy or inner.train:
            key = "strategy" if inner.strategy else "train"
            raise BenchError(f"{where}.adapter.{key}: set it on the joint entry (a strategy has no meaning "
                             "for joint training)" if key == "strategy" else
                             f"{where}.adapter.train: set train overrides on the joint entry itself")
        self.adapter = method_dict(inner)  # explicit, so run keys and config.yaml show every option
        if self.strategy:
            raise BenchError(f"{where}.strategy: joint training sees every task at once; it takes no strategy")

    def follow_protocol(self, protocol: str) -> None:
        from . import method_dict

        inner = self.inner()
        inner.follow_protocol(protocol)
        self.adapter = method_dict(inner)


@register
class Joint(Adapter):
    name = "joint"
    config_cls = JointConfig
    help = "multi-task upper bound: the `adapter:` trained once on all tasks (same total steps), one row"

    def _inner(self, cfg: JointConfig) -> tuple[Adapter, AdapterConfig]:
        inner = cfg.inner()
        return ADAPTERS.get(inner.method), inner

    def attach(self, model, targets, cfg, seed, where):
        adapter, inner = self._inner(cfg)
        return adapter.attach(model, targets, inner, seed, where)

    def check(self, model, targets, cfg, where):
        adapter, inner = self._inner(cfg)
        adapter.check(model, targets, inner, where)

    def state_dict(self, model, modules, cfg):
        adapter, inner = self._inner(cfg)
        return adapter.state_dict(model, modules, inner)

    def diagnostics(self, model, modules):
        return {}

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        adapter, inner = self._inner(cfg)
        return adapter.export_extras(out, inner, modules, conv1d, base_model, tensors)
