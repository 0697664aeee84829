"""What every run of an experiment reads and nobody changes: tokenised tasks, the corpus, and
the initial perplexity. Built once per process; a run in another process builds its own."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..adapters import adapter_of
from ..config.experiment import ExperimentConfig
from ..core.env import check_precision, configure_threads, resolve_device
from ..core.errors import BenchError
from ..core.protocol import Protocol
from ..sources.heads import TaskHeads
from ..sources.models import auto_targets, load_model
from ..sources.tasks.loaders import load_splits
from ..strategies.base import strategies
from .corpora import Corpus, check_windows, measure, prepare_corpora
from .data import Batching, PreparedTask, carve_validation, subsample
from .evaluate import PerplexityResult
from .events import RunEvents
from .general import GeneralScore, check_general, evaluate_general
from .kinds import Score, kind_of
from .train import autocast

# The base model's perplexities measured in this process, by what they depend on (`base_key`),
# or None: measured once per `Prepared`. A Ray worker turns it on (`experiment/executors.py`): it
# prepares every run it executes anew, and the base model's perplexity on every corpus (about 50 s
# of one core at the default 2 x 8,192 tokens) is the same number for all of them.
BASE_PERPLEXITIES: dict[tuple, list[PerplexityResult]] | None = None


@dataclass
class Prepared:
    """The read-only inputs of an experiment's runs."""

    cfg: ExperimentConfig
    protocol: Protocol
    batching: Batching
    tasks: list[PreparedTask]
    corpora: list[Corpus]  # the first is the primary one
    bos_id: int | None
    # the model loaded for setup, handed to the first run that asks (it is adapted in place)
    _model: nn.Module | None = field(default=None, repr=False)
    _base_ppl: list[PerplexityResult] | None = field(default=None, repr=False)
    _lm: Any = field(default=None, repr=False)  # the tokenizer (no model), to tokenise per-run subsets
    _by_seed: dict = field(default_factory=dict, repr=False)
    _zero_shot: dict[str, list[Score]] | None = field(default=None, repr=False)
    general_specs: list = field(default_factory=list)  # `general:` tasks as the harness takes them (run.general)
    _general: list[GeneralScore] | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.batching.device

    def inference(self):
        """Scoring, perplexity and generation in the experiment's precision: bf16 autocast under
        `train.precision: bf16` (set per experiment: the base model's numbers are measured once)."""
        return autocast(self.device, self.cfg.train.precision)

    def take_model(self) -> nn.Module:
        """A pristine fp32 model: the one loaded for setup the first time, a fresh load after."""
        model, self._model = self._model, None
        return model if model is not None else load_model(self.cfg.model, self.cfg.execution.cache_dir).model

    def for_seed(self, seed: int) -> Prepared:
        """These inputs with the train subsets of run seed `seed` (`data_seed: per-run`; else themselves)."""
        if self.cfg.data_seed != "per-run":
            return self
        if seed not in self._by_seed:
            self._by_seed[seed] = PerSeed(self, prepare_tasks(self.cfg, self._lm, self.protocol, train_seed=seed))
        return self._by_seed[seed]

    @property
    def eval_batch_size(self) -> int:
        """Scoring's batch size: the protocol's (`paper`: one example at a time), else the config's."""
        return self.protocol.eval_batch_size or self.cfg.eval.batch_size

    @property
    def corpus_tokens(self) -> list[int] | None:
        """The primary corpus's tokens (None: no perplexity)."""
        return self.corpora[0].tokens if self.corpora else None

    def initial_perplexities(self, events: RunEvents) -> list[PerplexityResult]:
        """The base model's perplexity on every corpus, measured once. Every adapter is an exact
        identity at init (tested), so it is every run's perplexity before the first stage."""
        key = self.base_key() if BASE_PERPLEXITIES is not None else None
        if self._base_ppl is None and BASE_PERPLEXITIES is not None and key in BASE_PERPLEXITIES:
            self._base_ppl = BASE_PERPLEXITIES[key]
        if self._base_ppl is None:
            self._base_ppl = []
            if self.corpora:
                model = self._model if self._model is not None else \
                    load_model(self.cfg.model, self.cfg.execution.cache_dir).model
                for corpus in self.corpora:
                    res = self.measure(corpus, model.to(self.device))
                    self._base_ppl.append(res)
                    events.message(f"  initial perplexity {res.perplexity:.3f} ({res.tokens} tokens"
                                   + (f" of {corpus.name})" if len(self.corpora) > 1 else ")"))
            if BASE_PERPLEXITIES is not None:
                BASE_PERPLEXITIES[key] = self._base_ppl
        return self._base_ppl

    def base_key(self) -> tuple:
        """What the base model's perplexities depend on: the model, where and how it runs, and
        every corpus's tokens and settings."""
        cfg = self.cfg
        corpora = tuple((c.name, hashlib.sha256(json.dumps(c.tokens).encode()).hexdigest(),
                         json.dumps(c.settings, sort_keys=True)) for c in self.corpora)
        return (cfg.model, cfg.execution.cache_dir, cfg.train.precision, str(self.device), torch.get_num_threads(),
                self.protocol.name, self.bos_id, corpora)

    def zero_shot(self, events: RunEvents) -> dict[str, list[Score]]:
        """The base model's scores of every task whose kind measures one (prompted tasks), by task
        name, measured once. Every adapter is an exact identity at init, so they are every run's
        scores before the first stage: the floor its learning is read against."""
        if self._zero_shot is None:
            self._zero_shot = {}
            tasks = [t for t in self.tasks if t.kind.zero_shot]
            if tasks:
                model = self._model if self._model is not None else \
                    load_model(self.cfg.model, self.cfg.execution.cache_dir).model
                for t in tasks:
                    with self.inference():
                        scores = t.kind.score(model.to(self.device), TaskHeads(), t, self.eval_batch_size,
                                                         self.batching)
                    self._zero_shot[t.name] = scores
                    events.message(f"  zero-shot {t.name}: " + ", ".join(f"{s.metric} {s.value:.3f}" for s in scores))
        return self._zero_shot

    def general_base(self, events: RunEvents) -> list[GeneralScore]:
        """The base model's scores of every `general:` harness task, measured once (every adapter is
        an exact identity at init, so they are every run's before its first stage)."""
        if self._general is None:
            self._general = []
            if self.cfg.general is not None:
                model = self._model if self._model is not None else \
                    load_model(self.cfg.model, self.cfg.execution.cache_dir).model
                self._general = self.general_scores(model.to(self.device))
                events.message("  general ability: " + ", ".join(f"{s.task} {s.metric} {s.value:.3f}"
                                                                 for s in self._general))
        return self._general

    def general_scores(self, model: nn.Module) -> list[GeneralScore]:
        """Every `general:` harness task's metrics for `model` as it is now."""
        with self.inference():
            return evaluate_general(model, self._lm.tokenizer, self.cfg.general, self.general_specs)

    def initial_perplexity(self, events: RunEvents) -> PerplexityResult | None:
        """The base model's perplexity on the primary corpus (None: no perplexity)."""
        measured = self.initial_perplexities(events)
        return measured[0] if measured else None

    def measure(self, corpus: Corpus, model: nn.Module) -> PerplexityResult:
        with self.inference():
            return measure(corpus, model, self.bos_id, self.device, self.protocol)


class PerSeed:
    """A `Prepared` whose tasks hold one run seed's train subsets; everything else is the original's."""

    def __init__(self, base: Prepared, tasks: list[PreparedTask]) -> None:
        self._base = base
        self.tasks = tasks

    def __getattr__(self, name: str):
        return getattr(self._base, name)


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
    check_precision(cfg.train.precision, device, cfg.execution.emulated_bf16)
    configure_threads(threads)
    protocol = Protocol.of(cfg.protocol)
    events.message(f"[bold]{cfg.name}[/]: model {cfg.model} on {device}, protocol {protocol.name}")
    general_specs = check_general(cfg.general, cfg.execution.cache_dir)  # before the model loads
    lm = load_model(cfg.model, cfg.execution.cache_dir, protocol.padding_side)
    bos_id = lm.bos_id
    check_lengths(cfg, lm, protocol)
    tasks = prepare_tasks(cfg, lm, protocol)
    targets = target_modules(cfg, lm.model)
    for i, method in enumerate(cfg.methods):  # every method must fit before any run starts
        adapter_of(method).check(lm.model, targets, method.options, cfg.origin(i))
        if method.strategy:
            strategies()[method.strategy["name"]].check_tasks(method.strategy, tasks, f"{cfg.origin(i)}.strategy")
    for t in tasks:
        events.message(f"  task {t.name}: {len(t.train)} train / {len(t.eval)} eval, {t.kind.describe(t)}")
    corpora = prepare_corpora(cfg, lm.tokenizer, protocol, bos_id)
    return Prepared(cfg, protocol, Batching(device, lm.tokenizer.pad_token_id, lm.tokenizer.padding_side), tasks,
                    corpora, bos_id, _model=lm.model, _lm=dataclasses.replace(lm, model=None),
                    general_specs=general_specs)


def prepare_tasks(cfg: ExperimentConfig, lm, protocol: Protocol, train_seed: int | None = None) -> list[PreparedTask]:
    """Every task's splits read, subsetted (the same rows for every method and seed) and tokenised
    by its task kind. With `data_seed: per-run`, `train_seed` (a run's seed) draws the train
    subsets; eval and validation rows are always the shared seed's."""
    bos_id = lm.bos_id
    per_run = cfg.data_seed == "per-run"
    out = []
    for i, task in enumerate(cfg.tasks):
        task = protocol.overridden(task)
        where = f"tasks[{i}]"
        splits = load_splits(task, cfg.execution.cache_dir, where)
        seed = None if protocol.first_rows else cfg.subset_seed
        pool, val = splits["train"], None
        if cfg.eval.validation:
            if "val" in splits:
                val = subsample(splits["val"], cfg.eval.validation, seed)
            else:
                pool, val = carve_validation(pool, cfg.train.limit, cfg.eval.validation, seed, per_run, where)
        train = subsample(pool, cfg.train.limit, train_seed if per_run and train_seed is not None else seed)
        ev = subsample(splits["eval"], cfg.eval.limit, seed)
        out.append(kind_of(task).prepare(task, train, ev, lm.tokenizer, cfg.train.max_length, bos_id, where,
                                                val=val))
    return out


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
    longest_text = max((len(t.text) for t in cfg.tasks if t.prompt is None), default=1)
    need = bos + 2 * longest_text - 1  # a token of each text column (and EOS between a pair)
    if any(t.prompt is not None for t in cfg.tasks):
        need = max(need, bos + 2)  # a prompt token and an answer token
    if cfg.train.max_length < need:
        raise BenchError(f"train.max_length: {cfg.train.max_length} leaves no room for the text "
                         f"(needs >= {need} with this model and {longest_text} text column(s))")
    if limit is not None and cfg.train.max_length > limit:
        raise BenchError(f"train.max_length: {cfg.train.max_length} is longer than the {limit} positions of "
                         f"model {cfg.model}")
    for i, t in enumerate(cfg.tasks):  # generation writes past the prompt: at least one prompt token, then these
        new = protocol.overridden(t).max_new_tokens
        if limit is not None and new is not None and bos + 1 + new > limit:
            raise BenchError(f"tasks[{i}].max_new_tokens: {new:,} new tokens after a prompt of at least one token "
                             f"do not fit the {limit:,} positions of model {cfg.model} (at most {limit - bos - 1:,})")
    check_windows(cfg, protocol, bos, limit)
