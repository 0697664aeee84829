"""The perplexity corpora of an experiment: read, tokenised and checked once, measured with the
model's own LM head before the first stage (once per experiment) and after every stage.

The first corpus of `perplexity:` is the primary one (the summary's `perplexity`, the
`perplexity_drift` metric); any further ones are measured alike and kept per corpus
(`RunSummary.perplexities`), each a row of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config.experiment import ExperimentConfig, PerplexityConfig, corpus_config
from ..core.errors import BenchError
from ..core.protocol import Protocol
from ..sources.tasks.loaders import load_corpus_text
from .evaluate import PerplexityResult, perplexity, sliding_windows

# a perplexity over fewer scored tokens than this is noise, not a measurement
MIN_PPL_TOKENS = 16


@dataclass
class Corpus:
    name: str  # what the records call it: the built-in corpus's name, or the file
    tokens: list[int]
    settings: dict[str, Any]  # window, stride, max_tokens, batch_size (as the protocol reads them)
    where: str  # its place in the config, for error messages


def ppl_settings(p: PerplexityConfig, max_length: int, protocol: Protocol) -> dict:
    return protocol.perplexity_settings(p.window, p.stride, p.max_tokens, p.batch_size, max_length)


def places(cfg: ExperimentConfig) -> list[tuple[str, PerplexityConfig]]:
    """(where, config) of every corpus: `perplexity` or `perplexity[i]`."""
    if cfg.perplexity is None:
        return []
    if isinstance(cfg.perplexity, list):
        return [(f"perplexity[{i}]", p) for i, p in enumerate(cfg.perplexity)]
    return [("perplexity", cfg.perplexity)]


def check_windows(cfg: ExperimentConfig, protocol: Protocol, bos: int, limit: int | None) -> None:
    """Window lengths the model can take, before anything is tokenised or written."""
    for where, p in places(cfg):
        window = ppl_settings(p, cfg.train.max_length, protocol)["window"]
        key = "train.max_length (the paper protocol's perplexity window)" if protocol.single_window \
            else f"{where}.window"
        if window <= bos:
            raise BenchError(f"{key}: {window} leaves no corpus token in a window (BOS takes one)")
        if limit is not None and window > limit:
            raise BenchError(f"{key}: {window} is longer than the {limit} positions of model {cfg.model}")


def prepare_corpora(cfg: ExperimentConfig, tokenizer, protocol: Protocol, bos_id: int | None) -> list[Corpus]:
    out = []
    for where, p in places(cfg):
        corpus = protocol.overridden(corpus_config(p, where))
        text = load_corpus_text(corpus, cfg.execution.cache_dir, where)
        settings = ppl_settings(p, cfg.train.max_length, protocol)
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"][: settings["max_tokens"]]
        scored = sum(len(w.ids) - w.first_target
                     for w in sliding_windows(tokens, settings["window"], settings["stride"], bos_id))
        if scored < MIN_PPL_TOKENS:
            raise BenchError(f"{where}: the corpus leaves {scored} token(s) to score ({len(tokens)} tokens); "
                             f"at least {MIN_PPL_TOKENS} are needed for a perplexity")
        out.append(Corpus(p.corpus or p.file, tokens, settings, where))
    return out


def measure(corpus: Corpus, model: nn.Module, bos_id: int | None, device, protocol: Protocol) -> PerplexityResult:
    s = corpus.settings
    return perplexity(model, corpus.tokens, s["window"], s["stride"], bos_id, s["batch_size"], device,
                      protocol={"corpus": corpus.name, "max_tokens": s["max_tokens"], "protocol_name": protocol.name})
