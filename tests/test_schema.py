"""The results schema across versions: schema-2 files (every published result) are read with their
fields under today's names; a checkpoint of another version is not resumed; an unknown version is
one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curlora_bench.core.errors import BenchError
from curlora_bench.store.schema import (
    SCHEMA_VERSION,
    Record,
    RunSummary,
    StageCheckpoint,
    load,
    parse,
    read_records,
)

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published" / "seq3" / "lora-r8" / "seed-0"


def test_a_schema_2_summary_reads_as_today_s():
    old = json.loads((PUBLISHED / "summary.json").read_text())
    assert old["schema_version"] == 2 and "accuracy_matrix" in old and "majority_baseline" in old
    summary = load(RunSummary, PUBLISHED / "summary.json")
    assert summary.schema_version == SCHEMA_VERSION
    assert summary.score_matrix == old["accuracy_matrix"] and summary.baseline == old["majority_baseline"]


def test_a_schema_2_record_reads_as_today_s():
    records = read_records(PUBLISHED / "records.jsonl")
    old = [json.loads(line) for line in (PUBLISHED / "records.jsonl").read_text().splitlines()]
    assert [r.baseline for r in records] == [o.get("majority_baseline") for o in old]
    again = parse(Record, json.loads(records[-1].to_json()), "line")
    assert again == records[-1] and "majority_baseline" not in records[-1].to_json()


def test_other_versions_are_one_line():
    old = json.loads((PUBLISHED / "summary.json").read_text())
    with pytest.raises(BenchError, match="results schema version 1"):
        parse(RunSummary, {**old, "schema_version": 1}, "x/summary.json")
    with pytest.raises(BenchError, match="results schema version 2"):  # a checkpoint is not resumed across versions
        parse(StageCheckpoint, {"schema_version": 2}, "x/state.json")
