"""The default experiment, shrunk, on the real embedded SmolLM2 (slow; runs in CI)."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_default_config_shrunk_on_smollm2(cli, tmp_path):
    out = tmp_path / "seq"
    code, stdout, err = cli(
        "run", ROOT / "configs" / "seq.yaml", "-o", out,
        "--set", "train.limit=24", "--set", "eval.limit=24", "--set", "perplexity.max_tokens=1024",
    )
    assert code == 0, err
    for label, per_matrix in (("lora-r8", 8 * (576 + 576) + 8 * (576 + 192) * 2), ("curlora-r8", 64)):
        s = json.loads((out / label / "seed-0" / "summary.json").read_text())
        assert s["status"] == "complete" and s["adapted_modules"] == 90
        # LoRA: per layer, one (q) + two (k, v) matrices in one per_matrix; CURLoRA: r x r per matrix
        assert s["trainable_parameters"] == (30 * per_matrix if label == "lora-r8" else 90 * per_matrix)
        A = s["accuracy_matrix"]
        assert all(0.0 <= A[i][j] <= 1.0 for i in range(3) for j in range(i + 1))
        ppl = s["perplexity"]
        assert 10 < ppl["initial"] < 200 and math.isfinite(ppl["final"])
        assert ppl["protocol"]["corpus"] == "nyt-editorials" and ppl["protocol"]["bos"] is False
    assert "bible-paraphrase accuracy (after tweet-sentiment)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_generative_config_shrunk_on_smollm2(cli, tmp_path):
    """configs/seq-gen.yaml, shrunk to a few examples: every prompted task trains through the LM
    head and is scored after each stage, beside its zero-shot score, the generations kept."""
    out = tmp_path / "seq-gen"
    code, stdout, err = cli(
        "run", ROOT / "configs" / "seq-gen.yaml", "-o", out, "--set", "methods=[{method: curlora, rank: 8}]",
        "--set", "train.limit=8", "--set", "eval.limit=8", "--set", "perplexity.max_tokens=1024",
    )
    assert code == 0, err
    s = json.loads((out / "curlora-r8" / "seed-0" / "summary.json").read_text())
    assert s["status"] == "complete" and s["head_parameters"] == {t: 0 for t in s["tasks"]}
    assert s["metric"] == {"rt-sentiment-prompt": "accuracy", "bible-rewrite": "rouge_l",
                           "tweet-sentiment-prompt": "accuracy"}
    rewrite = s["zero_shot"]["bible-rewrite"]
    assert 0.0 < rewrite["rouge_l"] < 1.0 and set(rewrite) == {"rouge_l", "exact_match", "chrf"}
    A = s["accuracy_matrix"]
    assert all(0.0 <= A[i][j] <= 1.0 for i in range(3) for j in range(i + 1))
    lines = (out / "curlora-r8" / "seed-0" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 3 + 1 + 2 + 3  # zero-shot, then every task so far after each stage
    assert "bible-rewrite ROUGE-L (after tweet-sentiment-prompt)" in (out / "report.md").read_text()
