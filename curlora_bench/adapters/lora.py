"""LoRA through PEFT, configured as the paper's plain LoRA (kaiming A, zero B, scale alpha)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..core.parse import positive
from ..core.protocol import Protocol
from .base import (
    Adapter,
    RankedConfig,
    check_rank,
    find_targets,
    freeze,
    module_seed,
    uses_conv1d,
)

if TYPE_CHECKING:
    import torch

INIT_SUFFIX = {"peft": "-peftinit", "reference": "-refinit"}


@dataclass
class LoRAConfig(RankedConfig):
    """LoRA options (PEFT `LoraConfig` underneath)."""

    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (paper: none)"})
    init: Literal["peft", "reference"] | None = field(
        default=None,
        metadata={"help": "A's init. peft: PEFT's kaiming on A (r x in), U(+-1/sqrt(in)); reference: the "
                          "paper's code, kaiming on A (in x r), U(+-1/sqrt(r)), sqrt(in/r) times larger. "
                          "null = the protocol's: standard peft, paper reference"},
    )

    def default_label(self, protocol: str = "standard") -> str:
        """`lora-r8`; an init other than the protocol's own is named: `lora-r8-refinit`."""
        own = Protocol.of(protocol).lora_init
        init = self.init or own
        return f"lora-r{self.rank}" + ("" if init == own else INIT_SUFFIX[init])

    def label_under(self, protocol: str) -> str:
        # read while `init` may still be unset (the entry asks before `follow_protocol`): under
        # `paper` the resolved init (reference) is the protocol's own, so the label stays `lora-r8`
        return self.default_label(protocol)

    def follow_protocol(self, protocol: str) -> None:
        self.init = self.init or Protocol.of(protocol).lora_init

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "dropout", self.dropout, allow_zero=True)


def peft_inject(model, peft_config, names: list[str], trainable_marker: str) -> None:
    """Inject a PEFT adapter into `model` in place and leave only its tensors trainable."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    freeze(model)
    # The tuner injects its layers into `model` in place; shared state (VeRA's projections) is
    # registered inside the injected layers, so `model` alone carries everything afterwards.
    PEFT_TYPE_TO_TUNER_MAPPING[peft_config.peft_type](model, peft_config, "default")
    for pname, p in model.named_parameters():
        p.requires_grad_(trainable_marker in pname)


def reference_lora_a(in_features: int, rank: int, seed: int) -> torch.Tensor:
    """A as the paper's code draws it (`code/lora.py`): an (in, r) tensor, kaiming-uniform with
    a = sqrt(5). Its fan-in is r (dim 1), so A ~ U(-1/sqrt(r), 1/sqrt(r)). Drawn from a generator
    seeded by `seed`, never the global RNG; with the global RNG seeded alike, the reference's
    `LoRALayer` draws the same values."""
    import torch

    a = torch.empty(in_features, rank)
    gen = torch.Generator().manual_seed(seed)
    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
    return a


class LoRA(Adapter):
    name = "lora"
    config_cls = LoRAConfig
    help = "LoRA via PEFT: kaiming A (PEFT's or the paper code's scale), zero B, update scaled by alpha (lora_alpha = alpha * r)"
    prefixes = ("lora_",)

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        import torch
        from peft import LoraConfig

        names = find_targets(model, targets, where)
        peft_config = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha * cfg.rank,  # PEFT scales by lora_alpha / r; the paper by alpha
            lora_dropout=cfg.dropout,
            target_modules=names,
            fan_in_fan_out=uses_conv1d(model, names),
            init_lora_weights=True,
            bias="none",
        )
        peft_inject(model, peft_config, names, "lora_")
        if cfg.init == "reference":
            with torch.no_grad():
                for name in names:
                    lora_a = model.get_submodule(name).lora_A["default"].weight  # (r, in) = A^T
                    a = reference_lora_a(lora_a.shape[1], cfg.rank, module_seed(seed, name))
                    lora_a.copy_(a.T)
        return names

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        """PEFT's own save layout beside ours, so `PeftModel.from_pretrained(base, out)` loads it."""
        from peft import LoraConfig
        from safetensors.torch import save_file

        peft_tensors = {"base_model.model." + k.replace(".default.", "."): v for k, v in tensors.items()}
        save_file(peft_tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
        LoraConfig(
            r=cfg.rank, lora_alpha=cfg.alpha * cfg.rank, lora_dropout=cfg.dropout, target_modules=modules,
            fan_in_fan_out=conv1d, bias="none", base_model_name_or_path=base_model,
        ).save_pretrained(str(out))
        return {"peft_format": True}
