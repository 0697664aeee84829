"""What a run is, as data: the serialisable spec of one (method, seed, order) of an experiment."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.experiment import ExperimentConfig, resolved_dict
from ..config.identity import RunIdentity
from ..config.methods import MethodEntry
from ..core.layout import run_dir
from ..core.parse import from_dict


@dataclass(frozen=True)
class RunSpec:
    """One (method, seed, order) of an experiment: plain data, so it can run in another process.

    `config` is the resolved config (`resolved_dict`): paths absolute, built-in tasks expanded,
    labels explicit, so parsing it again anywhere gives the same experiment. `identity` is the
    run's identity (`config.identity`), computed once here and carried.
    """

    config: dict[str, Any]
    method_index: int
    seed: int
    out: str  # the experiment folder
    order: int | None  # index into the config's `orders`; None: the tasks as listed
    identity: RunIdentity
    origin: str | None = None  # the entry the user wrote (`methods[0]`, a grid point of it) for messages

    @classmethod
    def of(cls, cfg: ExperimentConfig, method_index: int, seed: int, out: Path, order: int | None = None,
           resolved: dict[str, Any] | None = None) -> RunSpec:
        """`resolved`: `resolved_dict(cfg)` when the caller made it already (one for every spec)."""
        names = cfg.orders[order] if order is not None else None
        if names == [t.name for t in cfg.tasks]:
            names = None  # the listed order: no order in the identity
        resolved = resolved if resolved is not None else resolved_dict(cfg)
        identity = cfg.identity(cfg.methods[method_index], seed, names, resolved)
        spec = cls(resolved, method_index, seed, str(Path(out).resolve()), order, identity, cfg.origin(method_index))
        spec.__dict__["experiment"] = cfg  # the parsed config this spec was made from
        return spec

    def alone(self) -> dict[str, Any]:
        """The plain form of this spec with only its own method in the config (what a Ray task
        receives: a sweep of N points sends N small specs, not N copies of N entries)."""
        config = {**self.config, "methods": [self.config["methods"][self.method_index]]}
        return {"config": config, "method_index": 0, "seed": self.seed, "out": self.out, "order": self.order,
                "identity": dataclasses.asdict(self.identity), "origin": self.where}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """The spec from `dataclasses.asdict(spec)`, its plain form (what a Ray task receives)."""
        return cls(**{**data, "identity": RunIdentity(**data["identity"])})

    @functools.cached_property
    def experiment(self) -> ExperimentConfig:
        """The parsed config (parsed once per spec)."""
        return from_dict(ExperimentConfig, self.config, "")

    @property
    def method(self) -> MethodEntry:
        return self.experiment.methods[self.method_index]

    @property
    def task_order(self) -> list[str] | None:
        """The task names in this run's training order; None when it is the config's own."""
        return self.identity.order

    @property
    def where(self) -> str:
        return self.origin or f"methods[{self.method_index}]"

    @property
    def name(self) -> str:
        """How messages name the run: `lora-r8 seed 0`, with its order when not the listed one."""
        return f"{self.method.display_label} seed {self.seed}" + (f" order {self.order}" if self.task_order else "")

    @property
    def folder(self) -> Path:
        return run_dir(Path(self.out), self.method.display_label, self.seed,
                       self.order if self.task_order is not None else None)
