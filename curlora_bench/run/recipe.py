"""One run, as named phases: a method and a seed over the whole task sequence.

`run_one(spec)` is the unit an executor schedules: a serialisable `RunSpec` in, a typed
`RunSummary` out, its files in its own folder. `Recipe.execute` reads top to bottom, as
torchtune's recipes do (setup / train / save_checkpoint / cleanup): keep a finished run, or
open the run (model + adapter + strategy) and resume it from its last checkpoint; then, for
every stage of its regime, `run_stage`: before-stage hooks, train, after-stage hooks,
evaluate every task so far, perplexity, weight drift, checkpoint; at the end summarise. What
a task trains and how it is scored is its task kind's (`run/kinds`); what a method or a
strategy does around a stage are their hooks (`core.hooks`). Progress goes to `RunEvents`.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ..adapters import ADAPTERS, uses_conv1d
from ..config.experiment import resolved_dict
from ..config.methods import method_dict, regime_of
from ..config.regimes import REGIMES, Stage
from ..core.env import git_commit, module_seed, package_versions, release_memory, set_seed
from ..core.errors import signals_deferred
from ..core.layout import GENERATIONS, PREDICTIONS, RECORDS, SUMMARY, TRAIN_LOG, stage_dir
from ..core.metrics import (
    MATRIX_METRICS,
    average_accuracy,
    drift_summary,
    matrix_metrics,
    perplexity_drift,
)
from ..core.parse import to_dict
from ..sources.heads import TaskHeads
from ..sources.models import backbone, enable_checkpointing, hidden_size
from ..store import checkpoint
from ..store.folders import RecordWriter, finished_summary, keep_records, write_summary
from ..store.schema import (
    SCHEMA_VERSION,
    Generation,
    HeadInfo,
    PerplexitySummary,
    Prediction,
    Record,
    RunProgress,
    RunSummary,
    StageCheckpoint,
    StageDrift,
    StageStats,
    TrainLogEntry,
    load,
    read_records,
    read_train_log,
)
from ..strategies import make_strategy
from . import drift
from .context import StageContext
from .events import RunEvents, RunStart
from .kinds import KINDS
from .observe import PeakMemory, TrainLog
from .prepare import Prepared, in_order, prepare, target_modules
from .spec import RunSpec
from .train import NonFiniteLoss, TrainStats, schedule_length, steps_of, train_stage


def run_one(spec: RunSpec, prepared: Prepared | None = None, events: RunEvents | None = None,
            threads: int | None = None, fresh: bool = False) -> RunSummary:
    """Run (or resume, or keep) one method and seed; return the summary written to disk.

    `prepared` shares tokenised data between the runs of one process; without it the run
    prepares its own (as in another process), with `threads` torch threads (default: all cores).
    `fresh` starts the run over: its earlier results are set aside as it starts, deleted at its
    first checkpoint and put back if it ends before that.
    """
    return Recipe(spec, events).execute(prepared, threads, fresh)


def head_seed(seed: int, task: str) -> int:
    return module_seed(seed, "head:" + task)


class Recipe:
    """The phases of one run; `execute` calls them in order."""

    def __init__(self, spec: RunSpec, events: RunEvents | None = None) -> None:
        self.spec, self.cfg, self.method = spec, spec.experiment, spec.method
        self.train_cfg = self.cfg.train_for(self.method)
        self.regime = REGIMES.get(regime_of(self.method))
        self.folder, self.key, self.name = spec.folder, spec.identity.run_key, spec.name
        self.events = events or RunEvents()

    # -- the run, top to bottom ----------------------------------------------------------------
    def execute(self, prepared: Prepared | None = None, threads: int | None = None, fresh: bool = False) -> RunSummary:
        if checkpoint.recover(self.folder):
            self.events.message(f"  {self.name}: the results an unfinished replacement had set aside are back")
        try:
            if fresh:  # only now, as this run starts: the runs after it keep theirs until they start
                checkpoint.set_aside(self.folder)
            return self._execute(prepared, threads)
        except BaseException:
            # ended (a signal, an error) before a stage of its own: the results it was to replace go back,
            # all of them before a second Ctrl-C or SIGTERM takes effect
            with signals_deferred():
                restored = checkpoint.recover(self.folder)
            if restored:
                self.events.message(f"  {self.name}: no stage finished; the results it was to replace are restored")
            raise

    def _execute(self, prepared: Prepared | None, threads: int | None) -> RunSummary:
        kept = finished_summary(self.folder, self.key)
        if kept is not None:
            self.events.message(f"  {self.name}: already complete, kept (--fresh reruns it)")
            return kept
        prepared = (prepared or prepare(self.cfg, self.events, threads)).for_seed(self.spec.seed)
        self.prepared = in_order(prepared, self.spec.task_order)
        self.base_ppls = self.prepared.initial_perplexities(self.events)
        self.base_ppl = self.base_ppls[0] if self.base_ppls else None  # the primary corpus's
        self.zero_shot = self.prepared.zero_shot(self.events)  # prompted tasks' base-model scores
        self.general0 = self.prepared.general_base(self.events)  # `general:` harness tasks, base model
        start = time.perf_counter()
        self.open()
        self.resume()
        self.start_logging()
        status, error = "complete", None
        try:
            for stage in self.regime.stages([t.name for t in self.prepared.tasks])[len(self.progress.stages):]:
                error = self.run_stage(stage)
                if error is not None:
                    status = "failed"
                    break
        except BaseException:
            self.events.close()  # interrupted: trackers mark their run so
            raise
        finally:
            restored = self.close_files()
        if restored and (self.folder / SUMMARY).is_file():
            return load(RunSummary, self.folder / SUMMARY)
        summary = self.summarise(status, error, time.perf_counter() - start)
        write_summary(self.folder, summary)
        self.events.run_finished(summary)
        self.events.close()
        return summary

    def run_stage(self, stage: Stage) -> str | None:
        """One stage; returns the error line when its training diverged (finished stages are kept)."""
        t_stage = time.perf_counter()
        self.memory.reset()
        ctx = self.context(stage)
        try:
            stats = self.train(ctx)
        except NonFiniteLoss as exc:
            error = f"{self.name} stage {stage.number} ({stage.name}) step {exc.step}: {exc}"
            self.events.stage_finished(self.name, stage.number)
            self.events.message(f"[red]stopped[/]: {error}; finished stages are kept")
            return error
        release_memory()  # training's freed activations leave the heap before evaluation
        for plugin in self.plugins:
            plugin.after_stage(ctx)
        t_eval = time.perf_counter()
        self.evaluate(stage)
        release_memory()
        self.perplexity(stage)
        general_seconds = self.general_ability(stage)
        mean = self.weight_drift(stage)
        self.progress.stages.append(StageStats(
            stage=stage.number, task=stage.name, train_seconds=round(stats.seconds, 3),
            eval_seconds=round(time.perf_counter() - t_eval, 3), steps=stats.steps, examples=stats.examples,
            train_tokens=stats.tokens, final_loss=stats.final_loss, mean_loss=stats.mean_loss,
            wall_seconds=round(time.perf_counter() - t_stage, 3), peak_memory_bytes=self.memory.peak(),
            memory_kind=self.memory.kind, general_seconds=general_seconds))
        release_memory()
        self.checkpoint(stage)
        self.events.stage_finished(self.name, stage.number)
        row, ppl = self.progress.matrix[stage.row], self.progress.ppl_after[stage.row]
        self.events.message(
            f"  {self.name} stage {stage.number}/{len(self.prepared.tasks)} {stage.name}: "
            + ", ".join(f"{t.name} {row[j]:.3f}" for j, t in enumerate(self.prepared.tasks[: stage.row + 1]))
            + (f", ppl {ppl:.3f}" if ppl is not None else "") + f", drift {mean:.2e} ({stats.seconds:.1f}s train)")
        return None

    # -- open and resume -------------------------------------------------------------------------
    def open(self) -> None:
        """A model with its adapter attached, the weights at init (for the drift), the strategy."""
        cfg, spec, device = self.cfg, self.spec, self.prepared.device
        set_seed(spec.seed)
        model = self.prepared.take_model()
        self.adapter = ADAPTERS.get(self.method.method)
        self.modules = self.adapter.attach(model, target_modules(cfg, model), self.method, spec.seed, spec.where)
        model.to(device)
        self.reference = drift.snapshot(model, self.modules)
        if cfg.execution.gradient_checkpointing:
            enable_checkpointing(model)
        if cfg.execution.compile:
            # in place, so names, state dicts and checkpoints stay those of the plain model
            backbone(model).compile(dynamic=True)
        self.model, self.hidden = model, hidden_size(model)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.heads = TaskHeads().to(device)
        self.strategy = make_strategy(self.method.strategy, spec.seed)
        self.plugins = [self.adapter, self.strategy]  # each hook: the adapter's first, then the strategy's
        self.memory = PeakMemory(device)

    def resume(self) -> None:
        """Restore the last checkpoint of this run (adapter, heads, strategy, progress, RNG), or start clean."""
        folder, tasks = self.folder, self.prepared.tasks
        folder.mkdir(parents=True, exist_ok=True)
        stage = checkpoint.latest(folder, self.key)
        if not stage:
            checkpoint.set_aside(folder)  # deleted once this run checkpoints its first stage
            self.progress, self.resumed_from = RunProgress.empty(len(tasks)), None
            return
        state, adapter_sd, heads_sd, rng = checkpoint.load_stage(folder, stage)
        where = str(stage_dir(folder, stage))
        position = self.regime.position(stage, len(tasks))
        self.adapter.structure_for(self.model, self.modules, self.method, position, where, adapter_sd)
        checkpoint.load_weights(self.model, adapter_sd, self.adapter.state_dict(self.model, self.modules, self.method),
                                where)
        self.heads = TaskHeads.restore([(h.name, h.num_classes) for h in state.tasks if h.head], self.hidden,
                                       heads_sd, self.prepared.device)
        self.strategy.load_state_dict(checkpoint.load_strategy(folder, stage), [h.name for h in state.tasks],
                                      self.prepared.device)
        keep_records(folder / RECORDS, state.progress.records)
        keep_records(folder / TRAIN_LOG, state.progress.train_log)
        keep_records(folder / PREDICTIONS, state.progress.predictions)
        if state.progress.generations or (folder / GENERATIONS).exists():
            keep_records(folder / GENERATIONS, state.progress.generations)
        checkpoint.restore_rng(state.rng, rng)
        self.events.message(f"  {self.method.display_label} seed {state.seed}: resuming after stage {stage}/{len(tasks)}")
        self.progress, self.resumed_from = state.progress, stage

    def start_logging(self) -> None:
        """The run's start to its sink (trackers replay what the files kept), the run's JSONL
        files, the initial perplexity record of a fresh run."""
        cfg, spec, folder = self.cfg, self.spec, self.folder
        config = {k: v for k, v in resolved_dict(cfg).items() if k not in ("methods", "seeds")}
        self.events.run_started(RunStart(
            cfg.name, folder, self.method.display_label, spec.seed, self.key,
            {**config, "seed": spec.seed, "method": method_dict(self.method)}, self.resumed_from,
            read_train_log(folder / TRAIN_LOG), read_records(folder / RECORDS)))
        self.writer = RecordWriter(folder / RECORDS)
        self.log_writer = RecordWriter(folder / TRAIN_LOG, sync_each=False)
        self.prediction_writer = RecordWriter(folder / PREDICTIONS, sync_each=False)
        # only a run with prompted tasks has generations to keep
        self.generation_writer = RecordWriter(folder / GENERATIONS, sync_each=False) if self.zero_shot else None
        if not self.resumed_from:
            for corpus, b in zip(self.prepared.corpora, self.base_ppls):
                self.record(Record(0, None, corpus.name, "perplexity", b.perplexity, b.tokens, protocol=b.protocol,
                                   measured_once=True))
            for g in self.general0:
                self.progress.general.setdefault(g.task, {})[g.metric] = [g.value]
                self.record(Record(0, None, g.task, g.metric, g.value, g.n, measured_once=True, general=True))
            for task, scores in self.zero_shot.items():  # in the experiment's task order
                for s in scores:
                    self.record(Record(0, None, task, s.metric, s.value, s.n, measured_once=True))
                    if s.generations is not None:
                        self.generated(Generation(0, None, task, s.generations))

    def record(self, rec: Record) -> None:
        self.writer.write(rec)
        self.progress.records += 1
        self.events.record(rec)

    def predicted(self, line: Prediction) -> None:
        self.prediction_writer.write(line)
        self.progress.predictions += 1

    def generated(self, line: Generation) -> None:
        self.generation_writer.write(line)
        self.progress.generations += 1

    def log(self, entry: TrainLogEntry) -> None:
        self.log_writer.write(entry)
        self.progress.train_log += 1
        self.events.logged(entry)

    def close_files(self) -> bool:
        """Close the JSONL files; a run without a stage of its own (a NaN, a signal) puts back the
        work it was to replace. True when it did."""
        for writer in (self.writer, self.log_writer, self.prediction_writer, self.generation_writer):
            if writer is not None:
                writer.close()
        restored = checkpoint.recover(self.folder)
        if restored:
            self.events.message(f"  {self.name}: no stage finished; the results it was to replace are restored")
        return restored

    # -- one stage -----------------------------------------------------------------------------
    def context(self, stage: Stage) -> StageContext:
        p = self.prepared
        return StageContext(self.model, self.modules, self.method, self.heads, stage, [p.tasks[k] for k in stage.tasks],
                            {t.name: t for t in p.tasks}, self.train_cfg, self.cfg.execution, p.batching, p.protocol,
                            self.spec.seed, self.spec.where)

    def train(self, ctx: StageContext) -> TrainStats:
        """Before-stage hooks, the stage's tasks' new state (heads), then the training loop."""
        for plugin in self.plugins:
            plugin.before_stage(ctx)
        new = [m for t in ctx.tasks for m in KINDS.get(t.kind).add(self.heads, t, self.hidden,
                                                                     head_seed(self.spec.seed, t.name))]
        for module in new:
            module.to(self.prepared.device)
        steps = steps_of(ctx.tasks, self.train_cfg)
        done = sum(s.steps for s in self.progress.stages)  # optimizer steps of the finished stages
        self.events.stage_started(self.name, ctx.stage.number, ctx.stage.name, steps)
        on_step = TrainLog(ctx.stage.number, ctx.stage.name, steps, self.cfg.execution.log_every, done, self.log,
                           self.events.step)
        total = schedule_length(ctx.tasks, self.train_cfg, self.prepared.protocol)
        return train_stage(ctx, new, self.plugins, total, on_step)

    def evaluate(self, stage: Stage) -> None:
        """Every task so far, each through its own kind (and its own frozen head), on its eval rows
        and, with `eval.validation`, its validation rows."""
        p = self.prepared
        batch_size = p.protocol.eval_batch_size or self.cfg.eval.batch_size
        with p.inference():
            self._evaluate(stage, batch_size)

    def _evaluate(self, stage: Stage, batch_size: int) -> None:
        p = self.prepared
        for j, task in enumerate(p.tasks[: stage.row + 1]):
            for split, rows in (("eval", task.eval), ("validation", task.val)):
                if rows is None:
                    continue
                view = task if split == "eval" else dataclasses.replace(task, eval=rows)
                scores = KINDS.get(task.kind).score(self.model, self.heads, view, batch_size, p.batching)
                matrix = self.progress.matrix if split == "eval" else self.validation_matrix()
                matrix[stage.row][j] = scores[0].value
                tag = None if split == "eval" else split
                for s in scores:
                    self.record(Record(stage.number, stage.name, task.name, s.metric, s.value, s.n,
                                       majority_baseline=self.baseline(task.name, s), split=tag))
                    if s.per_example is not None:
                        self.predicted(Prediction(stage.number, stage.name, task.name, s.metric, s.per_example, tag))
                    if s.generations is not None and tag is None:
                        self.generated(Generation(stage.number, stage.name, task.name, s.generations))

    def validation_matrix(self) -> list[list[float | None]]:
        if self.progress.val_matrix is None:
            T = len(self.prepared.tasks)
            self.progress.val_matrix = [[None] * T for _ in range(T)]
        return self.progress.val_matrix

    def baseline(self, task: str, score) -> float | None:
        """What a trivial predictor scores on `task`'s metric: the kind's (the majority class), or
        the base model's zero-shot score of that metric."""
        if score.baseline is not None or task not in self.zero_shot:
            return score.baseline
        return next(z.value for z in self.zero_shot[task] if z.metric == score.metric)

    def perplexity(self, stage: Stage) -> None:
        """Perplexity with the model's own LM head on every corpus of the experiment."""
        for k, corpus in enumerate(self.prepared.corpora):
            res = self.prepared.measure(corpus, self.model)
            if k == 0:
                self.progress.ppl_after[stage.row] = res.perplexity
            else:
                after = self.progress.extra_ppl.setdefault(corpus.name, [None] * len(self.prepared.tasks))
                after[stage.row] = res.perplexity
            self.record(Record(stage.number, stage.name, corpus.name, "perplexity", res.perplexity, res.tokens,
                               protocol=res.protocol))

    def general_ability(self, stage: Stage) -> float | None:
        """The `general:` harness tasks on the adapted model, in memory; returns the seconds it took."""
        if self.cfg.general is None:
            return None
        start = time.perf_counter()
        for s in self.prepared.general_scores(self.model):
            values = self.progress.general.setdefault(s.task, {}).setdefault(s.metric, [])
            values += [None] * (stage.number + 1 - len(values))
            values[stage.number] = s.value
            self.record(Record(stage.number, stage.name, s.task, s.metric, s.value, s.n, general=True))
        return round(time.perf_counter() - start, 3)

    def weight_drift(self, stage: Stage) -> float:
        """How far the adapted weights moved (‖ΔW‖/‖W‖ per matrix); returns the mean."""
        per_module = drift.relative_drift(self.model, self.modules, self.reference)
        mean, top = drift_summary(per_module)
        self.progress.drift.append(StageDrift(stage.number, mean, top, len(per_module), per_module))
        return mean

    def checkpoint(self, stage: Stage) -> None:
        self.log_writer.sync()  # the lines the checkpoint counts are on disk
        self.prediction_writer.sync()
        if self.generation_writer is not None:
            self.generation_writer.sync()
        p = self.prepared
        state = StageCheckpoint(
            schema_version=SCHEMA_VERSION, stage=stage.number, run_key=self.key, label=self.method.display_label,
            method=method_dict(self.method), seed=self.spec.seed, model=self.cfg.model, modules=self.modules,
            conv1d=uses_conv1d(self.model, self.modules), protocol=p.protocol.name, pooling=p.protocol.train_pooling,
            tasks=[HeadInfo(t.name, t.num_classes, KINDS.get(t.kind).has_head) for t in p.tasks[: stage.number]],
            hidden_size=self.hidden,
            adapter_tensors={}, progress=self.progress, rng={})
        checkpoint.save_stage(self.folder, state, self.adapter.state_dict(self.model, self.modules, self.method),
                              self.heads.state_dict(), self.strategy.state_dict())
        checkpoint.drop_previous(self.folder)

    # -- the end ---------------------------------------------------------------------------------
    def metrics(self, ppl0: float | None, final: float | None) -> dict[str, float | None]:
        """The matrix metrics; a regime without a sequence (joint) has one row: its final average
        accuracy and perplexity drift, nothing learned or forgotten along a sequence."""
        done, progress = len(self.progress.stages), self.progress
        last = progress.stages[-1].stage - 1 if done else -1  # the row of the last finished stage
        if self.regime.sequence:
            return matrix_metrics(progress.matrix[:done], ppl0, final)
        if not done:
            return {}
        return {**{m.key: None for m in MATRIX_METRICS}, "average_accuracy": average_accuracy(progress.matrix[: last + 1]),
                "perplexity_drift": perplexity_drift(ppl0, final)}

    def summarise(self, status: str, error: str | None, seconds: float) -> RunSummary:
        cfg, spec, p, progress = self.cfg, self.spec, self.prepared, self.progress
        ppl0 = self.base_ppl.perplexity if self.base_ppl else None
        # the perplexity after the last finished stage (its matrix row: joint's is the last)
        final = progress.ppl_after[progress.stages[-1].stage - 1] if progress.stages and self.base_ppl else None
        return RunSummary(
            schema_version=SCHEMA_VERSION, label=self.method.display_label, method=method_dict(self.method),
            seed=spec.seed, run_key=self.key, order=spec.order if spec.task_order is not None else None,
            settings_hash=spec.identity.settings_hash, settings=spec.identity.settings, status=status, error=error,
            model=cfg.model, protocol=p.protocol.name, padding_side=p.batching.padding_side,
            tasks=[t.name for t in p.tasks], num_classes={t.name: t.num_classes for t in p.tasks},
            majority_baseline={t.name: self.floor(t) for t in p.tasks}, data={t.name: t.info for t in p.tasks},
            accuracy_matrix=progress.matrix,
            perplexity=PerplexitySummary(ppl0, progress.ppl_after, final,
                                         self.base_ppl.protocol if self.base_ppl else None),
            metrics=self.metrics(ppl0, final), drift=progress.drift, diagnostics=self.adapter.diagnostics(self.model, self.modules),
            trainable_parameters=self.trainable,
            head_parameters={t.name: self.hidden * t.num_classes + t.num_classes if KINDS.get(t.kind).has_head
                             else 0 for t in p.tasks},
            adapted_modules=len(self.modules), stages=progress.stages, resumed_from_stage=self.resumed_from,
            wall_seconds=round(seconds, 3), device=str(p.device), threads=torch.get_num_threads(),
            versions=package_versions(), git_commit=git_commit(), strategy=self.strategy.summary({t.name: t for t in p.tasks}),
            regime=self.regime.name, execution=to_dict(cfg.execution), perplexities=self.further_perplexities(),
            validation_matrix=progress.val_matrix,
            metric={t.name: t.metric for t in p.tasks} if any(t.metric != "accuracy" for t in p.tasks) else None,
            zero_shot={t: {s.metric: s.value for s in scores} for t, scores in self.zero_shot.items()} or None,
            general=progress.general or None)

    def floor(self, task) -> float:
        """The baseline of a task's primary metric: its zero-shot score, else its majority class."""
        scores = self.zero_shot.get(task.name)
        return scores[0].value if scores else task.majority

    def further_perplexities(self) -> dict[str, PerplexitySummary] | None:
        """The corpora after the primary one (None when there is one corpus or none)."""
        if len(self.prepared.corpora) < 2:
            return None
        out = {}
        for corpus, base in zip(self.prepared.corpora[1:], self.base_ppls[1:]):
            after = self.progress.extra_ppl.get(corpus.name, [None] * len(self.prepared.tasks))
            final = after[self.progress.stages[-1].stage - 1] if self.progress.stages else None
            out[corpus.name] = PerplexitySummary(base.perplexity, after, final, base.protocol)
        return out
