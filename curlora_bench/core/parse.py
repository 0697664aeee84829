"""Strict dataclass <- mapping conversion: unknown keys and wrong types name the key."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import BenchError


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _fail(where: str, tp: Any, value: Any) -> typing.NoReturn:
    raise BenchError(f"{where}: expected {_type_name(tp)}, got {value!r}")


_PLAIN = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (lightly normalised)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        _fail(where, tp, value)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        # the one option of the value's own shape (a mapping for a dataclass, a list for a list):
        # its own, more precise error (Optional[X] is the case of one option)
        shaped = [a for a in options if (isinstance(value, dict) and dataclasses.is_dataclass(a))
                  or (isinstance(value, list) and get_origin(a) is list)]
        if len(options) == 1 or len(shaped) == 1:
            return coerce((shaped or options)[0], value, where)
        for arg in options:
            try:
                return coerce(arg, value, where)
            except BenchError:
                continue
        _fail(where, tp, value)
    if origin is Literal:
        # YAML 1.1 reads a bare `off`/`on` as false/true; take it as the word where that is a choice.
        if isinstance(value, bool) and ("on" if value else "off") in get_args(tp):
            return "on" if value else "off"
        if value in get_args(tp):
            return value
        _fail(where, tp, value)
    if tp in _PLAIN:  # taken as they are, never converted (a bool is no int here)
        if _PLAIN[tp](value):
            return value
        _fail(where, tp, value)
    if tp is float:
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept it as the number it plainly is.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                _fail(where, tp, value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):  # nan or inf: never a setting
                _fail(where, tp, value)
            return float(value)
        _fail(where, tp, value)
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            _fail(where, tp, value)
        return [coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, dict):
            _fail(where, tp, value)
        return {
            coerce(key_tp, k, f"{where}.{k}"): coerce(val_tp, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def declared_fields(cls: Any) -> list[dataclasses.Field]:
    """The fields a user writes and `to_dict` writes back: every field but those marked
    `derived` (filled in by a load step: where entries came from, which flags set an option)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("derived")]


def written_type(f: dataclasses.Field, hints: dict[str, Any]) -> Any:
    """The type a user writes for field `f`: its declared type, or, where the field's metadata has
    `written` (entries the class turns into its declared type: grids expanded, task names looked
    up), that type. A class with such fields has a `parse_written(values, written, where)`
    classmethod that returns the instance, every field of its declared type."""
    return f.metadata.get("written", hints[f.name])


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise BenchError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in declared_fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            known = ", ".join(fields)
            raise BenchError(f"{prefix}{key}: unknown key (expected one of: {known})")
    kwargs, written = {}, {}
    for name, f in fields.items():
        if name in data:
            value = coerce(written_type(f, hints), data[name], f"{prefix}{name}")
            (written if "written" in f.metadata else kwargs)[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BenchError(f"{prefix}{name}: required key is missing")
    if written or any("written" in f.metadata for f in fields.values()):
        return cls.parse_written(kwargs, written, where)  # the class's own load step (see `written_type`)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain YAML/JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in declared_fields(obj)}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def field_help(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for each field, from `metadata={'help': ...}`."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        rows.append((f.name, repr(default), f.metadata.get("help", "")))
    return rows


# The one rule for every name that becomes a folder or a key: an experiment's `name:`, a
# method's label, a task's name. ASCII letters, digits, '_', '-' and '.', not starting with '.'
# or '-' (so never '..', a hidden file or an option), at most 100 characters.
# A method's label may also hold '+' after its first character (not a path separator): the
# strategy suffix of `lora-r8+replay64`.
NAME_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
LABEL_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")
NAME_HELP = "ASCII letters, digits, '_', '-' or '.', not starting with '.' or '-', at most 100 characters"
LABEL_HELP = "ASCII letters, digits, '_', '-', '.' or '+', not starting with '.', '-' or '+', at most 100 characters"


def check_name(where: str, value: Any, what: str = "name", plus: bool = False) -> str:
    """Raise a one-line error unless `value` follows NAME_RULE, or LABEL_RULE with `plus`
    (names are data, never paths)."""
    rule, rule_help = (LABEL_RULE, LABEL_HELP) if plus else (NAME_RULE, NAME_HELP)
    if not isinstance(value, str) or not rule.fullmatch(value):
        raise BenchError(f"{where}: {what} {value!r} must be {rule_help}")
    return value


def positive(where: str, name: str, value: float | int | None, allow_zero: bool = False) -> None:
    """Raise a one-line error if a numeric option is not positive."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        prefix = f"{where}." if where else ""
        raise BenchError(f"{prefix}{name}: must be {bound}, got {value!r}")


def short_value(v: Any) -> str:
    """3e-4 -> '3e-4', 0.01 -> '0.01', 8 -> '8', True -> 'true'."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            mantissa, exp = f"{v:.2e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{v:g}"
    return str(v)
