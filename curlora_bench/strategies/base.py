"""Continual-learning strategies: `strategy: {name: replay, per_task: 64}` on a method entry,
applied to whatever adapter that entry trains.

A strategy is one class: its options (parsed and labelled here) and, as a `Plugin` of the run
loop, what it does before, during and after each stage, plus the state it keeps between stages
(saved with every checkpoint, so a resumed run continues exactly). The options are stored on
the method as the normalised mapping `parse_strategy` returns (every option explicit), so run
keys, labels and `config.yaml` show them; `naive` (no strategy) is stored as nothing, so entries
without one keep their run keys.

Adding a strategy: a module here with a `Strategy` subclass and its `"module:Class"` entry in
`STRATEGIES`. Every random draw uses its own generator seeded from the run seed, so
`naive` runs draw exactly what they drew before strategies existed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..core.errors import BenchError
from ..core.hooks import Plugin
from ..core.parse import coerce, positive, short_value
from ..core.registry import Registry

PLUGIN_GROUP = "curlora_bench.strategies"  # entry points of installed packages: name = "package.module:StrategyClass"


class Strategy(Plugin):
    """One strategy of one run: its options and the state it keeps between stages."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    # option -> (type, default, help); a default of None is required, unless listed in `optional`
    options_spec: ClassVar[dict[str, tuple[type, Any, str]]] = {}
    optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any], seed: int) -> None:
        self.options = options  # every option explicit, `name` left out
        self.seed = seed

    @classmethod
    def suffix(cls, options: dict[str, Any]) -> str:
        """The label suffix: '+replay64', '+ewc100', '+l2-0.5'."""
        sep = "-" if cls.name[-1].isdigit() else ""  # l2-0.5, not l20.5
        return f"+{cls.name}{sep}{short_value(options['lambda'])}"

    @classmethod
    def check(cls, options: dict[str, Any], where: str) -> None:
        """Constraints between or beyond the options' types (one line naming the key)."""

    @classmethod
    def check_tasks(cls, options: dict[str, Any], tasks: list[Any], where: str) -> None:
        """Before any run starts: whether the options fit the experiment's prepared tasks."""

    # -- checkpoints and summary -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The tensors this strategy keeps (saved as strategy.safetensors with each checkpoint)."""
        return {}

    def load_state_dict(self, tensors: dict[str, Any], tasks: list[str], device: Any) -> None:
        """Restore from a checkpoint (`tasks`: the finished ones, in order)."""

    def summary(self, tasks: dict[str, Any]) -> dict | None:
        """What the strategy kept, for summary.json; None for naive."""
        return {"name": self.name, **self.options}


class Naive(Strategy):
    name = "naive"
    help = "train each stage on its own task only (the default)"

    def summary(self, tasks: dict[str, Any]) -> dict | None:
        return None


# the built-in strategies: name -> "module:Strategy subclass", each imported on first lookup
STRATEGIES: Registry[type[Strategy]] = Registry("strategy", base=Strategy, group=PLUGIN_GROUP, entries={
    "naive": "curlora_bench.strategies.base:Naive",
    "ewc": "curlora_bench.strategies.ewc:EWC",
    "l2": "curlora_bench.strategies.ewc:L2",
    "lwf": "curlora_bench.strategies.lwf:LwF",
    "migu": "curlora_bench.strategies.migu:MIGU",
    "replay": "curlora_bench.strategies.replay:Replay",
})


def strategies() -> dict[str, type[Strategy]]:
    """Every strategy by name, sorted (their modules imported on first use)."""
    return dict(STRATEGIES.items())


def parse_strategy(raw: Any, where: str) -> dict[str, Any] | None:
    """A `strategy:` value -> its normalised mapping (None for naive); bad options name their key."""
    known = strategies()
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise BenchError(f"{where}: expected a mapping with a 'name' key ({' | '.join(known)}), got {raw!r}")
    name = raw["name"]
    if name not in known:
        raise BenchError(f"{where}.name: unknown strategy {name!r} (known: {', '.join(known)})")
    cls = known[name]
    for key in raw:
        if key != "name" and key not in cls.options_spec:
            expected = ", ".join(["name", *cls.options_spec])
            raise BenchError(f"{where}.{key}: unknown key for strategy {name} (expected one of: {expected})")
    out: dict[str, Any] = {"name": name}
    for key, (tp, default, _help) in cls.options_spec.items():
        value = raw.get(key, default)
        if value is None:
            if key in cls.optional:
                out[key] = None
                continue
            raise BenchError(f"{where}.{key}: required key is missing for strategy {name}")
        value = coerce(tp, value, f"{where}.{key}")
        positive(where, key, value, allow_zero=key in ("lambda", "decay"))
        out[key] = value
    cls.check(out, where)
    return None if name == "naive" else out


def make_strategy(options: dict[str, Any] | None, seed: int) -> Strategy:
    """The run-time strategy of a normalised mapping (naive for None)."""
    if not options:
        return Naive({}, seed)
    return strategies()[options["name"]]({k: v for k, v in options.items() if k != "name"}, seed)


def strategy_suffix(options: dict[str, Any] | None) -> str:
    """'+replay64' for a method with a strategy, '' for naive."""
    if not options:
        return ""
    return strategies()[options["name"]].suffix({k: v for k, v in options.items() if k != "name"})
