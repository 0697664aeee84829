"""Reference points without an adapter: `head-only` (body frozen) and `full` (targets trained)."""

from __future__ import annotations

from .base import Adapter, AdapterConfig, find_targets, freeze


class HeadOnly(Adapter):
    name = "head-only"
    config_cls = AdapterConfig
    help = "no adapter: only the task heads train (the floor of forgetting; nothing to train on a prompted task)"
    trains_only_heads = True

    def attach(self, model, targets, cfg, seed, where):
        freeze(model)
        return []


class Full(Adapter):
    name = "full"
    config_cls = AdapterConfig
    help = "full fine-tuning of the target matrices (weights and biases of Q/K/V)"
    prefixes = ()

    def attach(self, model, targets, cfg, seed, where):
        names = find_targets(model, targets, where)
        freeze(model)
        for name in names:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(True)
        return names

    def state_dict(self, model, modules, cfg):
        sd = model.state_dict()
        return {k: v for k, v in sd.items() if any(k.startswith(n + ".") for n in modules)}
