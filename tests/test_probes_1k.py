"""The `_1k` general-ability probes: 1,000 distinct items each, none from text a task trains on or a
drift corpus reads, the same bytes every build; the first-version probes left as they were."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from curlora_bench.sources import assets, general
from curlora_bench.sources.tasks.embedded import brown_files, detag_brown, read_ground_truth
from curlora_bench.sources.text import sentences

NEW = ("brown_next_sentence_1k", "nyt_cloze_1k")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each new probe built twice through `probe_yaml`, into two empty caches (the assets read from
    the shared one): {name: (data bytes, data bytes, yaml text)}."""
    real = {a: assets.ensure(a) for a in ("brown", "vader")}
    mp = pytest.MonkeyPatch()
    mp.setattr(general.assets, "ensure", lambda name, cache_dir=None: real[name])
    out = {}
    try:
        for name in NEW:
            runs = []
            for k in range(2):
                cache = tmp_path_factory.mktemp(f"cache{k}")
                yaml_path = general.probe_yaml(name, str(cache))
                runs.append(((yaml_path.parent / f"{name}.jsonl").read_bytes(), yaml_path.read_text()))
            out[name] = (runs[0][0], runs[1][0], runs[0][1])
    finally:
        mp.undo()
    return out


def _items(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.mark.parametrize("name", NEW)
def test_a_1k_probe_holds_1000_distinct_items_the_same_every_build(built, name):
    first, second, yaml_text = built[name]
    assert first == second  # deterministic: byte for byte
    items = _items(first)
    assert len(items) == 1000
    assert len({i["id"] for i in items}) == 1000 and len({i["context"] for i in items}) == 1000
    key = "endings" if name.startswith("brown") else "choices"
    for i in items:
        options = i[key]
        assert len(options) == general.CHOICES and 0 <= i["label"] < general.CHOICES
        assert len({o.lower() for o in options}) == general.CHOICES  # no choice twice
    labels = [i["label"] for i in items]
    assert all(150 <= labels.count(k) <= 350 for k in range(general.CHOICES))  # chance is 1/4
    assert f"task: {name}\n" in yaml_text and "__DATA__" not in yaml_text


def test_brown_1k_reads_only_the_texts_no_task_or_corpus_reads(built):
    folder = assets.ensure("brown")
    # every sentence of the other Brown texts: the `brown` perplexity corpus (files 0, 10, 20, ...)
    # and brown-genre's (all but files 0 and 5 in ten)
    elsewhere = {s for i, p in enumerate(brown_files(folder)) if i % 10 != 5
                 for para in detag_brown(p.read_text(errors="replace")).split("\n") for s in sentences(para)}
    docs = general.brown_documents(folder)
    for item in _items(built["brown_next_sentence_1k"][0]):
        _, d, i = item["id"].split("-")
        read = docs[int(d)][int(i) - 2: int(i) + 1]
        assert " ".join(read[:2]) == item["context"] and read[2] == item["endings"][item["label"]]
        assert not (set(read) | set(item["endings"])) & elsewhere, item["id"]


def test_nyt_1k_reads_only_editorials_past_what_the_drift_corpus_reads(built):
    rows = read_ground_truth(assets.ensure("vader") / "nytEditorialSnippets_GroundTruth.txt")
    read = "\n".join(t for _, _, t in rows[: general.NYT_PROBE_FIRST_ROW])
    ids = {rid for rid, _, _ in rows[general.NYT_PROBE_FIRST_ROW:]}
    for item in _items(built["nyt_cloze_1k"][0]):
        assert item["id"].removeprefix("nyt-") in ids and item["context"] not in read
    if assets.is_ready("smollm2-135m"):  # the corpus's first 32,768 tokens end before the probe's rows
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(assets.asset_dir("smollm2-135m")))
        assert len(tok(read, add_special_tokens=False)["input_ids"]) > 32_768


def test_the_first_version_probes_keep_their_size_and_names():
    assert general.PROBE_ITEMS == 500 and general.PROBE_SEED == 0
    assert list(general.PROBES)[:2] == ["brown_next_sentence", "nyt_cloze"]
    assert "brown_next_sentence" not in general.PROBE_SIZES and "nyt_cloze" not in general.PROBE_SIZES


SENSITIVITY = Path(__file__).resolve().parent.parent / "results" / "published" / "probe-sensitivity"
CARDS = {"brown_next_sentence_1k": "brown-next-sentence-1k.md", "nyt_cloze_1k": "nyt-cloze-1k.md"}


def _script():
    spec = importlib.util.spec_from_file_location("probe_sensitivity", SENSITIVITY.parents[2] / "scripts" / "probe_sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sensitivity_readme_and_the_cards_quote_the_published_json():
    script = _script()
    assert (SENSITIVITY / "README.md").read_text(encoding="utf-8") == script.readme(SENSITIVITY)
    quoted = {}
    for path in sorted(SENSITIVITY.glob("*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        assert run["probes"] == script.summarise(run["levels"]) and run["limit"] is None  # all items
        quoted.update(run["probes"])
    assert set(quoted) == set(CARDS)
    for task in quoted:
        text = (SENSITIVITY.parents[2] / "docs" / "general" / CARDS[task]).read_text(encoding="utf-8")
        s = quoted[task]
        assert f"`acc` {s['base_acc']:.3f} (n = {s['n']:,}" in text, task
        assert f"| minimum detectable drop | {s['min_detectable_drop']:.3f} " in text, task


def test_the_minimum_detectable_drop_solves_connors_formula():
    script = _script()
    # n = (z_a sqrt(p_d) + z_b sqrt(p_d - d^2))^2 / d^2 (Connor 1987), by hand for p_d 0.1, n 1000
    z_a, z_b = 1.959963984540054, 0.8416212335729143
    d = script.min_detectable_drop(1000, 0.1)
    assert abs((z_a * math.sqrt(0.1) + z_b * math.sqrt(0.1 - d * d)) ** 2 / d**2 - 1000) < 1e-6
    assert 0.02 < d < 0.03 and script.min_detectable_drop(30, 0.01) is None  # too few changed answers


def test_mcnemars_exact_test_holds_its_level_and_connors_drop_is_what_it_reaches():
    """Simulated paired probes at the published sizes: McNemar's exact test (the binomial test on
    the changed answers, as the script runs it) rejects a true null at most at its level; at
    Connor's minimum detectable drop it reaches a power of about 0.76, a little under the nominal
    0.8 (the normal approximation is optimistic for the exact test; the README says so)."""
    import numpy as np
    from scipy.stats import binom

    script = _script()
    rng = np.random.default_rng(0)
    draws = 20_000
    for n, changed in ((1000, 0.029), (1000, 0.1)):
        drop = script.min_detectable_drop(n, changed)
        d = rng.binomial(n, changed, draws)
        for worse_share, low, high in ((0.5, 0.0, 0.05), ((changed + drop) / (2 * changed), 0.72, 0.80)):
            worse = rng.binomial(d, worse_share)
            p = np.where(d > 0, np.minimum(1.0, 2 * binom.cdf(np.minimum(worse, d - worse), d, 0.5)), 1.0)
            rate = float((p < 0.05).mean())
            assert low <= rate <= high + 3 * math.sqrt(0.05 * 0.95 / draws), (n, changed, worse_share, rate)


def test_a_sensitivity_file_of_the_same_measurement_is_extended_another_refused(tmp_path):
    import argparse

    script = _script()
    published = SENSITIVITY / "brown_next_sentence_1k.json"
    out = tmp_path / "brown.json"
    out.write_bytes(published.read_bytes())
    args = argparse.Namespace(out=out, model="smollm2-135m", seed=0, limit=None, probes=["brown_next_sentence_1k"])
    kept = script.resumed_levels(args)
    assert [lv["noise"] for lv in kept] == [lv["noise"] for lv in json.loads(published.read_text())["levels"]]
    assert kept[0]["noise"] == 0.0
    assert script.resumed_levels(argparse.Namespace(**{**vars(args), "out": tmp_path / "none.json"})) == []
    for other in ({"seed": 1}, {"limit": 100}, {"probes": ["nyt_cloze_1k"]}):
        with pytest.raises(SystemExit, match="holds another measurement"):
            script.resumed_levels(argparse.Namespace(**{**vars(args), **other}))
