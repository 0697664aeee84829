"""`curlora-bench calibrate`: find, per method, the learning rate whose plasticity hits a target.

Matching methods at the same learning works best when each is *run* at nearly the same
plasticity, so that the matched comparison interpolates little (`analysis/points.py`). This
searches, per method entry of a config, in log learning rate on one or two seeds: the entry's own
rate first, then steps of ×√10 (or `--step`) towards the target until the target is bracketed (a step
that would leave `--lr-range` probes its bound instead), then regula falsi
(the Illinois variant: a bracket end kept twice has its distance to the target halved, so the
search cannot stall on one side) until a probe is within the tolerance or the probes run out.

Every probe is an ordinary run of the experiment (the entry with `train.lr` set, labelled as a
grid point would be: `lora-r8-lr0.001`), written into the calibration folder and found again by
its identity, so a search that stopped resumes where it was and its probes count as runs of the
same settings anywhere. A search also starts from what the folder holds already: every rate at
which the entry (the same settings but `train.lr`) has finished runs of all the probe seeds, from
an earlier search at another target or start, counts as measured (a probe that costs no run), and
where those rates already bracket the target the search narrows between them at once. The found
settings are written as a `methods:` fragment for the full-seed run. A target out of a method's
reach (plasticity not bracketed within the rate bounds) is one line with the reach measured.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config.experiment import ExperimentConfig
from ..config.grid import point_suffix
from ..config.loading import absolutize, raw_config
from ..config.methods import MethodEntry, regime_of
from ..config.regimes import REGIMES
from ..core import metrics
from ..core.errors import BenchError
from ..core.layout import SUMMARY_GLOBS
from ..core.parse import from_dict, short_value

STEP = math.sqrt(10)  # the default stride of the bracketing walk in learning rate


@dataclass
class Search:
    """One method's search: its probes (learning rate -> mean plasticity over the seeds; None where
    a run failed) and where it ended."""

    label: str
    target: float
    tolerance: float
    probes: dict[float, float | None] = field(default_factory=dict)
    found: float | None = None  # the learning rate chosen (within tolerance, or the closest probe)
    within: bool = False

    @property
    def reach(self) -> tuple[float, float] | None:
        values = [p for p in self.probes.values() if p is not None]
        return (min(values), max(values)) if values else None

    def closest(self) -> float | None:
        measured = {lr: p for lr, p in self.probes.items() if p is not None}
        return min(measured, key=lambda lr: abs(measured[lr] - self.target)) if measured else None


def search(measure: Callable[[float], float | None], start: float, target: float, tolerance: float,
           bounds: tuple[float, float], max_probes: int, label: str = "", step: float = STEP,
           known: dict[float, float] | None = None) -> Search:
    """Bracket `target` in log learning rate from `start` by factors of `step`, then narrow it (see
    the module's doc). `measure(lr)` is the mean plasticity of the runs at `lr` (None: they failed);
    `known`: plasticity already measured at some rates (finished runs): they cost no run but count
    among the `max_probes`, so the same search repeated ends where it ended."""
    if not step > 1:
        raise BenchError(f"--step: {step:g} is not above 1 (the factor between the bracketing walk's rates)")
    s = Search(label, target, tolerance)
    s.probes.update({float(f"{lr:.3g}"): p for lr, p in (known or {}).items()})
    probe = _prober(s, measure, max_probes)
    if s.probes and probe(s.closest())[1]:  # a known rate within tolerance, or the probes used up already
        return _finish(s)
    bracket = _tightest(s)
    if bracket is None:
        lr = min(max(start, bounds[0]), bounds[1])
        p, stop = probe(lr)
        if stop:
            return _finish(s)
        if p is None:
            raise BenchError(f"{label}: the run at lr {short_value(lr)} failed (see its summary); start from "
                             "another rate")
        bracket = _bracket(probe, lr, p, target, bounds, step) and _tightest(s)
    if bracket is not None:
        _narrow(s, probe, *bracket)
    return _finish(s)


def _tightest(s: Search) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The measured probes nearest the target on either side of it ((lr, p) below, (lr, p) at or
    above), or None where every probe lies on one side."""
    measured = [(lr, p) for lr, p in s.probes.items() if p is not None]
    below = [x for x in measured if x[1] < s.target]
    above = [x for x in measured if x[1] >= s.target]
    if not below or not above:
        return None
    return max(below, key=lambda x: x[1]), min(above, key=lambda x: x[1])


def _prober(s: Search, measure, max_probes: int):
    """probe(lr) -> (plasticity, whether the search stops: within tolerance, a failed run, no probes left)."""
    def probe(lr: float) -> tuple[float | None, bool]:
        lr = float(f"{lr:.3g}")  # rates as a person writes them (and as labels show them)
        if lr not in s.probes:
            s.probes[lr] = measure(lr)
        p = s.probes[lr]
        if p is not None and abs(p - s.target) <= s.tolerance:
            s.found, s.within = lr, True
            return p, True
        return p, p is None or len(s.probes) >= max_probes
    return probe


def _bracket(probe, lr: float, p: float, target: float, bounds: tuple[float, float], step: float = STEP):
    """Walk from (lr, p) towards the target by `step` until it is bracketed: ((lr, p) below it, (lr, p)
    above it), or None where the search stopped first (the bound probed, within tolerance, no
    probes). A step past a bound probes the bound itself."""
    up = p < target
    while True:
        nxt = min(lr * step, bounds[1]) if up else max(lr / step, bounds[0])
        if float(f"{nxt:.3g}") == float(f"{lr:.3g}"):  # at the bound already
            return None
        q, stop = probe(nxt)
        if stop:
            return None
        if (q >= target) == up:
            return ((lr, p), (float(f"{nxt:.3g}"), q)) if up else ((float(f"{nxt:.3g}"), q), (lr, p))
        lr, p = float(f"{nxt:.3g}"), q


def _narrow(s: Search, probe, lo: tuple[float, float], hi: tuple[float, float]) -> None:
    """Regula falsi in log lr between lo (below the target) and hi (above it), Illinois-weighted."""
    side, flo, fhi = 0, lo[1] - s.target, hi[1] - s.target
    while True:
        x0, x1 = math.log(lo[0]), math.log(hi[0])
        lr = math.exp(x1 - fhi * (x1 - x0) / (fhi - flo) if fhi != flo else (x0 + x1) / 2)
        if float(f"{lr:.3g}") in s.probes:  # the rounded rate was measured: halve the bracket instead
            lr = math.exp((x0 + x1) / 2)
            if float(f"{lr:.3g}") in s.probes:
                return
        q, stop = probe(lr)
        if stop:
            return
        lr = float(f"{lr:.3g}")
        if q < s.target:
            lo, flo = (lr, q), q - s.target
            fhi, side = (fhi / 2 if side == -1 else fhi), -1
        else:
            hi, fhi = (lr, q), q - s.target
            flo, side = (flo / 2 if side == 1 else flo), 1


def _finish(s: Search) -> Search:
    if s.found is None:
        s.found = s.closest()
    return s


# ---- probes as runs of the experiment -----------------------------------------------------------

def probe_entry(entry: Any, lr: float) -> dict:
    """The method entry at learning rate `lr`, labelled as a grid point of `train.lr` would be."""
    out = copy.deepcopy(entry) if isinstance(entry, dict) else {"method": entry}
    out["train"] = {**(out.get("train") or {}), "lr": lr}
    if out.get("label") is not None:
        out["label"] = out["label"] + point_suffix({"train.lr": lr}, ["train.lr"])
    return out


def probe_config(raw: dict, entry: Any, lr: float, seeds: list[int], base_dir: Path) -> ExperimentConfig:
    data = copy.deepcopy(raw)
    data["methods"], data["seeds"] = [probe_entry(entry, lr)], list(seeds)
    cfg = from_dict(ExperimentConfig, data, "")
    absolutize(cfg, base_dir)
    return cfg


def plasticity_of(summaries: list) -> float | None:
    """Mean plasticity of finished runs (None: a run failed or none finished)."""
    values = [metrics.plasticity(s.score_matrix) for s in summaries if s.status == "complete"]
    if not values or len(values) < len(summaries) or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def finished_probes(raw: dict, entry: Any, seeds: list[int], base_dir: Path, out: Path) -> dict[float, float]:
    """Mean plasticity at every learning rate where `out` holds finished runs of `entry` (the same
    settings but `train.lr`, found by identity) for every seed of `seeds` (and task order): an
    earlier search's probes, as its `measure` would read them."""
    from ..store.folders import finished_summary
    from .driver import run_specs

    rates = set()
    for path in out.glob(SUMMARY_GLOBS[0]):
        try:
            lr = ((json.loads(path.read_text()).get("method") or {}).get("train") or {}).get("lr")
        except (OSError, ValueError, AttributeError):
            continue  # half-written or not a run: nothing known from it
        if isinstance(lr, (int, float)) and lr > 0:
            rates.add(float(lr))
    known = {}
    for lr in sorted(rates):
        cfg = probe_config(raw, entry, lr, seeds, base_dir)
        summaries = [finished_summary(spec.folder, spec.identity.run_key) for spec in run_specs(cfg, out)]
        if all(summaries) and (p := plasticity_of(summaries)) is not None:
            known[lr] = p
    return known


def fragment(cfg_name: str, raw_entries: list, searches: list[Search], seeds: list[int]) -> str:
    """The `methods:` fragment of the found settings, with how each was found in comments."""
    lines = [f"# curlora-bench calibrate {cfg_name}: learning rates found on seeds {seeds}"]
    methods = []
    for entry, s in zip(raw_entries, searches):
        probes = ", ".join(f"{short_value(lr)}: {'failed' if p is None else f'{p:.3f}'}"
                           for lr, p in sorted(s.probes.items()))
        if s.found is None or not s.within:
            reach = s.reach
            lines.append(f"# {s.label}: target {s.target:g} ± {s.tolerance:g} not reached"
                         + (f" (plasticity {reach[0]:.3f}-{reach[1]:.3f} measured)" if reach else "")
                         + f"; probes {probes}" + ("; closest kept" if s.found is not None else ""))
        else:
            lines.append(f"# {s.label}: lr {short_value(s.found)} gives plasticity {s.probes[s.found]:.3f} "
                         f"(target {s.target:g} ± {s.tolerance:g}); probes {probes}")
        if s.found is not None:
            methods.append(probe_entry(entry, s.found))
    return "\n".join(lines) + "\n" + yaml.safe_dump({"methods": methods}, sort_keys=False)


def check_entries(raw: dict, methods: list[MethodEntry], wanted: list[str] | None) -> list[int]:
    """Indices of the method entries to calibrate (every one, or those `--method` names)."""
    entries = raw.get("methods") or []
    labels = [m.display_label for m in methods]
    chosen = list(range(len(labels))) if not wanted else []
    for name in wanted or []:
        if name not in labels:
            raise BenchError(f"--method {name!r}: no such method in the config (methods: {', '.join(labels)})")
        chosen.append(labels.index(name))
    for i in chosen:
        if isinstance(entries[i], dict) and "grid" in entries[i]:
            raise BenchError(f"methods[{i}]: a grid entry; calibrate searches the learning rate of single "
                             "entries (drop its grid:)")
        if not REGIMES.get(regime_of(methods[i])).sequence:  # joint, however it is spelled
            raise BenchError(f"methods[{i}]: {labels[i]} trains every task in one stage: no plasticity to calibrate")
    return chosen


def calibrate(path: Path, overrides: list[str], target: float, tolerance: float, seeds: list[int] | None,
              wanted: list[str] | None, max_probes: int, bounds: tuple[float, float], out: Path,
              events, step: float = STEP) -> tuple[list[Search], str]:
    """Search every chosen method entry of the config at `path` (see the module's doc); every probe
    runs into `out`. Returns the searches and the `methods:` fragment of what they found."""
    from .driver import run_experiment

    raw = raw_config(path, overrides)
    base = path.resolve().parent
    cfg = from_dict(ExperimentConfig, copy.deepcopy(raw), "")  # the whole config checked before any run
    absolutize(cfg, base)
    entries = raw.get("methods") or []
    grids = [i for i, e in enumerate(entries) if isinstance(e, dict) and "grid" in e]
    if grids:
        raise BenchError(f"methods[{grids[0]}]: a grid entry; calibrate searches the learning rate of single "
                         "entries (drop its grid: or name the others with --method in a config without grids)")
    if not 0 < target < 1:
        raise BenchError(f"--target: {target!r} is not a plasticity between 0 and 1")
    if not bounds[0] < bounds[1]:
        raise BenchError(f"--lr-range: {bounds[0]:g} is not below {bounds[1]:g}")
    labels = [m.display_label for m in cfg.methods]
    chosen = check_entries(raw, cfg.methods, wanted)
    seeds = list(seeds or cfg.seeds[:1])
    searches = []
    for i in chosen:
        def measure(lr: float, i: int = i) -> float | None:
            probe = probe_config(raw, entries[i], lr, seeds, base)
            summaries = run_experiment(probe, out, events, force=True)
            p = plasticity_of(summaries)
            events.message(f"[bold]{labels[i]}[/]: lr {short_value(lr)} -> "
                           + ("a run failed" if p is None else f"plasticity {p:.3f}")
                           + f" (target {target:g} ± {tolerance:g}, {len(seeds)} seed(s))")
            return p

        start = cfg.train_for(cfg.methods[i]).lr
        known = finished_probes(raw, entries[i], seeds, base, out)
        for lr, p in sorted(known.items()):
            events.message(f"[bold]{labels[i]}[/]: lr {short_value(lr)} -> plasticity {p:.3f} (finished runs in {out}, "
                           f"{len(seeds)} seed(s))")
        searches.append(search(measure, start, target, tolerance, bounds, max_probes, labels[i], step, known))
    return searches, fragment(cfg.name, [entries[i] for i in chosen], searches, seeds)
