"""What a run *is*: its identity, computed once when its spec is made and carried from there.

A run is identified by the experiment settings every run of the experiment shares (the
resolved config without its name, seeds, methods, orders and `execution:` section), its method
entry, its seed and its task order. From these come the `settings_hash` (a point of an
experiment: runs differing only in seed share it) and the `run_key` (which files belong to the
run). How a run executes (`execution:`: trackers, log interval, gradient checkpointing,
compile, executor, asset cache) is left out by construction, as PEFT leaves its
`runtime_config` out of `to_dict`, so it never changes an identity.

Two facts of history (`config.legacy`) are kept so that runs made before this module existed
keep their keys: `train.compile` was a training setting at its default `false` (hashed as such),
and joint training was written `{method: joint, adapter: {...}}` (hashed in that form). Settings
read back from older files are normalised (`comparable`) before they are compared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..sources.kinds import omitted_fields
from .legacy import HASHED_CONSTANTS, LEGACY_EXECUTION

# keys of a resolved config that are no part of a run's settings: what varies between the runs
# of one experiment, and how runs execute
RUN_LOCAL_KEYS = ("name", "seeds", "methods", "orders", "execution")
# settings added since runs were first published, left out of an identity at their default (the
# behaviour before they existed), so those runs keep their keys
# (a `[]` section is a list of mappings: the key of each of its items, as `tasks[]`)
OMITTED_AT_DEFAULT = {("train", "head_lr"): None, ("general",): None, ("diagnostics",): None, ("eval", "validation"): None, ("eval", "lookahead"): False, ("tasks[]", "val"): None, ("tasks[]", "rows_field"): None,
                      # a task's `kind:` and the fields its kind adds (`sources.kinds`): unset where the
                      # task's fields select its kind / on a task of another kind
                      **{("tasks[]", k): None for k in omitted_fields()}}


def _kept(section: str, key: str, value: Any) -> bool:
    return (section, key) not in LEGACY_EXECUTION and not (
        (section, key) in OMITTED_AT_DEFAULT and value == OMITTED_AT_DEFAULT[(section, key)])


def _without_legacy(data: dict) -> dict:
    out = {k: v for k, v in data.items()
           if (k,) not in LEGACY_EXECUTION and not ((k,) in OMITTED_AT_DEFAULT and v == OMITTED_AT_DEFAULT[(k,)])}
    for section, value in list(out.items()):
        if isinstance(value, dict):
            out[section] = {k: v for k, v in value.items() if _kept(section, k, v)}
        elif isinstance(value, list):
            item = f"{section}[]"
            out[section] = [{k: v for k, v in x.items() if _kept(item, k, v)} if isinstance(x, dict) else x
                            for x in value]
    return out


def comparable(settings: dict) -> dict:
    """Experiment settings as far as they decide the numbers, from a resolved config or from a
    summary or config.yaml of any version (execution options dropped wherever they sit)."""
    plain = json.loads(json.dumps({k: v for k, v in settings.items() if k not in RUN_LOCAL_KEYS}))
    return _without_legacy(plain)


def comparable_method(method: dict) -> dict:
    """A method entry as far as it decides the numbers (legacy execution keys in its `train:` dropped)."""
    return _without_legacy({k: v for k, v in method.items()}) if isinstance(method.get("train"), dict) else method


def differing(a: dict, b: dict) -> list[str]:
    """The top-level keys whose values differ between two mappings, sorted."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _hashed(settings: dict) -> dict:
    out = dict(settings)
    for section, constants in HASHED_CONSTANTS.items():
        if isinstance(out.get(section), dict):
            out[section] = {**out[section], **constants}
    return out


@dataclass(frozen=True)
class RunIdentity:
    """One run's identity: plain data (it travels with the spec to a Ray worker)."""

    settings: dict[str, Any]  # `comparable` experiment settings
    method: dict[str, Any]  # the method entry as resolved (options, label)
    seed: int
    order: list[str] | None  # the task order when it is not the listed one
    settings_hash: str
    run_key: str

    @classmethod
    def of(cls, settings: dict, method: dict, seed: int, order: list[str] | None = None,
           hashed_method: dict | None = None, hashed_settings: dict | None = None) -> RunIdentity:
        """`hashed_method` / `hashed_settings`: the forms hashed, when they are not `method` and
        `settings` themselves (the identity keeps the experiment's own settings either way)."""
        settings = comparable(settings)
        hashed = comparable(hashed_settings) if hashed_settings is not None else settings
        point = {"experiment": _hashed(hashed), "method": comparable_method(hashed_method or method)}
        key = {**point, "seed": seed, **({"order": order} if order is not None else {})}
        return cls(settings, method, seed, order, _digest(point), _digest(key))

    def differences(self, method: dict, settings: dict | None) -> list[str]:
        """The keys in which stored work (its method entry and, if known, its experiment settings)
        differs from this run: method keys first, then settings keys."""
        differ = differing(comparable_method(method), comparable_method(self.method))
        if settings is not None:
            differ += differing(comparable(settings), self.settings)
        return differ
