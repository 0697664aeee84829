"""What one run holds while it works, as plain data: `open_run` builds it (the model with its
adapter attached, the strategy, the heads, the weights at init) and `resume` restores it from
the run's last checkpoint. The stage phases (`run/recipe.py`) take it and the run's ledger
(`run/ledger.py`) instead of one object that does everything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..adapters import adapter_of
from ..adapters.base import Adapter
from ..config.experiment import ExperimentConfig, TrainConfig
from ..config.methods import regime_of
from ..config.regimes import REGIMES, Regime
from ..core.env import set_seed
from ..core.layout import stage_dir
from ..sources.heads import TaskHeads
from ..sources.models import backbone, enable_checkpointing, hidden_size
from ..store import checkpoint
from ..store.folders import cut_back
from ..store.schema import RunProgress
from ..strategies import make_strategy
from ..strategies.base import Strategy
from . import drift
from .data import PreparedTask
from .evaluate import PerplexityResult
from .events import RunEvents
from .general import GeneralScore
from .kinds import Score
from .observe import PeakMemory
from .prepare import Prepared, in_order, prepare, target_modules
from .spec import RunSpec


@dataclass
class RunInputs:
    """What a run reads and never changes: the prepared data in its seed's subsets and its task
    order, and the base model's numbers, measured once per experiment."""

    prepared: Prepared
    base_ppls: list[PerplexityResult]  # every corpus, the primary one first
    zero_shot: dict[str, list[Score]]  # prompted tasks' base-model scores, by task
    general: list[GeneralScore]  # `general:` harness tasks on the base model


def run_inputs(spec: RunSpec, prepared: Prepared | None, events: RunEvents, threads: int | None) -> RunInputs:
    """`prepared` (or the run's own, prepared with `threads` torch threads) for this run."""
    prepared = (prepared or prepare(spec.experiment, events, threads)).for_seed(spec.seed)
    prepared = in_order(prepared, spec.task_order)
    return RunInputs(prepared, prepared.initial_perplexities(events), prepared.zero_shot(events),
                     prepared.general_base(events))


@dataclass
class RunState:
    """One run in memory: its inputs, the adapted model and what trains beside it, its progress."""

    spec: RunSpec
    inputs: RunInputs
    regime: Regime
    train_cfg: TrainConfig  # the experiment's, with the method entry's overrides
    model: nn.Module
    modules: list[str]  # the adapted modules
    adapter: Adapter
    strategy: Strategy
    heads: TaskHeads
    hidden: int  # the model's hidden size (a head's input)
    trainable: int  # trainable parameters with the adapter attached
    reference: dict[str, torch.Tensor]  # the adapted weights at init, for the drift
    memory: PeakMemory
    progress: RunProgress
    resumed_from: int | None = None  # the stage it resumed after

    @property
    def prepared(self) -> Prepared:
        return self.inputs.prepared

    @property
    def tasks(self) -> list[PreparedTask]:
        return self.inputs.prepared.tasks

    @property
    def cfg(self) -> ExperimentConfig:
        return self.spec.experiment

    @property
    def method(self):
        return self.spec.method

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return self.spec.identity.run_key

    @property
    def folder(self) -> Path:
        return self.spec.folder

    @property
    def plugins(self) -> list:
        """Each hook: the adapter's first, then the strategy's."""
        return [self.adapter, self.strategy]


def attach_method(model: nn.Module, method, targets: list[str], seed: int, where: str) -> tuple[Adapter, list[str]]:
    """The method entry's adapter attached to `model` in place at `targets`; (adapter, adapted modules)."""
    adapter = adapter_of(method)
    return adapter, adapter.attach(model, targets, method.options, seed, where)


def open_run(spec: RunSpec, inputs: RunInputs) -> RunState:
    """A model with its adapter attached, the weights at init (for the drift), the strategy;
    progress empty."""
    cfg, prepared, device = spec.experiment, inputs.prepared, inputs.prepared.device
    set_seed(spec.seed)
    model = prepared.take_model()
    adapter, modules = attach_method(model, spec.method, target_modules(cfg, model), spec.seed, spec.where)
    model.to(device)
    reference = drift.snapshot(model, modules)
    if cfg.execution.gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.execution.compile:
        # in place, so names, state dicts and checkpoints stay those of the plain model
        backbone(model).compile(dynamic=True)
    return RunState(
        spec, inputs, REGIMES.get(regime_of(spec.method)), cfg.train_for(spec.method), model, modules, adapter,
        make_strategy(spec.method.strategy, spec.seed), TaskHeads().to(device), hidden_size(model),
        sum(p.numel() for p in model.parameters() if p.requires_grad), reference, PeakMemory(device),
        RunProgress.empty(len(prepared.tasks)))


def resume(state: RunState, events: RunEvents) -> RunState:
    """The run from its last checkpoint (adapter, heads, strategy, progress, RNG, its files cut back
    to what the checkpoint counted), or as opened when it has none."""
    folder, tasks, device = state.folder, state.tasks, state.prepared.device
    folder.mkdir(parents=True, exist_ok=True)
    stage = checkpoint.latest(folder, state.key)
    if not stage:
        return state
    saved, adapter_sd, heads_sd, rng = checkpoint.load_stage(folder, stage)
    where = str(stage_dir(folder, stage))
    position = state.regime.position(stage, len(tasks))
    state.adapter.structure_for(state.model, state.modules, state.method.options, position, where, adapter_sd)
    checkpoint.load_weights(state.model, adapter_sd,
                            state.adapter.state_dict(state.model, state.modules, state.method.options), where)
    state.heads = TaskHeads.restore([(h.name, h.num_classes) for h in saved.tasks if h.head], state.hidden,
                                    heads_sd, device)
    state.strategy.load_state_dict(checkpoint.load_strategy(folder, stage), [h.name for h in saved.tasks], device)
    cut_back(folder, saved.progress)
    checkpoint.restore_rng(saved.rng, rng)
    events.message(f"  {state.method.display_label} seed {saved.seed}: resuming after stage {stage}/{len(tasks)}")
    state.progress, state.resumed_from = saved.progress, stage
    return state
