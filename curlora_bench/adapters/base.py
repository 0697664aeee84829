"""What every adapter provides, and the helpers they share."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.errors import BenchError
from ..core.metrics import Row
from ..core.parse import from_dict, positive
from ..core.registry import Registry


@dataclass
class AdapterConfig:
    """Options every method has."""

    method: str = field(metadata={"help": "adapter name (see `curlora-bench methods`)"})
    label: str | None = field(
        default=None, metadata={"help": "column name in reports; default derived from the options"}
    )
    train: dict[str, Any] | None = field(
        default=None, metadata={"help": "this method's own train settings over the experiment's ({lr: 1.0e-2})"}
    )
    strategy: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "continual-learning strategy: naive | {name: replay|ewc|l2, ...} (below)"}
    )

    def default_label(self) -> str:
        return self.method

    @property
    def display_label(self) -> str:
        return self.label or self.default_label()

    def validate(self, where: str) -> None:
        pass

    def follow_protocol(self, protocol: str) -> None:
        """Fill options left unset (None) with the protocol's choice (`standard` | `paper`)."""


@dataclass
class RankedConfig(AdapterConfig):
    """Options of low-rank methods."""

    rank: int = field(default=8, metadata={"help": "rank r (CURLoRA: U is r x r)"})
    alpha: float = field(
        default=1.0, metadata={"help": "update scale: y = base(x) + alpha * update(x), as in the paper"}
    )

    def validate(self, where: str) -> None:
        positive(where, "rank", self.rank)
        positive(where, "alpha", self.alpha, allow_zero=True)


class Adapter:
    """One parameter-efficient method: its options, how to attach it, which tensors are its own,
    and what it adds to diagnostics, reports and exports. A new method is one module that
    subclasses this and registers itself; nothing elsewhere names it."""

    name: str = ""
    config_cls: type[AdapterConfig] = AdapterConfig
    help: str = ""
    # prefixes of the tensor names that belong to the adapter (trainable + fixed buffers)
    prefixes: tuple[str, ...] = ()

    def parse(self, data: dict[str, Any], where: str) -> AdapterConfig:
        """A `methods:` entry (a mapping with `method:`) -> this method's validated config."""
        return from_dict(self.config_cls, data, where)

    def options(self, cfg: AdapterConfig) -> dict[str, Any]:
        """The flat mapping a user writes, label explicit: `parse`'s inverse."""
        data = {**dataclasses.asdict(cfg), "label": cfg.display_label}
        for key in ("train", "strategy"):
            if data[key] is None:
                del data[key]  # absent unless set, so run keys of plain entries stay as they were
        return data

    def attach(
        self, model: nn.Module, targets: list[str], cfg: AdapterConfig, seed: int, where: str
    ) -> list[str]:
        """Modify `model` in place; return the names of adapted modules.

        On return, exactly the adapter's trainable tensors require grad.
        """
        raise NotImplementedError

    def before_stage(self, model: nn.Module, modules: list[str], cfg: AdapterConfig, stage: int, where: str) -> None:
        """Called before training stage `stage` (1-based) of a sequence: a method whose own
        continual protocol changes the adapter between tasks does it here (PEFT OSF)."""

    def structure_for(self, model: nn.Module, modules: list[str], cfg: AdapterConfig, stage: int, where: str,
                      tensors: dict[str, torch.Tensor]) -> None:
        """Before checkpoint `stage` (its adapter `tensors`) is loaded into a freshly attached model:
        give the adapter the structure it had when that checkpoint was written (default: as attached)."""

    def check(self, model: nn.Module, targets: list[str], cfg: AdapterConfig, where: str) -> None:
        """Fail before anything runs if `cfg` cannot be attached to `model` (model left untouched)."""
        find_targets(model, targets, where)

    def state_dict(
        self, model: nn.Module, modules: list[str], cfg: AdapterConfig
    ) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (trainable and fixed), by qualified name."""
        sd = model.state_dict()
        return {k: v for k, v in sd.items() if self.prefixes and any(p in k for p in self.prefixes)}

    def diagnostics(self, model: nn.Module, modules: list[str]) -> dict[str, Any]:
        """Method-specific measurements for the run summary (JSON-able)."""
        return {}

    def report_rows(self) -> list[Row]:
        """Report rows reading this method's `diagnostics` from a summary."""
        return []

    def export_extras(self, out: Path, cfg: AdapterConfig, modules: list[str], conv1d: bool, base_model: str,
                      tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Write extra files into an export folder; return extra metadata for curlora_bench.json."""
        return {}


ADAPTERS: Registry[Adapter] = Registry("method")


def register(adapter_cls: type[Adapter]) -> type[Adapter]:
    ADAPTERS.register(adapter_cls.name, adapter_cls())
    return adapter_cls


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def find_targets(model: nn.Module, targets: list[str], where: str) -> list[str]:
    """Qualified names of Linear/Conv1D modules whose name ends with one of `targets`."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        if any(name == t or name.endswith("." + t) for t in targets):
            found.append(name)
    if not found:
        raise BenchError(f"{where}: no Linear/Conv1D module matches target_modules {targets}")
    return found


def check_rank(model: nn.Module, targets: list[str], rank: Any, where: str, key: str = "rank") -> None:
    """A low-rank factor wider than its weight is not low rank: refuse it before anything is
    allocated (an absurd rank would otherwise fill memory)."""
    if not isinstance(rank, int) or isinstance(rank, bool):
        return
    for name in find_targets(model, targets, where):
        m, n = model.get_submodule(name).weight.shape
        if rank > min(m, n):
            raise BenchError(f"{f'{where}.{key}' if key else where}: {rank} exceeds the {m}x{n} weight of {name}")


def module_seed(seed: int, name: str) -> int:
    """A per-module seed derived from the run seed and the module's name (stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def uses_conv1d(model: nn.Module, names: list[str]) -> bool:
    """True when the named layers are GPT-2 Conv1D (weights stored in x out), wrapped or not."""
    return any(isinstance(getattr(m, "base_layer", m), Conv1D) for m in map(model.get_submodule, names))
