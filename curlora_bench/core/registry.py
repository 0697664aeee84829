"""Name -> thing maps: lowercase keys, loud on duplicates, helpful on misses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of things (adapters, tasks, models, corpora)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        key = name.lower()
        if key in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[key] = item
        return item

    def get(self, name: str, where: str | None = None) -> T:
        key = str(name).lower()
        if key not in self._items:
            prefix = f"{where}: " if where else ""
            known = ", ".join(sorted(self._items))
            raise BenchError(f"{prefix}unknown {self.kind} {name!r} (known: {known})")
        return self._items[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
