"""Any PEFT method by its PEFT type, with PEFT's own config keys passed through unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import BenchError
from ..core.parse import from_dict
from .base import (
    Adapter,
    AdapterConfig,
    check_rank,
    find_targets,
    uses_conv1d,
)
from .lora import peft_inject

# PEFT types with an adapter module of their own (same spelling, `{method: peft, type: OSF}`, same
# run keys): the entry is parsed, attached and checkpointed by that adapter
OWN_ADAPTER = {"OSF": "osf"}
# Names people use for LoRA variants that PEFT expresses as LoraConfig options.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "DORA": ("LORA", {"use_dora": True}),
    "PISSA": ("LORA", {"init_lora_weights": "pissa"}),
    "RSLORA": ("LORA", {"use_rslora": True}),
}


@dataclass
class PeftPassthroughConfig(AdapterConfig):
    """`{method: peft, type: VERA, r: 8, ...}`: every key besides the entry's own, type and
    rank_step goes to PEFT."""

    type: str = field(default="LORA", metadata={"help": "PEFT type: LORA, VERA, OSF, ... or DORA/PISSA/RSLORA"})
    rank_step: int | float | None = field(default=None, metadata={
        "help": "OSF only (adapters/osf.py): preserved rank added before each later task (OSF's continual protocol: merge, then "
                "re-wrap with effective_rank + (t-1) * rank_step); null = effective_rank"})
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "any key of PEFT's config for that type, written inline (r, lora_alpha, ...)", "inline": True})

    def default_label(self) -> str:
        rank = self.options.get("r")
        if rank is None and self.options.get("effective_rank") is not None:  # OSF: the preserved rank
            return f"peft-{self.type.lower()}-e{self.options['effective_rank']}"
        return f"peft-{self.type.lower()}" + (f"-r{rank}" if rank is not None else "")

    def resolve(self, where: str) -> tuple[str, dict[str, Any]]:
        from peft.utils import PeftType

        base, extra = ALIASES.get(self.type.upper(), (self.type.upper(), {}))
        if base not in PeftType.__members__:
            known = ", ".join(sorted(list(ALIASES) + [t for t in PeftType.__members__]))
            raise BenchError(f"{where}.type: unknown PEFT type {self.type!r} (known: {known})")
        return base, {**extra, **self.options}

    def validate(self, where: str) -> None:
        base, options = self.resolve(where)
        self.build(base, options, [], where)
        if self.rank_step is not None:
            raise BenchError(f"{where}.rank_step: only OSF grows a preserved rank between tasks, not {base}")

    def prefix(self) -> str:
        """PEFT's name prefix of this type's trainable tensors (lora_, vera_lambda_, ...)."""
        from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
        from peft.utils import PeftType

        return PEFT_TYPE_TO_PREFIX_MAPPING[PeftType[self.resolve("")[0]]]

    @staticmethod
    def build(base: str, options: dict[str, Any], targets: list[str], where: str):
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
        from peft.utils import PeftType

        cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[base]]
        try:
            return cls(**options, **({"target_modules": targets} if targets else {}))
        except (TypeError, ValueError) as exc:
            raise BenchError(f"{where}: PEFT {base} config rejected: {exc}") from None


class PeftPassthrough(Adapter):
    name = "peft"
    config_cls = PeftPassthroughConfig
    help = "any PEFT method: {method: peft, type: VERA|DORA|PISSA|OSF|..., <PEFT config keys>}"
    leading_options = ("type",)

    def parse(self, data, where):
        own = OWN_ADAPTER.get(str(data.get("type", "LORA")).upper())
        if own is not None:
            from . import ADAPTERS

            return ADAPTERS.get(own).parse(data, where)
        return self.passthrough(data, where)

    def passthrough(self, data, where):
        """Every key besides the fixed ones goes to PEFT's config (`options`)."""
        fixed = {k: data[k] for k in ("type", "rank_step") if k in data}
        options = {k: v for k, v in data.items() if k not in fixed}
        return from_dict(self.config_cls, {**fixed, "options": options}, where)

    def options(self, cfg):
        extra = {"rank_step": cfg.rank_step} if cfg.rank_step is not None else {}
        return {"type": cfg.type, **extra, **cfg.options}

    def check(self, model, targets, cfg, where):
        # PEFT itself only checks a rank when it builds the layers (allocating them first)
        base, options = cfg.resolve(where)
        check_rank(model, targets, options.get("r", getattr(cfg.build(base, options, [], where), "r", None)),
                   where, "r")

    def attach(self, model, targets, cfg, seed, where):
        names = find_targets(model, targets, where)
        self.inject(model, names, cfg, cfg.resolve(where)[1], seed, where)
        return names

    def inject(self, model, names, cfg, options, seed, where) -> None:
        """PEFT's layers of `cfg`'s type, built with `options`, into the modules `names`."""
        peft_config = cfg.build(cfg.resolve(where)[0], options, names, where)
        if uses_conv1d(model, names) and hasattr(peft_config, "fan_in_fan_out"):
            peft_config.fan_in_fan_out = True  # GPT-2 Conv1D stores weights (in, out)
        if hasattr(peft_config, "projection_prng_key") and "projection_prng_key" not in options:
            peft_config.projection_prng_key = seed  # VeRA-style fixed projections follow the run seed
        peft_inject(model, peft_config, names, cfg.prefix())

    def state_dict(self, model, modules, cfg):
        sd = model.state_dict()
        stem = cfg.prefix().split("_")[0] + "_"  # VeRA keeps fixed vera_A/vera_B beside vera_lambda_*
        return {k: v for k, v in sd.items() if stem in k}
