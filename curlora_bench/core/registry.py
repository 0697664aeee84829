"""Name -> thing maps: lowercase keys, loud on duplicates, helpful on misses, filled lazily.

Every plugin family (adapters, strategies, task kinds, regimes) is a `Registry` whose built-in
entries are written as `"module:object"` strings, as Python's entry points are: the registry
imports an entry's module on the first lookup of its name (or on the first listing), checks
that the object is a subclass of the family's base class carrying the entry's name, and makes
the item. The table of a family therefore imports none of its plugins, and no plugin module
imports a module that imports it back. Installed packages add entries under the family's
entry-point group, read on the first listing or miss.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import BenchError

T = TypeVar("T")


def load_object(spec: str) -> Any:
    """The object a `"package.module:attribute"` string names (ImportError / AttributeError as raised)."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A named collection of things (adapters, strategies, task kinds, regimes, builders, models).

    `entries`: name -> `"module:object"`, each loaded on first use, checked against `base` (a
    subclass of it whose `name` is the entry's) and turned into the item by `make` (default: the
    class itself). `load`, if given, is called once, on the first lookup: it imports modules that
    register their items themselves (the embedded-data builders). `group`: the entry-point group
    of installed packages' items, read like `entries`.
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None, base: type | None = None,
                 make: Callable[[Any], T] | None = None, load: Callable[[], None] | None = None,
                 group: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entries = {k.lower(): v for k, v in (entries or {}).items()}
        self.base, self._make = base, make
        self._load = load
        self._group = group
        self.origins: dict[str, str] = {}  # plug-in name -> the package it came from

    def adopt(self, name: str, obj: Any) -> T:
        """`obj` checked as an item named `name` of this registry, made into the item."""
        if self.base is not None:
            if not (isinstance(obj, type) and issubclass(obj, self.base)):
                where = self.base.__module__.removesuffix(".base")  # as its package exports it
                raise BenchError(f"{obj!r} is not a subclass of {where}.{self.base.__qualname__}")
            if getattr(obj, "name", name) != name:
                raise BenchError(f"its class's name is {obj.name!r}, not the entry's {name!r}")
        return self._make(obj) if self._make is not None else obj

    def _entry(self, key: str) -> None:
        spec = self._entries.pop(key)
        try:
            obj = load_object(spec)
        except (ImportError, AttributeError) as exc:
            raise BenchError(f"{self.kind} {key!r} ({spec}): cannot load: {type(exc).__name__}: {exc}") from None
        try:
            self._items[key] = self.adopt(key, obj)
        except (BenchError, TypeError, ValueError) as exc:
            raise BenchError(f"{self.kind} {key!r} ({spec}): {exc}") from None

    def _loaded(self, key: str | None = None) -> dict[str, T]:
        """The items, `key`'s loaded (None: every entry and plug-in loaded)."""
        if self._load is not None:
            load, self._load = self._load, None
            load()
        if key is not None and key in self._entries:
            self._entry(key)
        if key is not None and key in self._items:
            return self._items
        for name in list(self._entries):
            self._entry(name)
        if self._group is not None:
            group, self._group = self._group, None
            for name, obj, origin in entry_point_objects(group, self.kind):
                try:
                    if name.lower() in self._items:
                        raise BenchError("that name is taken")
                    self._items[name.lower()] = self.adopt(name, obj)
                except (BenchError, TypeError, ValueError) as exc:
                    raise BenchError(f"{self.kind} plug-in {name!r} (from {origin}): {exc}") from None
                self.origins[name.lower()] = origin
        return self._items

    def entry(self, name: str, spec: str) -> None:
        """Add a `"module:object"` entry (loaded on its first lookup)."""
        key = name.lower()
        if key in self._items or key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[key] = spec

    def register(self, name: str, item: T) -> T:
        """Add an item made elsewhere (a test's, a guide's example)."""
        key = name.lower()
        if key in self._items or key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[key] = item
        return item

    def get(self, name: str, where: str | None = None) -> T:
        key = str(name).lower()
        items = self._loaded(key)
        if key not in items:
            prefix = f"{where}: " if where else ""
            known = ", ".join(sorted(items))
            raise BenchError(f"{prefix}unknown {self.kind} {name!r} (known: {known})")
        return items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._loaded(name.lower())

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._loaded()))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._loaded().items())


def entry_point_objects(group: str, kind: str) -> list[tuple[str, Any, str]]:
    """(name, the loaded object, 'package version') of every entry point of `group` installed; one
    that cannot be imported is one line naming it and its package."""
    from importlib.metadata import entry_points

    out = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        origin = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value
        try:
            obj = ep.load()
        except Exception as exc:  # a plug-in's own import error, whatever it is: one line, not a traceback
            raise BenchError(f"{kind} plug-in {ep.name!r} (from {origin}): cannot load {ep.value}: "
                             f"{type(exc).__name__}: {exc}") from None
        out.append((ep.name, obj, origin))
    return out
