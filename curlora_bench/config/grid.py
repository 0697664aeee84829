"""Method grids: a `grid:` on a method entry expands into one entry per point of the Cartesian
product of its lists, before anything runs. Keys are the entry's own (`rank`, `alpha`, `eps`,
PEFT keys, ...), dotted train keys (`train.lr`, `train.epochs`, ...) or strategy options
(`strategy.lambda`, `strategy.per_task`)."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

from ..core.errors import BenchError
from ..core.parse import short_value

# short names of train keys in labels: lora-r8-lr3e-4
SHORT = {"lr": "lr", "head_lr": "hlr", "epochs": "ep", "weight_decay": "wd", "warmup_steps": "wu", "batch_size": "bs",
         "scheduler": "", "max_grad_norm": "clip"}


def train_suffix(train: dict[str, Any] | None) -> str:
    """The label suffix of per-method train overrides: {lr: 3e-4, epochs: 2} -> '-lr3e-4-ep2'."""
    return "".join(f"-{SHORT.get(k, k)}{short_value(v)}" for k, v in (train or {}).items())


def point_suffix(point: dict[str, Any], keys: list[str]) -> str:
    return "".join(f"-{SHORT.get(k.removeprefix('train.'), k.removeprefix('train.'))}{short_value(point[k])}"
                   for k in keys)


def set_key(entry: dict, key: str, value: Any) -> None:
    for nested in ("train", "strategy"):
        if key.startswith(nested + "."):
            entry[nested] = {**(entry.get(nested) or {}), key.removeprefix(nested + "."): value}
            return
    entry[key] = value


def grid_points(entry: Any) -> int:
    """How many entries `expand` makes of `entry`, counted from its lists' lengths without making
    any (a malformed grid counts its well-formed lists: `expand` names the rest)."""
    grid = entry.get("grid") if isinstance(entry, dict) else None
    if not isinstance(grid, dict):
        return 1
    return math.prod(len(values) for values in grid.values() if isinstance(values, list) and values)


def expand(entry: Any, where: str, check: Callable[[dict, str], None]) -> list[tuple[Any, str, dict]]:
    """[(entry, where, grid point)]: the entry itself (point {}) or one entry per grid point.

    Every value is checked on its own first, so a bad one is named `methods[i].grid.<key>[k]`.
    """
    if not isinstance(entry, dict) or "grid" not in entry:
        return [(entry, where, {})]
    grid = entry["grid"]
    if not isinstance(grid, dict) or not grid:
        raise BenchError(f"{where}.grid: expected a mapping of option -> list of values, got {grid!r}")
    base = {k: v for k, v in entry.items() if k != "grid"}
    for key, values in grid.items():
        if not isinstance(key, str) or key in ("method", "label", "grid", "train") or key.count(".") > (
                1 if key.startswith(("train.", "strategy.")) else 0):
            raise BenchError(f"{where}.grid.{key}: not a grid key (an option of the method, or train.<key>)")
        if not isinstance(values, list) or not values:
            raise BenchError(f"{where}.grid.{key}: expected a non-empty list of values, got {values!r}")
        for k, value in enumerate(values):
            point = copy.deepcopy(base)
            set_key(point, key, value)
            try:
                check(point, where)
            except BenchError as exc:
                reason = str(exc).split(": ", 1)[-1]
                raise BenchError(f"{where}.grid.{key}[{k}]: {value!r}: {reason}") from None
    out = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        full = copy.deepcopy(base)
        for key, value in point.items():
            set_key(full, key, value)
        out.append((full, where, point))
    return out
