"""What every run of an experiment reads and nobody changes: tokenised tasks, the corpus, and
the initial perplexity. Built once per process; a run in another process builds its own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from ..adapters import ADAPTERS
from ..config.experiment import ExperimentConfig, corpus_config
from ..core.env import configure_threads, resolve_device
from ..core.errors import BenchError
from ..sources.models import auto_targets, load_model
from ..sources.tasks.loaders import load_corpus_text, load_splits
from ..store.schema import TaskData
from .data import Batching, PreparedTask, encode, subsample
from .evaluate import PerplexityResult, perplexity
from .events import RunEvents
from .spec import Protocol


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
        return model if model is not None else load_model(self.cfg.model, self.cfg.cache_dir).model

    def initial_perplexity(self, events: RunEvents) -> PerplexityResult | None:
        """The base model's perplexity, measured once. Every adapter is an exact identity at init
        (tested), so it is every run's perplexity before the first stage."""
        if not self._measured and self.corpus_tokens is not None:
            model = self._model if self._model is not None else load_model(self.cfg.model, self.cfg.cache_dir).model
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
    lm = load_model(cfg.model, cfg.cache_dir, protocol.padding_side)
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    check_lengths(cfg, lm, protocol)
    tasks = prepare_tasks(cfg, lm, protocol)
    targets = target_modules(cfg, lm.model)
    for i, method in enumerate(cfg.methods):  # every method must fit before any run starts
        ADAPTERS.get(method.method).check(lm.model, targets, method, f"methods[{i}]")
        check_strategy(method.strategy, tasks, f"methods[{i}].strategy")
    for t in tasks:
        events.message(f"  task {t.name}: {len(t.train)} train / {len(t.eval)} eval, {t.num_classes} classes, "
                       f"majority baseline {t.majority:.3f}")
    corpus_tokens = None
    if cfg.perplexity:
        corpus = corpus_config(cfg.perplexity)
        if protocol.task_overrides and corpus.paper:
            corpus = dataclasses.replace(corpus, **corpus.paper)
        text = load_corpus_text(corpus, cfg.cache_dir, "perplexity")
        corpus_tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        corpus_tokens = corpus_tokens[: ppl_settings(cfg, protocol)["max_tokens"]]
        check_corpus(cfg, protocol, corpus_tokens, bos_id)
    return Prepared(cfg, protocol, Batching(device, lm.tokenizer.pad_token_id, lm.tokenizer.padding_side), tasks, corpus_tokens, bos_id,
                    _model=lm.model)


def check_strategy(strategy: dict | None, tasks: list[PreparedTask], where: str) -> None:
    """Replay must be able to keep `per_task` examples of every task it will replay."""
    if strategy and strategy["name"] == "replay":
        for t in tasks[:-1]:  # the last task is never replayed
            if strategy["per_task"] > len(t.train):
                raise BenchError(f"{where}.per_task: {strategy['per_task']} is larger than task {t.name!r} "
                                 f"({len(t.train)} training examples)")


def prepare_tasks(cfg: ExperimentConfig, lm, protocol: Protocol) -> list[PreparedTask]:
    bos_id = lm.tokenizer.bos_token_id if lm.add_bos else None
    out = []
    for i, task in enumerate(cfg.tasks):
        if protocol.task_overrides and task.paper:
            task = dataclasses.replace(task, **task.paper)
        where = f"tasks[{i}]"
        splits = load_splits(task, cfg.cache_dir, where)
        seed = None if protocol.first_rows else cfg.data_seed
        train_ds = subsample(splits["train"], cfg.train.limit, seed)
        eval_ds = subsample(splits["eval"], cfg.eval.limit, seed)
        num_classes = task.num_classes or max(splits["train"]["label"]) + 1
        distinct = sorted(set(train_ds["label"]))
        if num_classes < 2 or len(distinct) < 2:
            raise BenchError(f"{where}: the train labels are all {distinct[0]}: a classifier needs at least 2 "
                             "classes in its training data (check the label column and label_map)")
        bad = [y for y in eval_ds["label"] if y >= num_classes]
        if bad:
            raise BenchError(f"{where}: eval label {bad[0]} but the train labels give {num_classes} classes; set num_classes")
        train = encode(lm.tokenizer, train_ds, task.text, cfg.train.max_length, bos_id)
        ev = encode(lm.tokenizer, eval_ds, task.text, cfg.train.max_length, bos_id)
        for split_name, split in (("train", train), ("eval", ev)):
            empty = next((k for k, ids in enumerate(split.ids) if len(ids) == (1 if bos_id is not None else 0)), None)
            if empty is not None:
                raise BenchError(f"{where}.{split_name}: example {empty + 1} of the split (after subsetting) has "
                                 f"no text: its {' and '.join(task.text)} tokenise(s) to nothing")
        info = TaskData(version=task.version, source=task.path or task.builder or task.train,
                        train_records=len(train), eval_records=len(ev), train_fingerprint=train.fingerprint(),
                        eval_fingerprint=ev.fingerprint())
        out.append(PreparedTask(task.name, num_classes, train, ev, info))
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
    if protocol.single_window:  # the reference: one window over the first max_length tokens
        n = cfg.train.max_length
        return {"window": n, "stride": n, "max_tokens": n, "batch_size": 1}
    return {"window": p.window, "stride": p.stride, "max_tokens": p.max_tokens, "batch_size": p.batch_size}


def measure_perplexity(prepared: Prepared, model: nn.Module) -> PerplexityResult:
    cfg = prepared.cfg
    s = ppl_settings(cfg, prepared.protocol)
    return perplexity(
        model, prepared.corpus_tokens, s["window"], s["stride"], prepared.bos_id, s["batch_size"], prepared.device,
        protocol={"corpus": cfg.perplexity.corpus or cfg.perplexity.file, "max_tokens": s["max_tokens"],
                  "protocol_name": prepared.protocol.name},
    )
