"""Training regimes: which stages a run has and which tasks each stage trains on.

A regime is plain logic over the task list; the run executes its stages with one training
loop whatever the regime (`run/train.py`). `sequential` is continual learning, one task per
stage; `joint` is the multi-task upper bound a continual method is read against: one stage
over every task at once (batches of all tasks interleaved, as many optimizer steps as the
whole sequence), evaluated once, so its accuracy matrix has only its last row.

Adding a regime: a `Regime` subclass (here or in a module of its own) and its `"module:Class"`
entry in `REGIMES`; a method entry selects it
with `regime: <name>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.registry import Registry


@dataclass(frozen=True)
class Stage:
    """One stage of a run."""

    number: int  # 1-based: the stage of its records, checkpoint (stage-N) and matrix row N - 1
    position: int  # 1-based index among the regime's stages (OSF grows its budget by it)
    tasks: tuple[int, ...]  # indices into the run's task order of the tasks trained here
    name: str  # what the records call the stage's training (`after_task`): a task, or the regime
    interleave: bool  # several tasks' batches mixed in one seeded order (else one task's, in turn)
    seed_offset: int  # the stage's batch-order seed is the run seed + this

    @property
    def row(self) -> int:
        """The accuracy-matrix row this stage fills: every task up to it is evaluated."""
        return self.number - 1


class Regime:
    name: str = ""
    help: str = ""
    sequence: bool = True  # the matrix has a row per task: plasticity, forgetting and BWT exist
    takes_strategy: bool = True  # a continual-learning strategy means something here
    note: str = ""  # how the report describes its columns (regimes without a sequence)

    def stages(self, task_names: list[str]) -> list[Stage]:
        raise NotImplementedError

    def label_prefix(self) -> str:
        return f"{self.name}-"

    def position(self, number: int, tasks: int) -> int:
        """The position among this regime's stages of the stage numbered `number` (of `tasks` tasks)."""
        return next(s.position for s in self.stages([""] * tasks) if s.number == number)


class Sequential(Regime):
    name = "sequential"
    help = "continual learning: one stage per task, in the task order (the default)"

    def stages(self, task_names: list[str]) -> list[Stage]:
        return [Stage(i + 1, i + 1, (i,), name, False, i) for i, name in enumerate(task_names)]

    def label_prefix(self) -> str:
        return ""


class Joint(Regime):
    name = "joint"
    help = "multi-task upper bound: one stage over every task at once (the sequence's steps), one matrix row"
    sequence = False
    takes_strategy = False
    note = ("the multi-task upper bound, trained once on all tasks (as many steps as the sequence); its matrix "
            "is a single row, the final accuracies, so it has no plasticity, backward transfer or forgetting")

    def stages(self, task_names: list[str]) -> list[Stage]:
        T = len(task_names)
        # its one row sits where the sequence's final row does
        return [Stage(T, 1, tuple(range(T)), self.name, True, 0)]


# name -> "module:Regime subclass"; a method entry selects one with `regime: <name>`
REGIMES: Registry[Regime] = Registry("regime", base=Regime, make=lambda cls: cls(), entries={
    "joint": "curlora_bench.config.regimes:Joint",
    "sequential": "curlora_bench.config.regimes:Sequential",
})
SEQUENTIAL = "sequential"
