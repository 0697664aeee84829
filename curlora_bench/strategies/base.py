"""Continual-learning strategies, as options: `strategy: {name: replay, per_task: 64}` on a
method entry, applied to whatever adapter that entry trains.

The strategy is stored on the method as the normalised mapping this module returns (every
option explicit), so run keys, labels and `config.yaml` show it; `naive` (today's behaviour)
is stored as nothing, so entries without a strategy keep their run keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import BenchError
from ..core.parse import coerce, positive

# name -> {option: (type, default, help)}; `None` default = required
STRATEGIES: dict[str, dict[str, tuple[type, Any, str]]] = {
    "naive": {},
    "replay": {
        "per_task": (int, None, "training examples kept of every finished task (seeded), mixed into later "
                                "stages' batches through their own task's head"),
        "batch_size": (int, None, "replayed examples per step; null = the stage's batch size"),
    },
    "ewc": {
        "lambda": (float, None, "weight L of the penalty L/2 * sum F (theta - theta*)^2"),
        "decay": (float, 1.0, "online EWC: F <- decay * F + F_new after each stage (Schwarz et al. 2018)"),
    },
    "l2": {
        "lambda": (float, None, "weight L of the penalty L/2 * sum (theta - theta*)^2 (EWC with F = 1)"),
    },
}

HELP = {
    "naive": "train each stage on its own task only (the default)",
    "replay": "experience replay from a per-task episodic memory (Rolnick et al. 2019; Chaudhry et al. 2019)",
    "ewc": "online elastic weight consolidation, diagonal Fisher (Kirkpatrick et al. 2017; Schwarz et al. 2018)",
    "l2": "L2 pull towards the weights after the previous stage (EWC with F = 1)",
}


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy: its name and its options (every one explicit)."""

    name: str
    options: dict[str, Any]

    @property
    def suffix(self) -> str:
        """The label suffix: '+replay64', '+ewc100', '+l2-0.5'."""
        from ..config.grid import short_value  # grid imports nothing of ours

        if self.name == "replay":
            return f"+replay{self.options['per_task']}"
        sep = "-" if self.name[-1].isdigit() else ""  # l2-0.5, not l20.5
        return f"+{self.name}{sep}{short_value(self.options['lambda'])}"


def parse_strategy(raw: Any, where: str) -> dict[str, Any] | None:
    """A `strategy:` value -> its normalised mapping (None for naive); bad options name their key."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise BenchError(f"{where}: expected a mapping with a 'name' key ({' | '.join(STRATEGIES)}), got {raw!r}")
    name = raw["name"]
    if name not in STRATEGIES:
        raise BenchError(f"{where}.name: unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    spec = STRATEGIES[name]
    for key in raw:
        if key != "name" and key not in spec:
            known = ", ".join(["name", *spec])
            raise BenchError(f"{where}.{key}: unknown key for strategy {name} (expected one of: {known})")
    out: dict[str, Any] = {"name": name}
    for key, (tp, default, _help) in spec.items():
        value = raw.get(key, default)
        if value is None:
            if key == "batch_size":
                out[key] = None
                continue
            raise BenchError(f"{where}.{key}: required key is missing for strategy {name}")
        value = coerce(tp, value, f"{where}.{key}")
        positive(where, key, value, allow_zero=key in ("lambda", "decay"))
        out[key] = value
    if name == "ewc" and out["decay"] > 1:
        raise BenchError(f"{where}.decay: must be <= 1, got {out['decay']!r}")
    return None if name == "naive" else out


def strategy_of(options: dict[str, Any] | None) -> Strategy:
    """The `Strategy` of a normalised mapping (naive for None)."""
    if not options:
        return Strategy("naive", {})
    return Strategy(options["name"], {k: v for k, v in options.items() if k != "name"})


def reference_lines(indent: str) -> list[str]:
    """The strategy options for the config reference."""
    lines = [f"{indent[:-2]}# every entry above may also carry:",
             f"{indent}strategy: null".ljust(33) + "# naive | {name: replay|ewc|l2, ...}, applied to its adapter"]
    for name, spec in STRATEGIES.items():
        lines.append(f"{indent}  name: {name}".ljust(33) + f"# {HELP[name]}")
        for key, (_tp, default, help_) in spec.items():
            shown = "(required)" if default is None and key != "batch_size" else \
                "null" if default is None else repr(default)
            lines.append(f"{indent}    {key}: {shown}".ljust(33) + f"# {help_}")
    return lines
