"""What a stage's training looks like from outside: train_log.jsonl lines and peak memory.

`TrainLog` turns `train_stage`'s per-step reports into `TrainLogEntry` lines every
`train.log_every` steps; it only reads what the step produced (the loss already computed,
the gradient norm clipping returned or a read-only norm), so logging changes no number.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..store.schema import TrainLogEntry
from .train import StepInfo


class TrainLog:
    """Per-step reports of one stage -> a `TrainLogEntry` every `every` steps and at the last step."""

    def __init__(self, stage: int, task: str, steps: int, every: int, step_offset: int,
                 emit: Callable[[TrainLogEntry], None], on_step: Callable[[int, float], None]) -> None:
        self.stage, self.task, self.steps, self.every, self.offset = stage, task, steps, every, step_offset
        self.emit, self.on_step = emit, on_step
        self.examples = self.tokens = 0
        self._losses: list[float] = []
        self._tokens = 0
        self.start = self._since = time.perf_counter()

    def __call__(self, info: StepInfo) -> None:
        self.examples += info.examples
        self.tokens += info.tokens
        self._tokens += info.tokens
        self._losses.append(info.loss)
        self.on_step(info.step, info.loss)
        if info.step % self.every and info.step != self.steps:
            return
        now = time.perf_counter()
        self.emit(TrainLogEntry(
            stage=self.stage, task=self.task, step=info.step, global_step=self.offset + info.step,
            loss=sum(self._losses) / len(self._losses), lr=info.lr, grad_norm=info.grad_norm(),
            examples=self.examples, tokens=self.tokens,
            tokens_per_s=round(self._tokens / max(now - self._since, 1e-9), 1),
            seconds=round(now - self.start, 3)))
        self._losses, self._tokens, self._since = [], 0, now


class PeakMemory:
    """Peak memory over a span: the CUDA allocator's peak on a GPU, else the peak resident set.

    On Linux the process's peak RSS can be reset (`/proc/self/clear_refs`), so each span gets its
    own peak ("rss"); elsewhere the peak since the process started is all there is ("rss-process").
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda" if device.type == "cuda" else "rss-process"

    def reset(self) -> None:
        if self.kind == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) only
            self.kind = "rss"
        except OSError:
            self.kind = "rss-process"

    def peak(self) -> int | None:
        """Bytes at the peak since `reset`."""
        if self.kind == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "rss":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        import resource  # POSIX only

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, KiB on Linux
