"""The two measurement protocols, every choice that differs between them in one place.

`standard` is the corrected protocol and the default; `paper` reproduces the reference code's
choices (CURLORA.md, "Known weaknesses"), for reproduction only. What `paper` changes:

| choice | standard | paper |
|---|---|---|
| training logits read at | the last real token | position -1 of the right-padded batch (a pad token) |
| evaluation | batches of `eval.batch_size`, length-sorted | one example at a time |
| scheduler length | optimizer steps | examples (the reference's bug: warm-up never ends on MRPC) |
| train / eval subsets | a seeded shuffle (`data_seed`) | the first N rows |
| task and corpus definitions | as written | with their `paper:` overrides (the reference's splits and text) |
| perplexity | strided windows over the corpus | one window over the first `train.max_length` tokens |
| padding side | right | the tokenizer's own (left for Llama/Mistral tokenizers) |
| LoRA's A init (`init: null`) | PEFT's | the reference code's (sqrt(in/r) times larger) |
| the body's dropout (`train.dropout: null`) | off | the model's own (`model.train()`) |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import BenchError


@dataclass(frozen=True)
class Protocol:
    """How measurements are taken (see the module's table)."""

    name: str
    train_pooling: str  # "last": the last real token; "final": position -1 of the padded batch
    eval_batch_size: int | None  # None: the config's; 1: one example at a time
    steps_in_examples: bool  # scheduler length counted in examples (the reference's bug)
    first_rows: bool  # subsets: the first N rows (paper) or a seeded shuffle (standard)
    task_overrides: bool  # apply each task's and corpus's `paper:` overrides
    single_window: bool  # perplexity: one window over the first max_length tokens
    padding_side: str | None  # None: the tokenizer's own side (the reference's AutoTokenizer)
    lora_init: str  # LoRA's A when `init` is unset: peft | reference
    dropout: str  # the body's dropout when `train.dropout` is unset: off | model

    @classmethod
    def of(cls, name: str) -> Protocol:
        if name not in PROTOCOLS:
            raise BenchError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {name!r}")
        return PROTOCOLS[name]

    def overridden(self, definition: Any) -> Any:
        """A task or corpus definition as this protocol reads it (its `paper:` overrides applied)."""
        if self.task_overrides and getattr(definition, "paper", None):
            return dataclasses.replace(definition, **definition.paper)
        return definition

    def perplexity_settings(self, window: int, stride: int, max_tokens: int | None, batch_size: int,
                            max_length: int) -> dict[str, Any]:
        """Window, stride, corpus length and batch size of the perplexity measurement."""
        if self.single_window:  # the reference: one window over the first max_length tokens
            return {"window": max_length, "stride": max_length, "max_tokens": max_length, "batch_size": 1}
        return {"window": window, "stride": stride, "max_tokens": max_tokens, "batch_size": batch_size}


PROTOCOLS = {
    "standard": Protocol("standard", "last", None, steps_in_examples=False, first_rows=False, task_overrides=False,
                         single_window=False, padding_side="right", lora_init="peft", dropout="off"),
    "paper": Protocol("paper", "final", 1, steps_in_examples=True, first_rows=True, task_overrides=True,
                      single_window=True, padding_side=None, lora_init="reference", dropout="model"),
}
