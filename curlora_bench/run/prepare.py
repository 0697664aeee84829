"""What every run of an experiment reads and nobody changes: tokenised tasks, the corpus, and
the initial perplexity. Built once per process; a run in another process builds its own."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..adapters import ADAPTERS
from ..config.experiment import ExperimentConfig, corpus_config
from ..core.env import configure_threads, resolve_device
from ..core.errors import BenchError
from ..core.protocol import Protocol
from ..sources.models import auto_targets, load_model
from ..sources.tasks.loaders import load_corpus_text, load_splits
from ..strategies.base import strategies
from .data import Batching, PreparedTask, subsample
from .evaluate import PerplexityResult, perplexity
from .events import RunEvents
from .kinds import KINDS


@dataclass
class Prepared:
    """The read-only inputs of an experiment's runs."""

    cfg: ExperimentConfig
    protocol: Protocol
    batching: Batching
    tasks: list[PreparedTask]
    corpus_tokens: list[int] | None
    bos_id: int | None
    # the model loaded for setup, handed to the first run that asks (it is adapted in place)
    _model: nn.Module | None = field(default=None, repr=False)
    _base_ppl: PerplexityResult | None = field(default=None, repr=False)
    _measured: bool = False

    @property
    def device(self) -> torch.device:
        return self.batching.device

    def take_model(self) -> nn.Module:
        """A pristine fp32 model: the one loaded for setup the first time, a fresh load after."""
        model, self._model = self._model, None
        return model if model is not None else load_model(self.cfg.model, self.cfg.execution.cache_dir).model

    def initial_perplexity(self, events: RunEvents) -> PerplexityResult | None:
        """The base model's perplexity, measured once. Every adapter is an exact identity at init
        (tested), so it is every run's perplexity before the first stage."""
        if not self._measured and self.corpus_tokens is not None:
            model = self._model if self._model is not None else load_model(self.cfg.model, self.cfg.execution.cache_dir).model
            self._base_ppl = measure_perplexity(self, model.to(self.device))
            events.message(f"  initial perplexity {self._base_ppl.perplexity:.3f} ({self._base_ppl.tokens} tokens)")
        self._measured = True
        return self._base_ppl


class Reordered:
    """A `Prepared` whose tasks come in another order; everything else is the original's
    (its model, its measured perplexity), so the runs of one process still share them."""

    def __init__(self, base: Prepared, tasks: list[PreparedTask]) -> None:
        self._base = base
        self.tasks = tasks

    def __getattr__(self, name: str):
        return getattr(self._base, name)


def in_order(prepared: Prepared, names: list[str] | None) -> Prepared:
    """`prepared` with its tasks in the order `names` (None: the config's)."""
    if names is None or names == [t.name for t in prepared.tasks]:
        return prepared
    by_name = {t.name: t for t in prepared.tasks}
    return Reordered(prepared, [by_name[n] for n in names])  # type: ignore[return-value]


def target_modules(cfg: ExperimentConfig, model: nn.Module) -> list[str]:
    return auto_targets(model) if cfg.target_modules == "auto" else cfg.target_modules


def prepare(cfg: ExperimentConfig, events: RunEvents, threads: int | None = None) -> Prepared:
    """Load and check everything a run needs (data, model, every method against the model)."""
    device = resolve_device(cfg.device)
    configure_threads(threads)
    protocol = Protocol.of(cfg.protocol)
    events.message(f"[bold]{cfg.name}[/]: model {cfg.model} on {device}, protocol {protocol.name}")
    lm = load_model(cfg.model, cfg.execution.cache_dir, protocol.padding_side)
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    check_lengths(cfg, lm, protocol)
    tasks = prepare_tasks(cfg, lm, protocol)
    targets = target_modules(cfg, lm.model)
    for i, method in enumerate(cfg.methods):  # every method must fit before any run starts
        ADAPTERS.get(method.method).check(lm.model, targets, method, cfg.origin(i))
        if method.strategy:
            strategies()[method.strategy["name"]].check_tasks(method.strategy, tasks, f"{cfg.origin(i)}.strategy")
    for t in tasks:
        events.message(f"  task {t.name}: {len(t.train)} train / {len(t.eval)} eval, {t.num_classes} classes, "
                       f"majority baseline {t.majority:.3f}")
    corpus_tokens = None
    if cfg.perplexity:
        corpus = protocol.overridden(corpus_config(cfg.perplexity))
        text = load_corpus_text(corpus, cfg.execution.cache_dir, "perplexity")
        corpus_tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        corpus_tokens = corpus_tokens[: ppl_settings(cfg, protocol)["max_tokens"]]
        check_corpus(cfg, protocol, corpus_tokens, bos_id)
    return Prepared(cfg, protocol, Batching(device, lm.tokenizer.pad_token_id, lm.tokenizer.padding_side), tasks, corpus_tokens, bos_id,
                    _model=lm.model)


def prepare_tasks(cfg: ExperimentConfig, lm, protocol: Protocol) -> list[PreparedTask]:
    """Every task's splits read, subsetted (the same rows for every method and seed) and tokenised
    by its task kind."""
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    out = []
    for i, task in enumerate(cfg.tasks):
        task = protocol.overridden(task)
        where = f"tasks[{i}]"
        splits = load_splits(task, cfg.execution.cache_dir, where)
        seed = None if protocol.first_rows else cfg.data_seed
        train = subsample(splits["train"], cfg.train.limit, seed)
        ev = subsample(splits["eval"], cfg.eval.limit, seed)
        out.append(KINDS.get(task.kind).prepare(task, train, ev, lm.tokenizer, cfg.train.max_length, bos_id, where))
    return out


# a perplexity over fewer scored tokens than this is noise, not a measurement
MIN_PPL_TOKENS = 16


def max_positions(model: nn.Module) -> int | None:
    """The longest input the model's position table takes (None: no fixed limit known)."""
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_lengths(cfg: ExperimentConfig, lm, protocol: Protocol) -> None:
    """Example and window lengths the model can take, before anything is tokenised or written."""
    limit = max_positions(lm.model)
    bos = 1 if lm.add_bos else 0
    longest_text = max((len(t.text) for t in cfg.tasks), default=1)
    need = bos + 2 * longest_text - 1  # a token of each text column (and EOS between a pair)
    if cfg.train.max_length < need:
        raise BenchError(f"train.max_length: {cfg.train.max_length} leaves no room for the text "
                         f"(needs >= {need} with this model and {longest_text} text column(s))")
    if limit is not None and cfg.train.max_length > limit:
        raise BenchError(f"train.max_length: {cfg.train.max_length} is longer than the {limit} positions of "
                         f"model {cfg.model}")
    if cfg.perplexity:
        window = ppl_settings(cfg, protocol)["window"]
        key = "train.max_length (the paper protocol's perplexity window)" if protocol.single_window \
            else "perplexity.window"
        if window <= bos:
            raise BenchError(f"{key}: {window} leaves no corpus token in a window (BOS takes one)")
        if limit is not None and window > limit:
            raise BenchError(f"{key}: {window} is longer than the {limit} positions of model {cfg.model}")


def check_corpus(cfg: ExperimentConfig, protocol: Protocol, tokens: list[int], bos_id: int | None) -> None:
    from .evaluate import sliding_windows

    s = ppl_settings(cfg, protocol)
    scored = sum(len(w.ids) - w.first_target for w in sliding_windows(tokens, s["window"], s["stride"], bos_id))
    if scored < MIN_PPL_TOKENS:
        raise BenchError(f"perplexity: the corpus leaves {scored} token(s) to score ({len(tokens)} tokens); "
                         f"at least {MIN_PPL_TOKENS} are needed for a perplexity")


def ppl_settings(cfg: ExperimentConfig, protocol: Protocol) -> dict:
    p = cfg.perplexity
    return protocol.perplexity_settings(p.window, p.stride, p.max_tokens, p.batch_size, cfg.train.max_length)


def measure_perplexity(prepared: Prepared, model: nn.Module) -> PerplexityResult:
    cfg = prepared.cfg
    s = ppl_settings(cfg, prepared.protocol)
    return perplexity(
        model, prepared.corpus_tokens, s["window"], s["stride"], prepared.bos_id, s["batch_size"], prepared.device,
        protocol={"corpus": cfg.perplexity.corpus or cfg.perplexity.file, "max_tokens": s["max_tokens"],
                  "protocol_name": prepared.protocol.name},
    )
