"""`report --leaderboard` on a hand-made folder: every method point against LoRA's frontier at its
own plasticity, with the trade-off's own matched rows (the exact test), speed and memory from the
stage records, out-of-range points listed apart, its formats and its one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from curlora_bench.analysis.leaderboard import leaderboard
from curlora_bench.analysis.report import Column, Options, build_table, render
from curlora_bench.analysis.tradeoff import tradeoff
from curlora_bench.store.folders import Run, find_runs
from curlora_bench.store.schema import dump
from tests.test_sweep import _summaries

LORA, DORA = {"method": "lora", "rank": 8}, {"method": "peft", "type": "DORA", "rank": 8}
CUR, VERA = {"method": "curlora", "rank": 8}, {"method": "peft", "type": "VERA", "rank": 8}
# (column, method, plasticity, drift, forgetting): LoRA's frontier spans 0.6-0.8; vera learns beyond it
SPEC = (("lora-a", LORA, 0.6, 1.1, 0.02), ("lora-b", LORA, 0.8, 1.5, 0.04), ("dora", DORA, 0.7, 1.0, 0.0),
        ("curlora", CUR, 0.72, 1.45, 0.05), ("vera", VERA, 0.9, 1.05, 0.01))
MIB = 2**20


def stage(k: int, task: str, tokens: int, seconds: float, peak: int) -> dict:
    return {"stage": k, "task": task, "train_seconds": seconds, "eval_seconds": 1.0, "steps": 10, "examples": 40,
            "train_tokens": tokens, "final_loss": 0.5, "mean_loss": 0.6, "wall_seconds": seconds + 1,
            "peak_memory_bytes": peak, "memory_kind": "rss"}


def summaries():
    """Each run: two stages of 1,000 and 3,000 tokens in 2 + seed and 6 seconds; peaks of 100 + seed
    and 200 + k MiB (k: the point's place in SPEC)."""
    from curlora_bench.store.schema import StageStats

    out = {}
    for k, (name, method, plast, drift, forg) in enumerate(SPEC):
        runs = _summaries(name, method, plast, drift, forg, shift=k)
        for s in runs:
            s.stages = [StageStats(**stage(1, "a", 1000, 2.0 + s.seed, (100 + s.seed) * MIB)),
                        StageStats(**stage(2, "b", 3000, 6.0, (200 + k) * MIB))]
        out[name] = runs
    return out


@pytest.fixture
def folder(tmp_path):
    for name, runs in summaries().items():
        for s in runs:
            run = tmp_path / "exp" / name / f"seed-{s.seed}"
            run.mkdir(parents=True)
            (run / "summary.json").write_text(dump(s))
    return tmp_path / "exp"


def board_of(folder, **options):
    return build_table(find_runs([folder]), options=Options(draws=0, leaderboard=True, **options)).leaderboard


def test_numbers_are_the_tradeoffs_matched_rows_with_speed_and_memory(folder):
    board = board_of(folder)
    assert board.reference == "lora" and board.frontier == ["lora-a", "lora-b"]
    assert [e.column for e in board.rows] == ["dora", "curlora"]  # least drift at matched plasticity first
    assert [e.column for e in board.apart] == ["vera"] and not board.apart[0].in_range
    assert [e.column for e in board.reference_rows] == ["lora-a", "lora-b"]
    dora = board.rows[0]
    # tokens/s: 4,000 tokens in 8 + seed seconds, mean over seeds 0, 1, 2; peak: the largest stage, 202 MiB
    assert dora.tokens_per_s.mean == pytest.approx((4000 / 8 + 4000 / 9 + 4000 / 10) / 3)
    assert dora.peak_memory_bytes == 202 * MIB and dora.memory_kind == "rss"
    assert dora.trainable_parameters == 100 and dora.n == 3
    # the matched differences are the trade-off's own, on the same points
    cols = [Column(name, runs=[Run(None, s) for s in runs]) for name, runs in summaries().items()]
    to = tradeoff(cols, draws=0)
    for e in board.rows:
        m = next(x for x in to.matched if x.column == e.column and x.other == "lora")
        for q in ("forgetting", "perplexity_drift"):
            assert e.tests[q].mean == pytest.approx(m.tests[q].mean)
            assert e.tests[q].ci95 == pytest.approx(m.tests[q].ci95)
            assert e.tests[q].p_value == pytest.approx(m.tests[q].p_value)
    mid = math.sqrt(1.1 * 1.5)  # LoRA's frontier at 0.7: halfway in log drift
    assert dora.tests["perplexity_drift"].mean == pytest.approx(math.log(1.0 / mid))
    assert dora.tests["forgetting"].mean == pytest.approx(0.0 - 0.03)
    # Holm over the leaderboard's 4 tests; at n = 3 no p can go below 0.25
    assert board.family == 4 and dora.tests["perplexity_drift"].p_holm == pytest.approx(1.0)
    assert math.isinf(dora.tests["perplexity_drift"].mde)
    assert "smallest p is 0.25" in board.notes[0] and "at least 8 seeds" in board.notes[0]


def test_formats(folder):
    runs = find_runs([folder])
    opts = Options(draws=0, leaderboard=True)
    md = render(runs, "md", options=opts)
    assert "### Leaderboard at matched plasticity (against lora's frontier" in md
    assert "| 1 | dora | peft-dora | 3 |" in md and "| 2 | curlora | curlora | 3 |" in md
    assert "202 MiB (rss)" in md and "none at n = 3" in md and "| ref | lora-a |" in md
    assert "### Not compared" in md and "- vera (peft-vera): plasticity 0.900" in md
    assert "in range in 0 of 3 seeds; lora's frontier spans 0.600–0.800" in md
    rows = list(csv.DictReader(io.StringIO(render(runs, "csv", options=opts))))
    assert [r["method"] for r in rows] == ["dora", "curlora", "lora-a", "lora-b", "vera"]
    assert [r["rank"] for r in rows] == ["1", "2", "ref", "ref", "apart"]
    assert float(rows[0]["tokens_per_s"]) == pytest.approx((4000 / 8 + 4000 / 9 + 4000 / 10) / 3)
    assert float(rows[0]["perplexity_drift_log_ratio"]) == pytest.approx(math.log(1 / math.sqrt(1.65)))
    data = json.loads(render(runs, "json", options=opts))["leaderboard"]
    assert [r["column"] for r in data["rows"]] == ["dora", "curlora"] and data["apart"][0]["column"] == "vera"
    # the full report's json carries it inside the trade-off
    full = json.loads(render(runs, "json", options=Options(draws=0)))["tradeoff"]["leaderboard"]
    assert [r["column"] for r in full["rows"]] == ["dora", "curlora"]


def test_cli_and_one_line_errors(folder, cli):
    code, out, _ = cli("report", folder, "--leaderboard", "--draws", "0")
    assert code == 0 and "| 1 | dora |" in out
    code, out, _ = cli("report", folder, "--leaderboard", "--reference", "curlora", "--draws", "0", "-f", "csv")
    assert code == 0 and out.splitlines()[1].startswith("ref,curlora,curlora,3,")  # one point: nothing in range
    code, _, err = cli("report", folder, "--leaderboard", "--reference", "adalora", "--draws", "0")
    assert code == 2 and "--reference 'adalora': no run of that method family" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("report", folder, "--leaderboard", "--draws", "0", "-f", "latex")
    assert code == 2 and "--leaderboard: format 'latex' not available" in err


def test_a_folder_without_the_reference_is_refused_and_the_full_report_still_renders(folder):
    import shutil

    for name in ("lora-a", "lora-b"):
        shutil.rmtree(folder / name)
    runs = find_runs([folder])
    with pytest.raises(Exception, match="--reference 'lora': no run of that method family"):
        render(runs, "md", options=Options(draws=0, leaderboard=True))
    assert json.loads(render(runs, "json", options=Options(draws=0)))["tradeoff"]["leaderboard"] is None
    with pytest.raises(Exception, match="--leaderboard: no run has plasticity"):
        leaderboard(None, {})
