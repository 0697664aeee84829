"""LoRA through PEFT, configured as the paper's plain LoRA (kaiming A, zero B, scale alpha)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig
from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from safetensors.torch import save_file

from ..config.parse import positive
from .base import Adapter, RankedConfig, find_targets, freeze, register, uses_conv1d


@dataclass
class LoRAConfig(RankedConfig):
    """LoRA options (PEFT `LoraConfig` underneath)."""

    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (paper: none)"})

    def default_label(self) -> str:
        return f"lora-r{self.rank}"

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "dropout", self.dropout, allow_zero=True)


def peft_inject(model, peft_config, names: list[str], trainable_marker: str) -> None:
    """Inject a PEFT adapter into `model` in place and leave only its tensors trainable."""
    freeze(model)
    # The tuner injects its layers into `model` in place; shared state (VeRA's projections) is
    # registered inside the injected layers, so `model` alone carries everything afterwards.
    PEFT_TYPE_TO_TUNER_MAPPING[peft_config.peft_type](model, peft_config, "default")
    for pname, p in model.named_parameters():
        p.requires_grad_(trainable_marker in pname)


@register
class LoRA(Adapter):
    name = "lora"
    config_cls = LoRAConfig
    help = "LoRA via PEFT: kaiming A, zero B, update scaled by alpha (lora_alpha = alpha * r)"
    prefixes = ("lora_",)

    def attach(self, model, targets, cfg, seed, where):
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
        return names

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        """PEFT's own save layout beside ours, so `PeftModel.from_pretrained(base, out)` loads it."""
        peft_tensors = {"base_model.model." + k.replace(".default.", "."): v for k, v in tensors.items()}
        save_file(peft_tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
        LoraConfig(
            r=cfg.rank, lora_alpha=cfg.alpha * cfg.rank, lora_dropout=cfg.dropout, target_modules=modules,
            fan_in_fan_out=conv1d, bias="none", base_model_name_or_path=base_model,
        ).save_pretrained(str(out))
        return {"peft_format": True}
