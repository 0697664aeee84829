"""The one place old spellings are read: joint training written `{method: joint, adapter: {...}}`,
as it was before regimes existed, in a config entry, in a stored summary, and in the form its
run keys were hashed in (so runs published then keep their keys).

One rule for all of them: the legacy entry is exactly the inner method with `regime: joint`, the
outer entry's `label`, `train` and `strategy` moving onto it. Anything that cannot mean one joint
run is refused with one line naming the field: a joint entry inside a joint entry, a `regime:`
other than joint beside `method: joint`, or `label`, `train`, `strategy` or `regime: sequential`
inside `adapter:`.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import BenchError

LEGACY_JOINT = "joint"  # the old method name
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
