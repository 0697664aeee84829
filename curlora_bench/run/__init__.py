"""One run of a task sequence (method x seed): its phases, training, evaluation, data.

The names below are the run's public API: what the experiment (driver, executors, calibration)
and `bench` call, each read from the module that owns it on first use, so `import
curlora_bench.run.events` (the CLI's start-up path) imports no torch.

- a whole run: `run_one(spec)`, its `RunSpec`, the `RunEvents` it reports to (`RunStart`,
  `StageNumbers`), the experiment's shared inputs (`Prepared`; `run.prepare.prepare` makes them:
  the module's name would hide the function's here);
- a run's phases: `run_inputs`, `open_run`, `resume`, `RunState`, `Ledger`;
- parts of a run alone (`bench` times them): `attach_method` (a method on a model),
  `lone_stage` (one task's stage, stepped by a `StageTrainer`), the scoring a run evaluates
  with (`accuracy`, `perplexity`, `choice_loglikelihoods`, `generate_ids`), the data it reads
  (`Batching`, `PreparedTask`, `Split`, `PromptedSplit`, `PromptSpec`, `encode`, `subsample`,
  `batches`, `KINDS`), `autocast` and `max_positions`.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "run_one": "recipe", "lone_stage": "recipe",
    "RunSpec": "spec",
    "RunEvents": "events", "RunStart": "events", "StageNumbers": "events",
    "Prepared": "prepare", "max_positions": "prepare",
    "run_inputs": "state", "open_run": "state", "resume": "state", "RunState": "state", "attach_method": "state",
    "Ledger": "ledger",
    "StageTrainer": "train", "autocast": "train",
    "accuracy": "evaluate", "perplexity": "evaluate",
    "Batching": "data", "PreparedTask": "data", "Split": "data", "encode": "data", "subsample": "data",
    "batches": "data",
    "KINDS": "kinds",
    "PromptedSplit": "kinds.prompted", "PromptSpec": "kinds.prompted", "choice_loglikelihoods": "kinds.prompted",
    "generate_ids": "kinds.prompted",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
