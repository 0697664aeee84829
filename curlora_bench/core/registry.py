"""Name -> thing maps: lowercase keys, loud on duplicates, helpful on misses, filled lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of things (adapters, strategies, task kinds, builders, models).

    `load`, if given, is called once, on the first lookup: it imports the modules that
    register the entries (as lm-evaluation-harness registers its tasks by name), so importing
    the registry itself costs nothing and `--help` never pays for what a command does not use.
    """

    def __init__(self, kind: str, load: Callable[[], None] | None = None, group: str | None = None,
                 adopt: Callable[[str, Any], T] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._load = load
        # plug-ins: entry points of `group` in installed packages, each turned into an item by `adopt`
        self._group, self._adopt = group, adopt
        self.origins: dict[str, str] = {}  # plug-in name -> the package it came from

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        if self._group is not None:
            group, self._group = self._group, None
            for name, obj, origin in entry_point_objects(group, self.kind):
                try:
                    item = self._adopt(name, obj) if self._adopt is not None else obj
                    self.register(name, item)
                except (BenchError, TypeError, ValueError) as exc:
                    raise BenchError(f"{self.kind} plug-in {name!r} (from {origin}): {exc}") from None
                self.origins[name.lower()] = origin
        return self._items

    def register(self, name: str, item: T) -> T:
        key = name.lower()
        if key in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[key] = item
        return item

    def get(self, name: str, where: str | None = None) -> T:
        key = str(name).lower()
        items = self._loaded()
        if key not in items:
            prefix = f"{where}: " if where else ""
            known = ", ".join(sorted(items))
            raise BenchError(f"{prefix}unknown {self.kind} {name!r} (known: {known})")
        return items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._loaded()

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
