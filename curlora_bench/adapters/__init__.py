"""Adapters: one module per method, each an entry of ADAPTERS (its module imported on first lookup).

A method *entry* of a config (adapter options, label, train overrides, strategy, regime) is
parsed by `config.methods`.
"""

from __future__ import annotations

from typing import Any

from ..core.registry import Registry
from .base import (
    PLUGIN_GROUP,
    Adapter,
    AdapterConfig,
    find_targets,
    freeze,
    make_adapter,
    uses_conv1d,
)

# the built-in methods: name -> "module:Adapter subclass" (installed packages add theirs under PLUGIN_GROUP)
ADAPTERS: Registry[Adapter] = Registry("method", base=Adapter, make=make_adapter, group=PLUGIN_GROUP, entries={
    "curlora": "curlora_bench.adapters.curlora:CURLoRA",
    "full": "curlora_bench.adapters.simple:Full",
    "head-only": "curlora_bench.adapters.simple:HeadOnly",
    "i-lora": "curlora_bench.adapters.ilora:ILoRA",
    "inflora": "curlora_bench.adapters.inflora:InfLoRA",
    "lora": "curlora_bench.adapters.lora:LoRA",
    "o-lora": "curlora_bench.adapters.olora:OLoRA",
    "osf": "curlora_bench.adapters.osf:OSF",
    "peft": "curlora_bench.adapters.peft_any:PeftPassthrough",
    # PEFT's methods by name (adapters/peft_named.py), each one PEFT config
    "adalora": "curlora_bench.adapters.peft_named:AdaLoRA",
    "corda": "curlora_bench.adapters.peft_named:CorDA",
    "dora": "curlora_bench.adapters.peft_named:DoRA",
    "eva": "curlora_bench.adapters.peft_named:EVA",
    "lora-ga": "curlora_bench.adapters.peft_named:LoRAGA",
    "mica": "curlora_bench.adapters.peft_named:MiCA",
    "oft": "curlora_bench.adapters.peft_named:OFT",
    "olora": "curlora_bench.adapters.peft_named:OLoRA",
    "pissa": "curlora_bench.adapters.peft_named:PiSSA",
    "rslora": "curlora_bench.adapters.peft_named:RsLoRA",
    "vera": "curlora_bench.adapters.peft_named:VeRA",
})


def adapter_of(entry: Any) -> Adapter:
    """The adapter that runs a parsed method entry (`config.methods.MethodEntry`): its options
    class's own (`{method: peft, type: OSF}` is run by `osf`), else its `method`'s."""
    return ADAPTERS.get(getattr(entry.options, "adapter", None) or entry.method)


__all__ = ["ADAPTERS", "Adapter", "AdapterConfig", "adapter_of", "find_targets", "freeze", "uses_conv1d"]
