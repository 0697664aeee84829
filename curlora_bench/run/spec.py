"""What a run is, as data: the serialisable spec of one (method, seed, order) of an experiment."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import AdapterConfig
from ..config.experiment import ExperimentConfig, resolved_dict
from ..config.identity import RunIdentity
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

    @classmethod
    def of(cls, cfg: ExperimentConfig, method_index: int, seed: int, out: Path, order: int | None = None) -> RunSpec:
        names = cfg.orders[order] if order is not None else None
        if names == [t.name for t in cfg.tasks]:
            names = None  # the listed order: no order in the identity
        identity = cfg.identity(cfg.methods[method_index], seed, names)
        spec = cls(resolved_dict(cfg), method_index, seed, str(Path(out).resolve()), order, identity)
        spec.__dict__["experiment"] = cfg  # the parsed config this spec was made from
        return spec

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """The spec from `dataclasses.asdict(spec)`, its plain form (what a Ray task receives)."""
        return cls(**{**data, "identity": RunIdentity(**data["identity"])})

    @functools.cached_property
    def experiment(self) -> ExperimentConfig:
        """The parsed config (parsed once per spec)."""
        return from_dict(ExperimentConfig, self.config, "")

    @property
    def method(self) -> AdapterConfig:
        return self.experiment.methods[self.method_index]

    @property
    def task_order(self) -> list[str] | None:
        """The task names in this run's training order; None when it is the config's own."""
        return self.identity.order

    @property
    def where(self) -> str:
        return f"methods[{self.method_index}]"

    @property
    def name(self) -> str:
        """How messages name the run: `lora-r8 seed 0`, with its order when not the listed one."""
        return f"{self.method.display_label} seed {self.seed}" + (f" order {self.order}" if self.task_order else "")

    @property
    def folder(self) -> Path:
        return run_dir(Path(self.out), self.method.display_label, self.seed,
                       self.order if self.task_order is not None else None)
