"""Stage checkpoints: resume a run after a crash from its last finished stage.

A run's folder holds `checkpoints/stage-N/` after every finished stage N:
`adapter.safetensors` (the adapter's own tensors: CURLoRA's C, R, indices and U; LoRA's A
and B; the trained matrices for `full`), `heads.safetensors` (every task head so far),
`strategy.safetensors` (what a continual-learning strategy keeps: replay memory, Fisher,
anchors), `rng.safetensors` + `state.json` (a `StageCheckpoint`: RNG states, the progress so far, and
how to rebuild the adapter). Each stage folder is written under a temporary name and renamed
into place, so a crash leaves either a whole checkpoint or none. Nothing is read with pickle.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.errors import BenchError, first_line, signals_deferred
from ..core.layout import (
    ADAPTER,
    CHECKPOINTS,
    GENERATIONS,
    HEADS,
    PREDICTIONS,
    PREVIOUS,
    PREVIOUS_MOVING,
    PREVIOUS_RESTORING,
    RECORDS,
    RNG,
    STATE,
    STRATEGY,
    SUMMARY,
    TENSORBOARD,
    TRAIN_LOG,
    stage_dir,
)
from .schema import TENSORS_FORMAT, RunSummary, StageCheckpoint, dump, load


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no storage
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def _why(exc: BaseException) -> str:
    """An OSError's reason, or the first line of another error (safetensors' own)."""
    text = getattr(exc, "strerror", None) or first_line(exc)
    return "No space left on device" if "No space left on device" in text else text


def capture_rng() -> tuple[dict, dict[str, torch.Tensor]]:
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *[float(x) if isinstance(x, float) else int(x) for x in np_state[2:]]]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return meta, tensors


def restore_rng(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_stage(run: Path, state: StageCheckpoint, adapter: dict[str, torch.Tensor],
               heads: dict[str, torch.Tensor], strategy: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint `state.stage` atomically (temporary folder, then rename); RNG captured now."""
    final = stage_dir(run, state.stage)
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rng_meta, rng_tensors = capture_rng()
    state.rng = rng_meta
    state.adapter_tensors = {k: list(v.shape) for k, v in adapter.items()}
    state.strategy_tensors = {k: list(v.shape) for k, v in (strategy or {}).items()}
    try:
        tmp.mkdir(parents=True)
        save_file(_tensors(adapter), tmp / ADAPTER, metadata={"format": str(TENSORS_FORMAT)})
        save_file(_tensors(heads), tmp / HEADS)
        save_file(_tensors(rng_tensors), tmp / RNG)
        if strategy:
            save_file(_tensors(strategy), tmp / STRATEGY)
        (tmp / STATE).write_text(dump(state), encoding="utf-8")
        for f in tmp.iterdir():  # on disk before the rename makes the checkpoint count
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"{final}: cannot write the checkpoint ({_why(exc)}); stage {state.stage} is "
                         "dropped, earlier checkpoints are intact: free space and rerun to resume") from None
    return final


def stages(run: Path) -> list[int]:
    """Finished stages that have a complete checkpoint, ascending."""
    found = []
    for d in (run / CHECKPOINTS).glob("stage-*"):
        if d.is_dir() and d.name.split("-", 1)[1].isdigit() and (d / STATE).is_file():
            found.append(int(d.name.split("-", 1)[1]))
    return sorted(found)


def read_state(run: Path, stage: int) -> StageCheckpoint:
    return load(StageCheckpoint, stage_dir(run, stage) / STATE)


def latest(run: Path, run_key: str) -> int | None:
    """The last stage checkpointed by a run with this key (same settings and seed)."""
    for stage in reversed(stages(run)):
        try:
            if read_state(run, stage).run_key == run_key:
                return stage
        except BenchError:
            continue  # another schema version or a damaged file: not resumable
    return None


def load_stage(run: Path, stage: int) -> tuple[StageCheckpoint, dict[str, torch.Tensor], dict[str, torch.Tensor],
                                               dict[str, torch.Tensor]]:
    """(state, adapter tensors, head tensors, rng tensors) of checkpoint `stage`."""
    d = stage_dir(run, stage)
    state = read_state(run, stage)
    tensors = []
    for name in (ADAPTER, HEADS, RNG):
        try:
            tensors.append(load_file(d / name))
        except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
            raise BenchError(f"{d / name}: unreadable ({first_line(exc)}); rerun with --fresh") from None
    saved = {k: list(v.shape) for k, v in tensors[0].items()}
    if state.adapter_tensors and saved != state.adapter_tensors:
        missing = sorted(set(state.adapter_tensors) - set(saved))
        what = f"{len(missing)} of the method's tensors are missing (first: {missing[0]})" if missing else "tensors differ from state.json"
        raise BenchError(f"{d / ADAPTER}: {what}; rerun with --fresh")
    heads = {k: list(v.shape) for k, v in tensors[1].items()}
    expected = {}
    for h in (h for h in state.tasks if h.head):  # a prompted task has no head
        expected[f"heads.{h.name}.weight"] = [h.num_classes, state.hidden_size]
        expected[f"heads.{h.name}.bias"] = [h.num_classes]
    if heads != expected:
        wrong = sorted(k for k in set(heads) | set(expected) if heads.get(k) != expected.get(k))
        raise BenchError(f"{d / HEADS}: {wrong[0]} is not what {STATE} records; rerun with --fresh")
    return state, tensors[0], tensors[1], tensors[2]


def load_strategy(run: Path, stage: int) -> dict[str, torch.Tensor]:
    """The strategy's state saved with checkpoint `stage` ({} if it kept none), every tensor that
    state.json records present with its shape."""
    path = stage_dir(run, stage) / STRATEGY
    expected = read_state(run, stage).strategy_tensors
    if not expected and not path.exists():
        return {}
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        raise BenchError(f"{path}: unreadable ({first_line(exc)}); rerun with --fresh") from None
    saved = {k: list(v.shape) for k, v in tensors.items()}
    if saved != expected:
        missing = sorted(set(expected) - set(saved))
        wrong = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        what = (f"{len(missing)} of the strategy's tensors are missing (first: {missing[0]})" if missing
                else f"{wrong[0]} is not what {STATE} records")
        raise BenchError(f"{path}: {what}; rerun with --fresh")
    return tensors


def clear(run: Path) -> None:
    """Forget a run's progress: checkpoints, records, training log, TensorBoard events and summary."""
    shutil.rmtree(run / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run / TENSORBOARD, ignore_errors=True)
    for name in (RECORDS, PREDICTIONS, GENERATIONS, TRAIN_LOG, SUMMARY):
        (run / name).unlink(missing_ok=True)


# A run that starts over moves its earlier work here first; the work is deleted only once the
# new run has checkpointed its first stage, and put back if the new run ends before that (an
# error, a signal, a NaN) or, when the process died (kill -9), by the next `run` (`recover`).
# Every step leaves the folder in a state `recover` settles, whenever the process dies.
_WORK = (CHECKPOINTS, RECORDS, PREDICTIONS, GENERATIONS, TRAIN_LOG, TENSORBOARD, SUMMARY)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def set_aside(run: Path) -> bool:
    """Move the run's checkpoints, records, training log, TensorBoard events and summary into
    `.previous/`; True if there were any.

    An earlier `.previous/` (a replacement that never finished a stage) is kept: it holds the
    last finished work, and what is in the folder now is the unfinished attempt, discarded.
    A full disk or a read-only folder is one error naming the path, with everything left where it was."""
    with signals_deferred():  # the moves belong together
        present = [n for n in _WORK if (run / n).exists()]
        backup = run / PREVIOUS
        if backup.exists():
            clear(run)
            return True
        if not present:
            return False
        tmp = run / PREVIOUS_MOVING
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            for name in present:
                os.replace(run / name, tmp / name)
            os.replace(tmp, backup)
        except OSError as exc:
            _undo_set_aside(run)
            raise BenchError(f"{exc.filename or tmp}: cannot set the earlier results aside ({exc.strerror or exc}); "
                             f"they are left in {run}") from None
    return True


def _undo_set_aside(run: Path) -> None:
    """A set-aside cut short: what it had moved goes back where it was."""
    tmp = run / PREVIOUS_MOVING
    if not tmp.is_dir():
        return
    for item in list(tmp.iterdir()):
        if not (run / item.name).exists():
            os.replace(item, run / item.name)
    shutil.rmtree(tmp, ignore_errors=True)


def drop_previous(run: Path) -> None:
    """The new run has a stage of its own: the work it replaces goes."""
    shutil.rmtree(run / PREVIOUS, ignore_errors=True)


def restore_previous(run: Path) -> bool:
    """Put the work set aside back (the new attempt's own is discarded); True if there was some.

    Resumable: `.previous/` is first renamed `.previous.restoring/` (a rename, so a full disk
    cannot stop it), and a restore cut short (kill -9) is finished by the next call, never
    started over, so work already moved back is not mistaken for the attempt's and deleted."""
    backup, restoring = run / PREVIOUS, run / PREVIOUS_RESTORING
    if not backup.is_dir() and not restoring.is_dir():
        return False
    with signals_deferred():
        try:
            if not restoring.is_dir():
                clear(run)  # the attempt's own work
                os.replace(backup, restoring)
            for name in _WORK:
                if (restoring / name).exists() or (restoring / name).is_symlink():
                    _remove(run / name)
                    os.replace(restoring / name, run / name)
            shutil.rmtree(restoring)
        except OSError as exc:
            raise BenchError(f"{exc.filename or run}: cannot put the earlier results back ({exc.strerror or exc}); "
                             f"they are in {restoring if restoring.is_dir() else backup}, and the next run tries "
                             "again") from None
    return True


def recover(run: Path) -> bool:
    """Settle what an earlier attempt left behind, before anything else touches the folder: a
    set-aside cut short is undone; work set aside in `.previous/` beside no finished stage of
    the attempt that replaced it (interrupted, failed or killed before its first checkpoint)
    is put back; beside one, it goes. True when earlier results were put back."""
    if not run.is_dir():
        return False
    moved_back = (run / PREVIOUS_MOVING).is_dir()
    if moved_back:
        with signals_deferred():
            _undo_set_aside(run)
    if (run / PREVIOUS_RESTORING).is_dir():  # a restore cut short: finished
        return restore_previous(run)
    if not (run / PREVIOUS).is_dir():
        return moved_back
    if not stages(run):
        return restore_previous(run)
    drop_previous(run)
    return moved_back


class Replacement:
    """The run folders a `replacing` block may replace the work of (see `replacing`)."""

    def __init__(self, runs: tuple[Path, ...], on_restore: Callable[[Path, bool], None]) -> None:
        self.runs, self.on_restore = runs, on_restore

    def start_over(self, run: Path) -> None:
        """`run` starts over: what it holds is set aside, deleted at its first checkpoint (`drop_previous`)."""
        set_aside(run)

    def settle(self, earlier: bool = False) -> bool:
        """Every folder settled (`recover`); True when one had its earlier results put back."""
        restored = False
        for run in self.runs:
            if recover(run):
                self.on_restore(run, earlier)
                restored = True
        return restored


@contextlib.contextmanager
def replacing(*runs: Path, fresh: bool = False,
              on_restore: Callable[[Path, bool], None] | None = None) -> Iterator[Replacement]:
    """A block that may replace the work of `runs`: the one place their set-aside work is put back.

    On entry, what an earlier attempt left is settled (`on_restore(run, True)` for each folder
    whose results came back); with `fresh`, each folder's work is set aside. However the block
    ends (an error, a signal, a worker that died), every folder is settled again, before a
    second Ctrl-C or SIGTERM takes effect: work set aside beside no finished stage of its
    replacement goes back (`on_restore(run, False)`), beside one it goes. Inside, `settle()`
    does the same at once (a run that ended without a stage, to know it)."""
    replacement = Replacement(runs, on_restore or (lambda run, earlier: None))
    replacement.settle(earlier=True)
    try:
        if fresh:  # only now, as the block starts: other runs keep theirs until theirs starts
            for run in runs:
                set_aside(run)
        yield replacement
    finally:
        with signals_deferred():
            replacement.settle()


def stored_work(run: Path) -> tuple[Path, str, dict, dict | None] | None:
    """What a run folder holds: (file, run key, method entry, experiment settings or None) from its
    summary or its last checkpoint; None if it holds neither. A damaged file is one error naming it."""
    if (run / SUMMARY).is_file():
        summary = load(RunSummary, run / SUMMARY)
        return run / SUMMARY, summary.run_key, summary.method, summary.settings
    for stage in reversed(stages(run)):
        state = read_state(run, stage)
        return stage_dir(run, stage) / STATE, state.run_key, state.method, None
    return None


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                 where: str) -> None:
    """Copy saved adapter tensors into an adapted model whose adapter's own tensors are `expected`.

    Every expected tensor must be saved, with its shape, and every saved tensor must find its
    place: a checkpoint missing one of its method's tensors is refused, not half-loaded.
    """
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise BenchError(f"{where}: {len(missing)} of the method's tensors are missing (first: {missing[0]}); "
                         "rerun with --fresh")
    wrong = next((k for k in expected if tuple(tensors[k].shape) != tuple(expected[k].shape)), None)
    if wrong:
        raise BenchError(f"{where}: tensor {wrong} has shape {tuple(tensors[wrong].shape)}, the model expects "
                         f"{tuple(expected[wrong].shape)}; is it the same base model and method?")
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise BenchError(f"{where}: {len(result.unexpected_keys)} tensors do not fit the model "
                         f"(first: {result.unexpected_keys[0]}); is it the same base model and method?")
