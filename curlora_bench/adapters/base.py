"""What every adapter provides, and the helpers they share.

Adapter modules import torch, transformers and PEFT where they use them, never at import
time: their options, help and report rows are read by the CLI's `--help`, `methods` and
`report` without loading torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.env import module_seed
from ..core.errors import BenchError
from ..core.hooks import Plugin
from ..core.metrics import DiagnosticRow
from ..core.parse import from_dict, positive

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Adapter", "AdapterConfig", "RankedConfig", "check_rank", "find_targets", "freeze",
           "make_adapter", "module_seed", "set_module", "uses_conv1d", "wrap_targets"]


@dataclass
class AdapterConfig:
    """An adapter's own options (none here). What every method entry carries besides (its adapter's
    name, label, train overrides, strategy, regime) is the entry's: `config.methods.MethodEntry`."""

    def default_label(self) -> str:
        """The label an entry gets from these options ("": the adapter's name)."""
        return ""

    def label_under(self, protocol: str) -> str:
        """The default label once the options follow `protocol` (LoRA names an init that is not the
        protocol's own)."""
        return self.default_label()

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


class Adapter(Plugin):
    """One parameter-efficient method: its options, how to attach it, which tensors are its own,
    and what it adds to diagnostics, reports and exports. A new method is one module that
    subclasses this and one `"module:Class"` entry in `adapters/__init__.py`; nothing else names it. As a `Plugin` it may act
    before, during and after each stage (PEFT OSF re-wraps its layers between tasks)."""

    name: str = ""
    config_cls: type[AdapterConfig] = AdapterConfig
    help: str = ""
    # prefixes of the tensor names that belong to the adapter (trainable + fixed buffers)
    prefixes: tuple[str, ...] = ()
    # report rows read from a run summary's `diagnostics` (data: the report imports no torch)
    report_rows: tuple[DiagnosticRow, ...] = ()
    # it trains nothing of the model, only task heads (head-only): useless on a prompted task
    trains_only_heads: bool = False
    # options written before the entry's train/strategy/regime keys (where published summaries have them)
    leading_options: tuple[str, ...] = ()
    # the `method:` an entry naming this adapter is stored under, when another's (None: its own name)
    written_as: str | None = None

    def parse(self, data: dict[str, Any], where: str) -> AdapterConfig:
        """The adapter's keys of a `methods:` entry (the entry's own, `method`, `label`, `train`,
        `strategy` and `regime`, taken out) -> this method's validated options."""
        return from_dict(self.config_cls, data, where)

    def options(self, cfg: AdapterConfig) -> dict[str, Any]:
        """The options as a user writes them in an entry: `parse`'s inverse."""
        data = dataclasses.asdict(cfg)
        for f in dataclasses.fields(cfg):  # options added after runs were published: absent at their default
            if f.metadata.get("omitted_at_default") and data.get(f.name) == f.default:
                del data[f.name]
        return data

    def attach(self, model: nn.Module, targets: list[str], cfg: AdapterConfig, seed: int, where: str) -> list[str]:
        """Modify `model` in place; return the names of adapted modules.

        On return, exactly the adapter's trainable tensors require grad.
        """
        raise NotImplementedError

    def structure_for(self, model: nn.Module, modules: list[str], cfg: AdapterConfig, position: int, where: str,
                      tensors: dict[str, torch.Tensor]) -> None:
        """Before the checkpoint of the `position`-th stage (its adapter `tensors`) is loaded into a
        freshly attached model: give the adapter the structure it had then (default: as attached)."""

    def check(self, model: nn.Module, targets: list[str], cfg: AdapterConfig, where: str) -> None:
        """Fail before anything runs if `cfg` cannot be attached to `model` (model left untouched)."""
        find_targets(model, targets, where)

    def state_dict(self, model: nn.Module, modules: list[str], cfg: AdapterConfig) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (trainable and fixed), by qualified name."""
        sd = model.state_dict()
        return {k: v for k, v in sd.items() if self.prefixes and any(p in k for p in self.prefixes)}

    def diagnostics(self, model: nn.Module, modules: list[str]) -> dict[str, Any]:
        """Method-specific measurements for the run summary (JSON-able)."""
        return {}

    def export_extras(self, out: Path, cfg: AdapterConfig, modules: list[str], conv1d: bool, base_model: str,
                      tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Write extra files into an export folder; return extra metadata for curlora_bench.json."""
        return {}


PLUGIN_GROUP = "curlora_bench.methods"  # entry points of installed packages: name = "package.module:AdapterClass"


def make_adapter(cls: type[Adapter]) -> Adapter:
    """The registry's item of an `Adapter` subclass (checked by the registry): an instance of it."""
    if not (isinstance(cls.config_cls, type) and issubclass(cls.config_cls, AdapterConfig)):
        raise BenchError(f"its config_cls {cls.config_cls!r} is not a subclass of AdapterConfig")
    return cls()


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def find_targets(model: nn.Module, targets: list[str], where: str) -> list[str]:
    """Qualified names of Linear/Conv1D modules whose name ends with one of `targets`."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

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


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def wrap_targets(model: nn.Module, targets: list[str], where: str,
                 wrap: Callable[[str, nn.Module], nn.Module]) -> list[str]:
    """Freeze `model` and put `wrap(name, module)` in place of each target module (as
    `find_targets` finds them, in that order); the targets' names."""
    names = find_targets(model, targets, where)
    freeze(model)
    for name in names:
        set_module(model, name, wrap(name, model.get_submodule(name)))
    return names


def uses_conv1d(model: nn.Module, names: list[str]) -> bool:
    """True when the named layers are GPT-2 Conv1D (weights stored in x out), wrapped or not."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(getattr(m, "base_layer", m), Conv1D) for m in map(model.get_submodule, names))
