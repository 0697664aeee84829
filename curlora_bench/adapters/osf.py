"""PEFT's OSF (orthogonal subspace fine-tuning) under its continual protocol.

Written as PEFT's other types are, `{method: peft, type: OSF, effective_rank: 8}` (or
`{method: osf, ...}`, stored as the former, so both give the same run key). PEFT's OSF docs,
"Sequential Task Learning": between tasks the SVD is recomputed on the updated weights and the
preserved subspace grows, `effective_rank + (t - 1) * rank_step` while the t-th task trains.
PEFT's docs call `model.unload()`; this PEFT's OSF layer keeps the update as a separate delta,
so it is merged first (unload alone would drop the task just learned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..core.errors import BenchError
from .base import find_targets, set_module
from .peft_any import PeftPassthrough, PeftPassthroughConfig


@dataclass
class OSFConfig(PeftPassthroughConfig):
    """`{method: peft, type: OSF, effective_rank: 8, rank_step: 8}`: PEFT's OsfConfig keys inline."""

    adapter: ClassVar[str] = "osf"  # the adapter that runs it (its `method` stays `peft`)
    type: str = field(default="OSF", metadata={"help": "PEFT type: OSF"})

    def validate(self, where: str) -> None:
        base, options = self.resolve(where)
        self.build(base, options, [], where)
        rank = options.get("effective_rank")
        if rank is None:
            raise BenchError(f"{where}.effective_rank: set it for OSF (the preserved rank of the first task; "
                             "OSF's continual protocol grows it by rank_step per task)")
        if self.rank_step is None:
            self.rank_step = rank  # explicit, so run keys show the protocol
        if self.rank_step < 0 or isinstance(self.rank_step, float) != isinstance(rank, float):
            raise BenchError(f"{where}.rank_step: {self.rank_step!r} must be >= 0 and, like effective_rank "
                             f"({rank!r}), an integer rank or a fraction")

    def stage_rank(self, stage: int) -> int | float:
        """OSF's preserved rank while training stage `stage` (1-based)."""
        return self.options["effective_rank"] + (stage - 1) * self.rank_step


class OSF(PeftPassthrough):
    name = "osf"
    config_cls = OSFConfig
    help = "PEFT's OSF with its continual protocol: {method: peft, type: OSF, effective_rank: 8, rank_step: 8}"
    written_as = "peft"  # an entry's `method: osf` is stored as `method: peft` (one run key for both)

    def parse(self, data, where):
        if str(data.get("type", "OSF")).upper() != "OSF":
            raise BenchError(f"{where}.type: the osf method is PEFT type OSF, got {data['type']!r}")
        return self.passthrough({**data, "type": data.get("type", "OSF")}, where)

    def attach(self, model, targets, cfg, seed, where, stage: int = 1):
        names = find_targets(model, targets, where)
        self.inject(model, names, cfg, {**cfg.resolve(where)[1], "effective_rank": cfg.stage_rank(stage)}, seed, where)
        return names

    def state_dict(self, model, modules, cfg):
        out = super().state_dict(model, modules, cfg)
        sd = model.state_dict()  # earlier tasks are merged into the base weights between stages
        out.update({f"{m}.base_layer.weight": sd[f"{m}.base_layer.weight"] for m in modules})
        return out

    def before_stage(self, ctx):
        position = ctx.stage.position  # the t-th task OSF learns
        if position > 1:
            self._rewrap(ctx.model, ctx.modules, ctx.method, position, ctx.where, merge=True)

    def structure_for(self, model, modules, cfg, position, where, tensors):
        import torch

        if position > 1:
            # the SVD of the stage's re-wrap was taken of the merged weights the checkpoint holds
            with torch.no_grad():
                for name in modules:
                    key = f"{name}.base_layer.weight"
                    if key in tensors:
                        model.get_submodule(name).base_layer.weight.copy_(tensors[key])
            self._rewrap(model, modules, cfg, position, where, merge=False)

    def _rewrap(self, model, modules, cfg, stage, where, merge: bool) -> None:
        device = next(model.parameters()).device
        for name in modules:
            layer = model.get_submodule(name)
            if merge:
                layer.merge()
            set_module(model, name, layer.get_base_layer())
        if hasattr(model, "peft_config"):
            del model.peft_config  # the tuner's record of the adapter just removed
        self.attach(model, modules, cfg, 0, where, stage=stage)
        model.to(device)
