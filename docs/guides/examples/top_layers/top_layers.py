"""A method from outside curlora-bench: fine-tune only the last `layers` transformer blocks, the rest
frozen (Lee, Tang and Lin 2019, "What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning")."""

from dataclasses import dataclass, field

from curlora_bench.adapters import Adapter, AdapterConfig
from curlora_bench.core.errors import BenchError


@dataclass
class TopLayersConfig(AdapterConfig):
    layers: int = field(default=1, metadata={"help": "how many of the last transformer blocks train"})

    def default_label(self) -> str:
        return f"top-layers-{self.layers}"

    def validate(self, where: str) -> None:
        if self.layers < 1:
            raise BenchError(f"{where}.layers: at least 1, got {self.layers}")


def blocks(model):  # the transformer blocks: the model's longest ModuleList
    from torch import nn
    return max((m for m in model.modules() if isinstance(m, nn.ModuleList)), key=len, default=[])


class TopLayers(Adapter):
    name = "top-layers"
    config_cls = TopLayersConfig
    help = "fine-tune the last `layers` transformer blocks, everything else frozen"

    def check(self, model, targets, cfg, where):
        if cfg.layers > len(blocks(model)):
            raise BenchError(f"{where}.layers: {cfg.layers} is more than the model's {len(blocks(model))} blocks")

    def attach(self, model, targets, cfg, seed, where):
        from torch import nn
        from transformers.pytorch_utils import Conv1D

        self.check(model, targets, cfg, where)
        model.requires_grad_(False)
        top = list(blocks(model))[-cfg.layers:]
        for block in top:
            block.requires_grad_(True)
        inside = {id(m) for b in top for m in b.modules() if isinstance(m, (nn.Linear, Conv1D))}
        return [n for n, m in model.named_modules() if id(m) in inside]  # the matrices that train

    def state_dict(self, model, modules, cfg):
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
