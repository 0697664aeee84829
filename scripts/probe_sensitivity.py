"""How far each general-ability probe moves under a known degradation: the base model with Gaussian
weight noise of increasing size, each probe scored on all its items beside perplexity on the drift
corpus, and each probe's minimum detectable drop at its size.

    OMP_NUM_THREADS=1 python scripts/probe_sensitivity.py --noise 0 0.02 0.05 \\
        --out results/published/probe-sensitivity/sensitivity.json

A file of the same measurement (model, seed, limit, probes) at `--out` is extended: its levels are
kept and only the noise levels it lacks are measured (noise 0, first, is what every level pairs with).

Noise: every `nn.Linear` weight of the transformer blocks (attention and MLP projections; not the
embedding, which the LM head shares, nor the norms) becomes W + s * rms(W) * Z, Z standard normal
from a generator seeded per matrix (`--seed` plus its index), the same Z at every level s.

Scores: lm-evaluation-harness `acc` per item (`log_samples`), paired across levels by item; the
change from noise 0 is tested with McNemar's exact test (the two-sided binomial test of the
discordant items, scipy.stats.binomtest). The minimum detectable drop
is `min_detectable_drop` below (the formula is in its docstring and the probes' cards).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

# the largest perplexity drift of the published runs (x1.18): the summary's minimum detectable drop
# takes its p_d from the noise level whose drift is nearest to it
PUBLISHED_DRIFT = 1.18
CHOICES = 4  # every probe here: chance is 1 / CHOICES
DRIFT_CORPUS = {"corpus": "nyt-editorials", "max_tokens": 8192, "window": 1024, "stride": 1024, "batch_size": 4}


def min_detectable_drop(n: int, discordant: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest accuracy drop a two-sided paired test on `n` items detects with `power` at level
    `alpha`, when a fraction `discordant` of items change their answer (Connor 1987's normal
    approximation to McNemar's test, solved for the difference):

        delta = (z_{1-alpha/2} * sqrt(p_d) + z_{power} * sqrt(p_d - delta^2)) / sqrt(n)

    iterated from delta = (z_{1-alpha/2} + z_{power}) * sqrt(p_d / n) to its fixed point. None when
    that drop is larger than p_d itself (no drop is detectable when so few answers change)."""
    from scipy.stats import norm

    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    delta = (za + zb) * math.sqrt(discordant / n)
    for _ in range(50):
        delta = (za * math.sqrt(discordant) + zb * math.sqrt(max(discordant - delta**2, 0.0))) / math.sqrt(n)
    return delta if delta <= discordant else None


def add_noise(model, scale: float, seed: int, originals: dict) -> int:
    """Each block Linear weight set to its original plus `scale` * rms * Z (Z seeded per matrix)."""
    import torch
    from torch import nn

    k = 0
    for name, module in sorted(model.named_modules()):
        if not isinstance(module, nn.Linear) or "layers." not in name:
            continue
        w = module.weight
        base = originals.setdefault(name, w.detach().clone())
        z = torch.randn(base.shape, generator=torch.Generator().manual_seed(seed + k), dtype=torch.float32)
        rms = base.float().pow(2).mean().sqrt()
        with torch.no_grad():
            w.copy_((base.float() + scale * rms * z).to(w.dtype))
        k += 1
    return k


def per_item_acc(model, tokenizer, specs: list, limit: int | None, batch_size: int) -> dict[str, list[int]]:
    """{task: acc of each item, in document order} by `lm_eval.simple_evaluate` with samples logged."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from curlora_bench.run.general import no_environment_probe, offline, quiet, task_manager

    with offline(), quiet(), no_environment_probe():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        res = simple_evaluate(model=lm, tasks=list(specs), limit=limit, bootstrap_iters=0, log_samples=True,
                              task_manager=task_manager(False))
    return {task: [int(s["acc"]) for s in sorted(samples, key=lambda s: s["doc_id"])]
            for task, samples in res["samples"].items()}


def drift_perplexity(model, lm) -> float:
    import torch

    from curlora_bench.run.evaluate import perplexity
    from curlora_bench.sources import assets
    from curlora_bench.sources.tasks.embedded import nyt_editorials

    c = DRIFT_CORPUS
    text = nyt_editorials(assets.ensure("vader"))
    tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"][: c["max_tokens"]]
    return perplexity(model, tokens, c["window"], c["stride"], lm.bos_id, c["batch_size"],
                      torch.device("cpu")).perplexity


def summarise(levels: list[dict]) -> dict:
    """Per probe: size, chance, the base model's accuracy, and the minimum detectable drop with the
    p_d of the noise level whose perplexity drift is nearest `PUBLISHED_DRIFT`."""
    base_ppl = levels[0]["perplexity"]
    near = min(levels[1:] or levels, key=lambda lv: abs(math.log(lv["perplexity"] / base_ppl / PUBLISHED_DRIFT)))
    summary = {}
    for task, base in levels[0]["probes"].items():
        n = base["n"]
        disc = (near["probes"][task]["worse"] + near["probes"][task]["better"]) / n
        summary[task] = {
            "n": n, "chance": 1 / CHOICES, "base_acc": base["acc"], "discordant_fraction": disc,
            "min_detectable_drop": min_detectable_drop(n, disc) if disc > 0 else None,
            "at_noise": near["noise"], "at_ppl_ratio": near["perplexity"] / base_ppl,
            "acc_change_per_log_ppl": [(lv["probes"][task]["acc"] - base["acc"]) / math.log(lv["perplexity"] / base_ppl)
                                       if lv["perplexity"] != base_ppl else None for lv in levels],
        }
    return summary


def readme(folder: Path) -> str:
    """The folder's README: every JSON's levels and probes as tables (tests/test_probes_1k.py checks
    that the README is this, and that the probe cards quote these numbers)."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    lines = ["# Probe sensitivity: the base model under weight noise", "",
             "Written by `python scripts/probe_sensitivity.py --readme results/published/probe-sensitivity`",
             "from the JSON files beside it (`scripts/probe_sensitivity.py` measured them: one torch thread, CPU,",
             "fp32). Noise: " + runs[0]["noise"] + ", Z seeded per matrix, the same Z at every level.",
             f"Perplexity: the `{DRIFT_CORPUS['corpus']}` drift corpus, first {DRIFT_CORPUS['max_tokens']:,} tokens,"
             f" windows of {DRIFT_CORPUS['window']:,}. Change: McNemar's exact test on the items, paired with noise 0.",
             "Per unit of drift: the change in accuracy over ln(perplexity ratio).",
             "", "| probe | items | noise | perplexity | ppl ratio | acc | change | per unit of drift | worse | better "
             "| McNemar p |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        base_ppl = run["levels"][0]["perplexity"]
        for task in run["probes"]:
            base = run["levels"][0]["probes"][task]["acc"]
            for lv in run["levels"]:
                r = lv["probes"][task]
                ratio = lv["perplexity"] / base_ppl
                per = "-" if ratio == 1 else f"{(r['acc'] - base) / math.log(ratio):+.3f}"
                lines.append(f"| `{task}` | {r['n']:,} | {lv['noise']:g} | {lv['perplexity']:.2f} | "
                             f"×{ratio:.3f} | {r['acc']:.3f} | {r['acc'] - base:+.3f} | {per} | "
                             f"{r['worse']} | {r['better']} | {r['mcnemar_exact_p']:.3g} |")
    lines += ["", "Minimum detectable drop (alpha 0.05 two-sided, power 0.8; Connor 1987, p_d the fraction of",
              f"items whose answer changed at the noise level whose perplexity drift is nearest ×{PUBLISHED_DRIFT},",
              "the largest drift of the published runs; the normal approximation is a little optimistic for",
              "McNemar's exact test as run here, which reaches a power of about 0.76 at this drop in simulation):", "",
              "| probe | items | chance | base acc | noise | ppl ratio | p_d | minimum detectable drop |",
              "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for task, s in run["probes"].items():
            mdd = "none (fewer answers changed)" if s["min_detectable_drop"] is None else f"{s['min_detectable_drop']:.3f}"
            lines.append(f"| `{task}` | {s['n']:,} | {s['chance']:.2f} | {s['base_acc']:.3f} | {s['at_noise']:g} | "
                         f"×{s['at_ppl_ratio']:.3f} | {s['discordant_fraction']:.3f} | {mdd} |")
    return "\n".join(lines) + "\n"


def resumed_levels(args) -> list[dict]:
    """The levels of `--out` when it holds the same measurement (model, seed, limit, probes, and
    noise 0 measured first, which every level is paired with); [] when it does not exist. Another
    measurement in that file is refused rather than mixed in."""
    if args.out is None or not args.out.is_file():
        return []
    run = json.loads(args.out.read_text(encoding="utf-8"))
    first = (run.get("levels") or [{}])[0]
    same = (run.get("model"), run.get("seed"), run.get("limit"), sorted(first.get("probes") or {}))
    wanted = (args.model, args.seed, args.limit, sorted(args.probes))
    if same != wanted or first.get("noise") != 0.0:
        raise SystemExit(f"{args.out}: holds another measurement (model, seed, limit, probes {same}, not {wanted}); "
                         "write to another file")
    return run["levels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--probes", nargs="+", default=["brown_next_sentence_1k", "nyt_cloze_1k"])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.02, 0.05])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="items per probe (all when unset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="the JSON written (after every level)")
    parser.add_argument("--readme", type=Path, help="only write this folder's README.md from its *.json")
    args = parser.parse_args()
    if args.readme:  # the summaries recomputed from the levels measured, then the README
        for path in sorted(args.readme.glob("*.json")):
            run = json.loads(path.read_text(encoding="utf-8"))
            run["probes"] = summarise(run["levels"])
            path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        (args.readme / "README.md").write_text(readme(args.readme), encoding="utf-8")
        return
    if args.out is None:
        parser.error("--out is required")

    import torch
    from scipy.stats import binomtest

    from curlora_bench.config.experiment import GeneralConfig
    from curlora_bench.run.general import check_general
    from curlora_bench.sources.models import load_model

    specs = check_general(GeneralConfig(tasks=args.probes, batch_size=args.batch_size))
    lm = load_model(args.model)
    model = lm.model.eval()
    originals: dict = {}
    levels, base = resumed_levels(args), None
    if levels:  # a file of the same measurement: its levels are kept, only new noise levels run
        base = {task: [int(c) for c in r["items"]] for task, r in levels[0]["probes"].items()}
        kept = ", ".join(f"{lv['noise']:g}" for lv in levels)
        print(f"{args.out}: noise levels {kept} kept", flush=True)
    # what was measured so far is written after every level (a long run read while it goes)
    for scale in args.noise:
        if any(lv["noise"] == scale for lv in levels):
            continue
        start = time.perf_counter()
        matrices = add_noise(model, scale, args.seed, originals)
        with torch.inference_mode():
            ppl = drift_perplexity(model, lm)
        acc = per_item_acc(model, lm.tokenizer, specs, args.limit, args.batch_size)
        base = base or acc
        level = {"noise": scale, "perplexity": ppl, "seconds": round(time.perf_counter() - start, 1), "probes": {}}
        for task, items in acc.items():
            ref = base[task]
            worse = sum(a == 1 and b == 0 for a, b in zip(ref, items))
            better = sum(a == 0 and b == 1 for a, b in zip(ref, items))
            p = binomtest(worse, worse + better, 0.5).pvalue if worse + better else 1.0  # McNemar exact
            level["probes"][task] = {"n": len(items), "acc": sum(items) / len(items), "worse": worse,
                                     "better": better, "mcnemar_exact_p": p, "items": "".join(map(str, items))}
        levels = sorted([*levels, level], key=lambda lv: lv["noise"])
        print(f"noise {scale}: ppl {ppl:.3f} " + " ".join(f"{t} {v['acc']:.4f}" for t, v in level["probes"].items())
              + f" ({level['seconds']} s)", flush=True)
        out = {"model": args.model, "seed": args.seed, "limit": args.limit, "drift_corpus": DRIFT_CORPUS,
               "noise": "W + s * rms(W) * Z on every nn.Linear weight of the transformer blocks",
               "test": "McNemar's exact test (binomial on discordant items, scipy), paired by item, against noise 0",
               "mdd": "alpha 0.05 two-sided, power 0.8, Connor (1987) normal approximation",
               "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "matrices": matrices, "levels": levels, "probes": summarise(levels)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
