"""The one place old spellings are read.

- Joint training written `{method: joint, adapter: {...}}`, as it was before regimes existed,
  in a config entry, in a stored summary, and in the form its run keys were hashed in (so runs
  published then keep their keys).
- Execution options where they lived before `execution:` existed (`train.log_every`, `log`,
  `cache_dir`, ...), in a config, a `--set` and a stored config snapshot.
- Results of schema 2: `accuracy_matrix` (now `score_matrix`: a target task's entries are
  ROUGE-L) and `majority_baseline` (now `baseline`: a prompted task's is its zero-shot score),
  renamed when read.

For joint entries, one rule: the legacy entry is exactly the inner method with `regime: joint`, the
outer entry's `label`, `train` and `strategy` moving onto it. Anything that cannot mean one joint
run is refused with one line naming the field: a joint entry inside a joint entry, a `regime:`
other than joint beside `method: joint`, or `label`, `train`, `strategy` or `regime: sequential`
inside `adapter:`.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import BenchError

LEGACY_JOINT = "joint"  # the old method name
# where execution options lived before they had their own section (still accepted, and moved)
LEGACY_EXECUTION = {("train", "gradient_checkpointing"): "gradient_checkpointing",
                    ("train", "log_every"): "log_every", ("train", "compile"): "compile",
                    ("log",): "log", ("cache_dir",): "cache_dir"}
# the part of a run's settings hashed as a constant: compile at its default when it was a train key
HASHED_CONSTANTS = {"train": {"compile": False}}
# results schema versions still read, and the fields renamed since (old name -> new)
OLDER_SCHEMAS = (2,)
RENAMED_FIELDS = {"accuracy_matrix": "score_matrix", "majority_baseline": "baseline"}
# what a legacy joint entry may hold besides `method` and `adapter`
OUTER_KEYS = ("label", "train", "strategy", "regime")


def is_legacy_joint(data: Any) -> bool:
    return isinstance(data, dict) and data.get("method") == LEGACY_JOINT


def unwrap_joint(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A config's `{method: joint, adapter: {...}}` as the entry it means: the inner method with
    `regime: joint` (and the outer label/train/strategy)."""
    inner = data.get("adapter", {"method": "lora"})
    if isinstance(inner, str):
        inner = {"method": inner}
    if not isinstance(inner, dict):
        raise BenchError(f"{where}.adapter: expected a method entry mapping, got {inner!r}")
    unknown = sorted(set(data) - {"method", "adapter", *OUTER_KEYS})
    if unknown:
        raise BenchError(f"{where}.{unknown[0]}: unknown key of a joint entry (expected: adapter, label, train, "
                         "strategy)")
    if data.get("regime") not in (None, LEGACY_JOINT):
        raise BenchError(f"{where}.regime: {data['regime']!r} contradicts `method: joint` (joint training); write "
                         f"{{method: <adapter>, regime: {data['regime']}}} instead")
    if inner.get("method") == LEGACY_JOINT:
        raise BenchError(f"{where}.adapter.method: a joint entry inside a joint entry; give the adapter itself "
                         "(e.g. {method: lora, rank: 8})")
    if "method" not in inner:
        raise BenchError(f"{where}.adapter: expected a mapping with a 'method' key, got {inner!r}")
    for key in ("strategy", "train"):
        if inner.get(key) is not None:
            raise BenchError(f"{where}.adapter.{key}: set it on the joint entry itself")
    if inner.get("regime") not in (None, LEGACY_JOINT):
        raise BenchError(f"{where}.adapter.regime: {inner['regime']!r} contradicts the joint entry around it")
    out = {**inner, "regime": LEGACY_JOINT}
    out.pop("label", None)  # the inner label names the inner method, not the joint run
    for key in ("label", "train", "strategy"):
        if data.get(key) is not None:
            out[key] = data[key]
    return out


def upgrade_summary(data: dict) -> dict:
    """A summary written before regimes existed (joint training was the method `joint` wrapping its
    adapter), read as the adapter's entry with `regime: joint`; anything else as it is."""
    method = data.get("method")
    if "regime" in data or not is_legacy_joint(method) or not isinstance(method.get("adapter"), dict):
        return data
    inner = {k: v for k, v in method["adapter"].items() if k != "label"}
    extra = {k: method[k] for k in ("train",) if method.get(k) is not None}
    return {**data, "regime": LEGACY_JOINT, "method": {**inner, "label": method.get("label"), **extra,
                                                       "regime": LEGACY_JOINT}}


def hashed_joint(regime: str, label: str, train: dict | None, adapter: dict[str, Any]) -> dict[str, Any]:
    """The form a joint entry's run key is hashed in: `{method: joint, label, [train], adapter}`,
    as it was written before regimes existed."""
    out: dict[str, Any] = {"method": regime, "label": label}
    if train:
        out["train"] = train
    return {**out, "adapter": adapter}


def move_legacy_keys(raw: dict, where: str) -> None:
    """Execution options where they lived before `execution:` existed (`train.log_every`, `log`,
    `cache_dir`, ...) move into `execution:`, so older configs and config.yaml files still load."""
    for path, key in LEGACY_EXECUTION.items():
        node = raw
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        value = node.pop(path[-1])
        execution = raw.setdefault("execution", {})
        if not isinstance(execution, dict):
            return  # the schema names it
        if key in execution and execution[key] != value:
            raise BenchError(f"{where}{'.'.join(path)}: also set as execution.{key} (to {execution[key]!r}); "
                             f"keep one (execution.{key})")
        execution[key] = value


def legacy_set_key(parts: list[str]) -> list[str]:
    """A `--set` key under the name an execution option had before `execution:` existed, moved."""
    moved = LEGACY_EXECUTION.get(tuple(parts))
    return ["execution", moved] if moved is not None else parts


def renamed_fields(data: dict) -> dict:
    """Fields under the names they had before schema 3, renamed (a summary's or a record's)."""
    return {RENAMED_FIELDS.get(k, k): v for k, v in data.items()} if RENAMED_FIELDS.keys() & data.keys() else data
