"""The leaderboard at matched learning: one row per method point, each against the reference
family's frontier (LoRA's by default) at the point's own plasticity.

Nothing here is a new statistic. Each row's matched difference is the trade-off's own matched row
(`points.match_by_seed`, the exact sign-flip test of the per-seed differences whose size and
coverage `tests/test_calibration.py` checks); only the Holm family changes: the leaderboard's
tests (its rows times the quantities it shows), with each test's minimum detectable effect at
Holm's first step (`points.adjust_family`, `stats.exact_mde`, as `plan` prints it). Beside the
matched verdict, each row carries what a practitioner weighs too: trainable parameters, training
tokens per second (a run's train tokens over its train seconds, summed over its stages) and peak
memory (the largest of its stages', with how it was measured).

Points whose plasticity lies outside the reference frontier's range in some seed are not
compared: they are listed apart, with the seeds that were in range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..core.errors import BenchError
from . import stats
from .points import FORGETTING, Matched, Point, SeedTest, Stat, TradeOff, adjust_family

SHOWN = ("forgetting", "perplexity_drift", "general_drop")  # matched differences the table shows (where measured)


@dataclass
class Entry:
    """One method point of the leaderboard."""

    column: str
    family: str
    n: int  # seeds (runs with plasticity)
    stats: dict[str, Stat | None]  # plasticity, forgetting, perplexity_drift (log), general_drop
    trainable_parameters: int
    tokens_per_s: Stat | None  # per run: train tokens / train seconds over its stages
    peak_memory_bytes: int | None  # the largest over its runs' stages
    memory_kind: str | None  # how the peak was measured (cuda, rss, rss-process; several joined by '/')
    matched: Matched | None = None  # against the reference frontier (None: a reference point)
    tests: dict[str, SeedTest] = field(default_factory=dict)  # SHOWN quantity -> its test, Holm over the table

    @property
    def in_range(self) -> bool:
        return self.matched is not None and self.matched.in_range


@dataclass
class Leaderboard:
    reference: str  # the family every row is matched against
    frontier: list[str]  # its frontier's columns, by plasticity
    sort_by: str  # the quantity rows are sorted by (the trade-off's forgetting axis)
    rows: list[Entry]  # compared, best (least forgetting at matched plasticity) first
    reference_rows: list[Entry]  # the reference family's points
    apart: list[Entry]  # outside the reference frontier's range (or without plasticity): not compared
    seeds: list[int]  # the seed counts of the compared rows
    family: int  # tests in the Holm family
    notes: list[str] = field(default_factory=list)


def run_speed(summary) -> float | None:
    """Training tokens per second of one run: its stages' train tokens over their train seconds."""
    seconds = sum(s.train_seconds for s in summary.stages)
    return sum(s.train_tokens for s in summary.stages) / seconds if seconds > 0 else None


def entry_of(point: Point, summaries: list) -> Entry:
    complete = [s for s in summaries if s.status == "complete"]
    speeds = [v for v in (run_speed(s) for s in complete) if v is not None]
    peaks = [(st.peak_memory_bytes, st.memory_kind) for s in complete for st in s.stages
             if st.peak_memory_bytes is not None]
    kinds = sorted({k for _, k in peaks if k})
    n = point.stats["plasticity"].n if point.stats["plasticity"] else 0
    return Entry(point.column, point.family, n, point.stats, point.trainable_parameters, Stat.of(speeds),
                 max(p for p, _ in peaks) if peaks else None, "/".join(kinds) or None)


def leaderboard(to: TradeOff | None, summaries: dict[str, list], reference: str = "lora",
                alpha: float = 0.05) -> Leaderboard:
    """The leaderboard of the trade-off `to` against family `reference` (`summaries`: column ->
    its runs' summaries, for speed and memory). Raises a one-line error where the runs hold no
    reference frontier to match against."""
    if to is None:
        raise BenchError("--leaderboard: no run has plasticity (a sequence of at least one trained stage)")
    families = list(dict.fromkeys(p.family for p in to.points))
    if reference not in families:
        raise BenchError(f"--reference {reference!r}: no run of that method family in these folders "
                         f"(families: {', '.join(families)})")
    front = to.frontiers.get(reference) or []
    if not front:
        raise BenchError(f"--reference {reference!r}: its runs have no frontier (no point with plasticity and "
                         f"{FORGETTING[to.forgetting]} measured)")
    by_pair = {(m.column, m.other): m for m in to.matched}
    rows, reference_rows, apart = [], [], []
    for p in to.points:
        e = entry_of(p, summaries[p.column])
        if p.family == reference:
            reference_rows.append(e)
            continue
        e.matched = by_pair.get((p.column, reference))
        (rows if e.in_range else apart).append(e)
    # the exact tests of the matched rows, as the trade-off ran them; Holm over this table's tests
    for e in rows:
        e.tests = {q: dataclasses.replace(e.matched.tests[q]) for q in SHOWN if q in e.matched.tests}
    tests = [t for e in rows for t in e.tests.values()]
    adjust_family(tests, alpha)
    sort_by = to.frontier_quantity

    def key(e: Entry) -> float:
        t = e.tests.get(sort_by)
        return t.mean if t is not None else math.inf

    rows.sort(key=key)
    reference_rows.sort(key=lambda e: e.stats["plasticity"].mean if e.stats["plasticity"] else math.inf)
    board = Leaderboard(reference, front, sort_by, rows, reference_rows, apart,
                        sorted({e.n for e in rows}), sum(t.p_value is not None for t in tests))
    board.notes = decide_notes(board, alpha)
    return board


def decide_notes(board: Leaderboard, alpha: float) -> list[str]:
    """What the exact test can and cannot decide at the table's seeds and Holm family."""
    if not board.rows:
        return ["No method point lies within the reference frontier's range in every seed: nothing is compared."]
    m = max(1, board.family)
    level = alpha / m
    need = stats.fewest_for(level)
    out = []
    for n in board.seeds:
        floor = stats.sign_flip_floor(n)
        if floor > level:
            out.append(f"At n = {n} seeds the exact sign-flip test's smallest p is {floor:.3g} (2/2^{n}), above "
                       f"α = {alpha:g}/{m} = {level:.3g} (Holm's first step over this table's {m} tests): no row can "
                       f"be significant, whatever its difference; that takes at least {need} seeds. The intervals "
                       "still bound the differences.")
        else:
            out.append(f"At n = {n} seeds the exact test can reach α = {alpha:g}/{m} = {level:.3g} (Holm's first step "
                       f"over this table's {m} tests; smallest p {floor:.3g}); MDE: the smallest true difference it "
                       "detects with 80% power there, from each row's spread (`curlora-bench plan` gives the seeds "
                       "and eval examples a smaller one needs).")
    out.append("A difference the test does not detect is not shown to be absent: read its interval.")
    return out


# ---- renderers ---------------------------------------------------------------------------------------

def _stat(s: Stat | None) -> str:
    if s is None:
        return "-"
    if s.log:
        text = f"×{s.shown:.3f}"
        return text + (f" [×{s.shown_ci[0]:.3f}, ×{s.shown_ci[1]:.3f}]" if s.ci95 else "")
    return f"{s.mean:.3f}" + (f" [{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]" if s.ci95 else "")


def _memory(e: Entry) -> str:
    if e.peak_memory_bytes is None:
        return "-"
    return f"{e.peak_memory_bytes / 2**20:,.0f} MiB ({e.memory_kind or '?'})"


def _speed(e: Entry) -> str:
    return "-" if e.tokens_per_s is None else f"{e.tokens_per_s.mean:,.0f}"


def _difference(e: Entry, q: str) -> str:
    from .markdown import mde_cell, p_text, with_ci

    t = e.tests.get(q)
    if t is None:
        return "-"
    log = q == "perplexity_drift"
    return (f"{with_ci(t.mean, t.ci95, log)}; p {p_text(t.p_value)} (Holm {p_text(t.p_holm)}); "
            f"MDE {mde_cell(t.mde, t.n, log)}")


def to_markdown(board: Leaderboard, word: str = "accuracy") -> str:
    general = any(e.stats.get("general_drop") for e in board.rows + board.reference_rows + board.apart)
    head = ["rank", "method", "family", "n", "plasticity", "forgetting", "perplexity drift",
            *(["general-ability drop"] if general else []), "trainable", "tokens/s", "peak memory",
            f"forgetting − {board.reference}'s at matched plasticity", f"drift ÷ {board.reference}'s",
            *([f"general drop − {board.reference}'s"] if general else [])]

    def cells(e: Entry, rank: str, matched: list[str]) -> list[str]:
        return [rank, e.column, e.family, str(e.n), _stat(e.stats["plasticity"]), _stat(e.stats["forgetting"]),
                _stat(e.stats["perplexity_drift"]), *([_stat(e.stats["general_drop"])] if general else []),
                f"{e.trainable_parameters:,}", _speed(e), _memory(e), *matched]

    width = 3 if general else 2
    lines = ["", f"### Leaderboard at matched plasticity (against {board.reference}'s frontier; mean [95% CI] over "
             f"seeds; drift geometric; sorted by {board.sort_by.replace('_', ' ')} at matched plasticity)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, e in enumerate(board.rows, 1):
        diffs = [_difference(e, "forgetting"), _difference(e, "perplexity_drift")]
        lines.append("| " + " | ".join(cells(e, str(k), diffs + ([_difference(e, "general_drop")] if general else [])))
                     + " |")
    for e in board.reference_rows:
        on = "frontier" if e.column in board.frontier else "off its frontier"
        lines.append("| " + " | ".join(cells(e, "ref", [f"reference ({on})"] + ["-"] * (width - 1))) + " |")
    notes = [f"Matched difference: the method's value minus {board.reference}'s frontier at the method's plasticity, "
             "seed by seed (the trade-off's matched row: mean with its 95% t-interval, drift as a ratio); p: the exact "
             f"two-sided sign-flip test of the per-seed differences, Holm over this table's {board.family} tests; MDE at "
             "Holm's first step ('none at n' where n seeds cannot reach it). tokens/s: training tokens over training "
             "seconds, summed over a run's stages, mean over runs; peak memory: the largest stage peak (cuda: "
             "allocated by torch; rss: the process's resident set).", *board.notes]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"_{n}_  " for n in notes) + "\n"
    if board.apart:
        text += ("\n### Not compared: outside the reference frontier's range\n\n"
                 + "\n".join(f"- {e.column} ({e.family}): plasticity {_stat(e.stats['plasticity'])}, "
                             + apart_reason(e, board) for e in board.apart) + "\n")
    return text


def apart_reason(e: Entry, board: Leaderboard) -> str:
    if e.stats["plasticity"] is None:
        return "no plasticity measured"
    lo = hi = None
    if board.reference_rows:
        xs = [r.stats["plasticity"].mean for r in board.reference_rows
              if r.column in board.frontier and r.stats["plasticity"]]
        lo, hi = min(xs), max(xs)
    seeds = f"in range in {e.matched.seeds_in_range} of {e.matched.n} seeds" if e.matched else "not matched"
    reach = f"; {board.reference}'s frontier spans {lo:.3f}–{hi:.3f}" if lo is not None else ""
    return f"{seeds}{reach} (calibrate it closer to the target, or widen {board.reference}'s grid)"


def to_data(board: Leaderboard) -> dict:
    """The leaderboard as data (json; its csv rows come from the same numbers)."""
    def entry(e: Entry) -> dict:
        return {"column": e.column, "family": e.family, "n": e.n,
                "stats": {q: dataclasses.asdict(s) if s else None for q, s in e.stats.items()},
                "trainable_parameters": e.trainable_parameters,
                "tokens_per_s": dataclasses.asdict(e.tokens_per_s) if e.tokens_per_s else None,
                "peak_memory_bytes": e.peak_memory_bytes, "memory_kind": e.memory_kind,
                "in_range": e.in_range,
                "seeds_in_range": e.matched.seeds_in_range if e.matched else None,
                "matched": {q: dataclasses.asdict(t) for q, t in e.tests.items()}}
    return {"reference": board.reference, "frontier": board.frontier, "sort_by": board.sort_by,
            "family": board.family, "seeds": board.seeds, "notes": board.notes,
            "rows": [entry(e) for e in board.rows], "reference_rows": [entry(e) for e in board.reference_rows],
            "apart": [entry(e) for e in board.apart]}


def csv_rows(board: Leaderboard) -> list[list]:
    """One line per row: rank (ref / apart), method, family, n, plasticity, forgetting, drift, general
    drop, trainable, tokens/s, peak memory, its kind, then per matched quantity its mean, CI, p, p Holm, MDE."""
    out = []
    groups = [(str(k), e) for k, e in enumerate(board.rows, 1)]
    groups += [("ref", e) for e in board.reference_rows] + [("apart", e) for e in board.apart]
    for rank, e in groups:
        line = [rank, e.column, e.family, e.n]
        for q in ("plasticity", "forgetting", "perplexity_drift", "general_drop"):
            s = e.stats.get(q)
            line.append(None if s is None else s.shown)
        line += [e.trainable_parameters, e.tokens_per_s.mean if e.tokens_per_s else None, e.peak_memory_bytes,
                 e.memory_kind]
        for q in SHOWN:
            t = e.tests.get(q)
            lo, hi = (t.ci95 if t and t.ci95 else (None, None))
            line += [None, None, None, None, None, None] if t is None else [t.mean, lo, hi, t.p_value, t.p_holm,
                                                                              None if t.mde is None or math.isinf(t.mde)
                                                                              else t.mde]
        out.append(line)
    return out


CSV_HEADER = ["rank", "method", "family", "n", "plasticity", "forgetting", "perplexity_drift", "general_drop",
              "trainable_parameters", "tokens_per_s", "peak_memory_bytes", "memory_kind",
              *(f"{q}_{k}" for q in SHOWN for k in ("difference" if q != "perplexity_drift" else "log_ratio", "ci95_low", "ci95_high", "p_value", "p_holm", "mde"))]
