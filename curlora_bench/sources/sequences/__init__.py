"""Built-in task sequences: versioned YAML files beside this module, found by name.

A sequence names its tasks (built-in task YAMLs), its named task orders and where it comes from;
its card gives each task's size, classes and baselines. A config selects one with `sequence:`
(and `order:`), which `config.loading` expands into the config's own `tasks:` and `orders:`
before the config is parsed, so a run of a sequence is the run of the tasks it expands to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ...core.errors import BenchError
from ...core.parse import check_name, from_dict
from ...core.registry import Registry
from ..tasks import TASKS


@dataclass
class SequenceConfig:
    """A task sequence of the literature or of the embedded assets, in its named orders."""

    name: str = field(metadata={"help": "sequence name (what `sequence:` selects)"})
    description: str = field(metadata={"help": "one line shown by `curlora-bench sequences`"})
    tasks: list[str] = field(metadata={"help": "the built-in tasks of the sequence"})
    orders: dict[str, list[str]] = field(metadata={"help": "order name -> the tasks in training order"})
    source: str = field(default="", metadata={"help": "where the sequence and its orders come from"})
    version: int = field(default=1, metadata={"help": "definition version"})
    card: dict[str, str] = field(default_factory=dict, metadata={
        "help": "task -> its size, classes, majority and simple baselines (one line each)"})

    def validate(self, where: str) -> None:
        check_name(f"{where}.name", self.name, "sequence name")
        if len(self.tasks) < 2:
            raise BenchError(f"{where}.tasks: a sequence has at least two tasks, got {self.tasks!r}")
        for i, task in enumerate(self.tasks):
            if task not in TASKS:
                raise BenchError(f"{where}.tasks[{i}]: {task!r} is not a built-in task")
            if self.tasks.index(task) != i:
                raise BenchError(f"{where}.tasks[{i}]: {task!r} appears twice")
        if not self.orders:
            raise BenchError(f"{where}.orders: give at least one order")
        for name, order in self.orders.items():
            if sorted(order) != sorted(self.tasks):
                raise BenchError(f"{where}.orders.{name}: {order} is not an order of the tasks {self.tasks}")
        for task in self.card:
            if task not in self.tasks:
                raise BenchError(f"{where}.card.{task}: not a task of the sequence")

    @property
    def data(self) -> str:
        """Where its tasks' data come from: embedded (offline), hub, or both."""
        formats = {TASKS.get(t).format for t in self.tasks}
        kinds = sorted({"embedded" if f == "embedded" else "hub" if f == "hub" else "files" for f in formats})
        return " + ".join(kinds)

    def select(self, order: object, where: str = "order") -> list[str]:
        """The names of the orders `order` selects: all (None or 'all'), one name, or a list of names."""
        if order is None or order == "all":
            return list(self.orders)
        chosen = order if isinstance(order, list) else [order]
        if not chosen:
            raise BenchError(f"{where}: the list is empty; give an order of {self.name!r} ({', '.join(self.orders)}) "
                             "or leave order unset for all")
        names = []
        for i, item in enumerate(chosen):
            key = str(item)
            at = f"{where}[{i}]" if isinstance(order, list) else where
            if isinstance(item, (bool, dict, list)) or item is None or key not in self.orders:
                raise BenchError(f"{at}: sequence {self.name!r} has no order {item!r} "
                                 f"(its orders: {', '.join(self.orders)}, or all)")
            if key in names:
                raise BenchError(f"{at}: order {key} is listed twice")
            names.append(key)
        return names


def _load() -> None:
    for path in sorted(Path(__file__).parent.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data.get("orders"), dict):  # `1:` in YAML is an int key; orders are named by text
            data["orders"] = {str(k): v for k, v in data["orders"].items()}
        SEQUENCES.register(data["name"], from_dict(SequenceConfig, data, path.name))


SEQUENCES: Registry[SequenceConfig] = Registry("sequence", load=_load)
