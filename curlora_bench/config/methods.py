"""A method entry of a config: the adapter it names with the adapter's own options, and what
every entry may carry besides (a label, `train:` overrides, a `strategy:`, a `regime:`), parsed
and written back. Adapters see only their options; the run reads the entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..adapters import ADAPTERS, AdapterConfig, adapter_of
from ..core.errors import BenchError
from ..core.parse import declared_fields, from_dict
from ..strategies import parse_strategy
from .legacy import is_legacy_joint, unwrap_joint
from .regimes import REGIMES, SEQUENTIAL


@dataclass
class MethodEntry:
    """Options every method entry has; `options` holds the named adapter's own."""

    method: str = field(metadata={"help": "adapter name (see `curlora-bench methods`)"})
    label: str | None = field(
        default=None, metadata={"help": "column name in reports; default derived from the options"}
    )
    train: dict[str, Any] | None = field(
        default=None, metadata={"help": "this method's own train settings over the experiment's ({lr: 1.0e-2})"}
    )
    strategy: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "continual-learning strategy: naive | {name: replay|ewc|l2, ...} (below)"}
    )
    regime: str | None = field(
        default=None, metadata={"help": "sequential (one stage per task, the default) | joint (one stage over every "
                                        "task: the multi-task upper bound, labelled joint-<label>)"}
    )
    # the adapter's own options (`Adapter.parse`), the rest of the entry's keys
    options: AdapterConfig = field(default_factory=AdapterConfig, metadata={"derived": True})

    @property
    def display_label(self) -> str:
        return self.label or self.options.default_label() or self.method

    def follow_protocol(self, protocol: str) -> None:
        """The label the options have under `protocol` (unless set), then the options left unset
        filled with the protocol's choice."""
        if self.label is None:
            self.label = self.options.label_under(protocol) or None
        self.options.follow_protocol(protocol)


# the keys of an entry that are no adapter's option
ENTRY_KEYS = tuple(f.name for f in declared_fields(MethodEntry))


def parse_method(data: Any, where: str) -> MethodEntry:
    """One `methods:` entry -> its validated entry: the named adapter's options, strategy and regime checked."""
    if isinstance(data, str):
        data = {"method": data}
    if not isinstance(data, dict) or "method" not in data:
        raise BenchError(f"{where}: expected a mapping with a 'method' key, got {data!r}")
    if is_legacy_joint(data) and "joint" not in ADAPTERS:
        data = unwrap_joint(data, where)
    adapter = ADAPTERS.get(data["method"], f"{where}.method") if isinstance(data["method"], str) else None
    own = {k: v for k, v in data.items() if k not in ENTRY_KEYS}
    fields = declared_fields(adapter.config_cls) if adapter is not None else []
    if adapter is not None and not any(f.metadata.get("inline") for f in fields):  # (PEFT takes any key)
        known = [*ENTRY_KEYS, *(f.name for f in fields)]
        unknown = next((k for k in own if k not in known), None)
        if unknown is not None:
            raise BenchError(f"{where}.{unknown}: unknown key (expected one of: {', '.join(known)})")
    entry = from_dict(MethodEntry, {k: data[k] for k in ENTRY_KEYS if k in data}, where)
    adapter = ADAPTERS.get(entry.method, f"{where}.method")
    entry.options = adapter.parse(own, where)
    entry.method = adapter.written_as or entry.method  # `method: osf` is stored as `method: peft`
    entry.strategy = parse_strategy(entry.strategy, f"{where}.strategy")
    if entry.regime is not None:
        regime = REGIMES.get(entry.regime, f"{where}.regime")
        if entry.strategy and not regime.takes_strategy:
            raise BenchError(f"{where}.strategy: {regime.name} training sees every task at once; it takes no strategy")
        if regime.name == SEQUENTIAL:
            entry.regime = None  # the default, stored as nothing so run keys stay as they were
    return entry


def method_dict(entry: MethodEntry) -> dict[str, Any]:
    """The flat mapping a user writes (label explicit); parse_method's inverse. Keys in the order
    published summaries have them: method, label, the adapter's leading options, train, strategy,
    regime, the adapter's other options."""
    adapter = adapter_of(entry)
    options, lead = adapter.options(entry.options), adapter.leading_options
    out: dict[str, Any] = {"method": entry.method, "label": entry.display_label,
                           **{k: options[k] for k in lead if k in options}}
    for key in ("train", "strategy", "regime"):
        if getattr(entry, key) is not None:  # absent unless set, so run keys of plain entries stay as they were
            out[key] = getattr(entry, key)
    return {**out, **{k: v for k, v in options.items() if k not in lead}}


def regime_of(entry: MethodEntry) -> str:
    return entry.regime or SEQUENTIAL
