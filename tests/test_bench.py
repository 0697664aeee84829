"""`bench`: the materialised comparison computes the same function; the command runs; compile."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from curlora_bench.adapters import ADAPTERS
from curlora_bench.bench import MaterialisedCURLoRALayer, bench
from curlora_bench.config.methods import parse_method
from curlora_bench.sources.models import auto_targets, load_model


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_materialised_variant_equals_factored(name):
    lm = load_model(name)
    model = copy.deepcopy(lm.model)
    cfg = parse_method({"method": "curlora", "rank": 4}, "m")
    modules = ADAPTERS.get("curlora").attach(model, auto_targets(model), cfg.options, 0, "m")
    with torch.no_grad():
        for m in modules:
            model.get_submodule(m).curlora_U.normal_(0, 0.5)
    ids = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        factored = model(ids).logits
        for m in modules:
            model.get_submodule(m).__class__ = MaterialisedCURLoRALayer
        materialised = model(ids).logits
    assert torch.allclose(factored, materialised, atol=1e-5)
    assert not torch.allclose(factored, lm.model(ids).logits, atol=1e-3)  # U != 0 changes the output


def test_bench_reports_every_figure_and_ratio():
    res = bench("tiny-gpt2", rank=2, batch_size=2, seq_len=16, steps=2, warmup=1, device_name="cpu",
                eval_task=None, eval_examples=24, eval_batch=8, score_task=None, gen_task=None, prompted_examples=6,
                gen_tokens=3)
    assert set(res.figures) == {"train floor", "train lora", "train curlora", "train curlora-materialised",
                                "train lora+checkpointing", "train curlora+checkpointing",
                                "eval (run's buckets)", "eval bare forward", "bare forward", "perplexity",
                                "scoring (choices)", "scoring bare forward", "generation (KV cache)",
                                "generation without cache", "generation bare forward"}
    assert all(v > 0 for v in res.figures.values())
    assert all(len(res.seconds[k]) == 2 for k in res.figures if k.startswith("train"))
    assert set(res.ratios) == {"curlora / floor", "curlora / materialised", "lora / floor",
                               "eval / bare forward (real tokens)", "perplexity / bare forward",
                               "lora checkpointed / lora", "scoring / bare forward (same tokens)",
                               "generation / bare forward (same tokens)", "generation cached / uncached"}
    # scoring: 6 prompts x a 1- and a 2-token choice; generation: every prompt + its 3 new tokens
    sc, gen = res.config["scoring"], res.config["generation"]
    assert (sc["examples"], sc["choices"], gen["examples"], gen["new_tokens"]) == (6, 2, 6, 3)
    assert gen["tokens"] >= 6 * (1 + 3) and sc["tokens"] >= 6 * (2 * 1 + 1 + 2)
    ev = res.config["eval"]  # real tokens counted without padding; the buckets pad a little
    assert ev["examples"] == 24 and ev["real_tokens"] < ev["padded_tokens"] <= 24 * 16
    # checkpointing keeps a fraction of the activations (tiny GPT-2: 2 layers, so a modest one)
    for name in ("lora", "curlora"):
        assert res.memory[f"train {name} activations MB"] > 0
        assert 0 < res.memory[f"{name} checkpointed / plain activations"] < 0.8
    assert res.memory["peak_rss_mb"] > 0 and res.environment["threads"] >= 1


def test_bench_cli_writes_json(cli, tmp_path):
    code, out, err = cli("bench", "--model", "tiny-gpt2", "--rank", "2", "--batch-size", "2", "--seq-len", "16",
                         "--steps", "1", "--warmup", "0", "--eval-task", "random", "--eval-examples", "16",
                         "--score-task", "random", "--gen-task", "random", "--prompted-examples", "4",
                         "--gen-tokens", "2", "--json", tmp_path / "b.json")
    assert code == 0, err
    assert "curlora / materialised" in out and "tokens/s" in out and "generation cached / uncached" in out
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["config"]["model"] == "tiny-gpt2" and "train curlora" in data["figures"]


@pytest.mark.slow
def test_bench_times_real_prompted_tasks(cli):
    """The default scoring and generation tasks (embedded assets), tokenised as a run does."""
    code, out, err = cli("bench", "--model", "tiny-gpt2", "--rank", "2", "--batch-size", "2", "--seq-len", "96",
                         "--steps", "1", "--warmup", "0", "--eval-task", "random", "--eval-examples", "8",
                         "--prompted-examples", "4", "--gen-tokens", "2")
    assert code == 0, err
    assert "4 prompts of rt-sentiment-prompt x 2 choices" in out and "4 prompts of bible-rewrite" in out
    code, _, err = cli("bench", "--model", "tiny-gpt2", "--score-task", "bible-rewrite")
    assert code == 2 and "--score-task: bible-rewrite is not a prompted choices task" in err


def test_bench_bf16_on_cpu_times_every_path_in_both_precisions(cli, tmp_path, monkeypatch):
    """--precision bf16 on the CPU: the run's training steps and every evaluation path timed in
    fp32 and under bf16 autocast, each bf16/fp32 ratio against its target, the CPU's kernels said
    (bf16 allowed here whatever this CPU has: emulated, the same paths run, slower)."""
    from curlora_bench.core import env

    monkeypatch.setattr(env, "bf16_supported", lambda device: True)
    code, out, err = cli("bench", "--model", "tiny-gpt2", "--rank", "2", "--batch-size", "2", "--seq-len", "16",
                         "--steps", "1", "--warmup", "0", "--eval-task", "random", "--eval-examples", "16",
                         "--score-task", "random", "--gen-task", "random", "--prompted-examples", "4",
                         "--gen-tokens", "2", "--precision", "bf16", "--json", tmp_path / "b.json")
    assert code == 0, err
    data = json.loads((tmp_path / "b.json").read_text())
    from curlora_bench.bench import BF16_PATHS

    for path in BF16_PATHS:
        assert data["figures"][path + " (bf16)"] > 0 and f"{path}: bf16 / fp32" in data["ratios"]
    assert "train curlora-materialised (bf16)" not in data["figures"]  # only the run's own steps twice
    assert "train curlora (bf16)" in out  # the suffix printed, not taken for markup
    assert data["ratios"]["train curlora: bf16 / fp32"]["target"] == 1.5
    assert data["ratios"]["scoring (choices): bf16 / fp32"]["met"] is None  # shown, no target
    assert data["environment"]["cpu_capability"] and "kernels: " in out and "bf16 / fp32" in out


def test_bench_bf16_is_refused_where_the_cpu_has_none(cli, monkeypatch):
    from curlora_bench.core import env

    monkeypatch.setattr(env, "bf16_supported", lambda device: False)
    code, _, err = cli("bench", "--model", "tiny-gpt2", "--precision", "bf16", "--device", "cpu")
    assert code == 2 and "bf16 needs native bfloat16 arithmetic" in err and "Traceback" not in err


def test_bench_rejects_bad_precision(cli):
    code, _, err = cli("bench", "--precision", "fp8")
    assert code == 2 and "--precision" in err


@pytest.mark.slow
def test_compiled_run_matches_eager(toy_data, write_config, tmp_path, cli):
    from tests.conftest import tiny_config

    def values(out):
        lines = (out / "curlora-r2" / "seed-0" / "records.jsonl").read_text().splitlines()
        return [json.loads(line)["value"] for line in lines]

    cfg = tiny_config(toy_data, methods=[{"method": "curlora", "rank": 2}])
    cfg["tasks"] = cfg["tasks"][:1]
    assert cli("run", write_config(cfg), "--output", tmp_path / "eager")[0] == 0
    cfg["train"]["compile"] = True
    assert cli("run", write_config(cfg), "--output", tmp_path / "compiled")[0] == 0
    assert values(tmp_path / "compiled") == pytest.approx(values(tmp_path / "eager"), rel=1e-5)


def test_bench_rejects_an_unknown_eval_task(cli):
    code, _, err = cli("bench", "--model", "tiny-gpt2", "--eval-task", "no-such-task")
    assert code == 2 and "--eval-task" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_lengths_come_from_the_real_task():
    from curlora_bench.bench import eval_split

    lm = load_model("tiny-gpt2")
    split = eval_split(lm, "rt-sentiment", 48, 64, None, torch.Generator().manual_seed(0), 256)
    lengths = [len(s) for s in split.ids]
    assert len(split) == 48 and max(lengths) <= 64 and len(set(lengths)) > 5  # real, varied lengths (bytes here)


def test_gpu_check_without_cuda_is_one_line_and_exit_0():
    """scripts/gpu_check.sh on a machine without CUDA (CI, this suite) says so and stops."""
    import subprocess

    import torch

    from tests.conftest import ROOT

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the whole check (minutes), not this test")
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "/nonexistent/out.json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines() == [
        "gpu_check: no CUDA device here (torch.cuda.is_available() is false); nothing to check"]
