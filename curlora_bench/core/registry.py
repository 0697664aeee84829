"""Name -> thing maps: lowercase keys, loud on duplicates, helpful on misses, filled lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of things (adapters, strategies, task kinds, builders, models).

    `load`, if given, is called once, on the first lookup: it imports the modules that
    register the entries (as lm-evaluation-harness registers its tasks by name), so importing
    the registry itself costs nothing and `--help` never pays for what a command does not use.
    """

    def __init__(self, kind: str, load: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._load = load

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
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
