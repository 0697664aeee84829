"""`curlora-bench bench`: throughput of the training, evaluation, perplexity, choice-scoring and
generation paths, as ratios.

Every variant runs in one process on the same synthetic batches. Training variants are
interleaved round by round (so background load hits them alike); each figure is the median
of the timed steps, warm-up steps excluded. A prompted task's scoring (the log-likelihood of
each choice) and greedy generation are timed against a bare forward over the same tokens, and
generation with the KV cache against generation that recomputes every position per new token.

`precision="bf16"` (on a CUDA GPU or a CPU with bf16 kernels) times every path twice, in fp32 and
under bf16 autocast, and adds the bf16/fp32 ratio of each (`BF16_PATHS`); training compares the
run's own steps (floor, LoRA, CURLoRA), each variant's fp32 and bf16 steps interleaved.
"""

from __future__ import annotations

import copy
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .adapters.curlora_layer import CURLoRALayer
from .config.experiment import TrainConfig
from .config.methods import parse_method
from .core.env import (
    check_precision,
    configure_threads,
    cpu_capability,
    package_versions,
    resolve_device,
)
from .core.errors import BenchError
from .run import (
    KINDS,
    Batching,
    PreparedTask,
    PromptedSplit,
    PromptSpec,
    Split,
    accuracy,
    attach_method,
    autocast,
    batches,
    choice_loglikelihoods,
    encode,
    generate_ids,
    lone_stage,
    perplexity,
    subsample,
)
from .sources.heads import TaskHeads, classify
from .sources.models import (
    auto_targets,
    backbone,
    checkpointed_layers,
    enable_checkpointing,
    hidden_size,
    load_model,
)
from .sources.tasks import TASKS
from .sources.tasks.loaders import load_splits

TARGETS = [  # (name, numerator, denominator, minimum ratio)
    ("curlora / floor", "train curlora", "train floor", 0.90),
    ("curlora / materialised", "train curlora", "train curlora-materialised", 1.30),
    ("lora / floor", "train lora", "train floor", 0.90),
    ("eval / bare forward (real tokens)", "eval (run's buckets)", "eval bare forward", 0.85),
    ("perplexity / bare forward", "perplexity", "bare forward", 0.90),
    # gradient checkpointing buys memory with a second forward pass: at most ~1.5x slower
    ("lora checkpointed / lora", "train lora+checkpointing", "train lora", 0.65),
    # choices: one prompt pass per batch, each choice continued from its KV cache
    ("scoring / bare forward (same tokens)", "scoring (choices)", "scoring bare forward", 0.85),
    # one position per step after the prompt: sequential, so below a bare forward over the result
    ("generation / bare forward (same tokens)", "generation (KV cache)", "generation bare forward", 0.25),
    ("generation cached / uncached", "generation (KV cache)", "generation without cache", 1.5),
]
# --precision bf16: each path's bf16 / fp32 throughput, and the targets set for it (None: shown only)
BF16_PATHS = {"train floor": 1.5, "train lora": 1.5, "train curlora": 1.5, "eval (run's buckets)": 1.4,
              "perplexity": 1.4, "scoring (choices)": None, "generation (KV cache)": None}
BF16 = " (bf16)"


class MaterialisedCURLoRALayer(CURLoRALayer):
    """The reference code's way: build the m x n update C·U·R in every forward pass.

    Kept only as the comparison inside `bench`; the benchmark itself never uses it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.delta_weight()  # stored orientation: (out, in) Linear, (in, out) Conv1D
        w = self.base_layer.weight + delta
        if self.transposed:
            return x @ w + self.base_layer.bias
        return nn.functional.linear(x, w, self.base_layer.bias)


@dataclass
class BenchResult:
    config: dict
    figures: dict[str, float] = field(default_factory=dict)  # tokens/s
    seconds: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, dict] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int = 3) -> list[float]:
    """Seconds per call of `fn` over `repeats` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _training_variants(lm, rank: int) -> dict[str, tuple[nn.Module, list[str], object]]:
    """floor (no adapter, backward through the frozen body), lora, curlora, curlora-materialised,
    and lora/curlora with gradient checkpointing: (model, adapted modules, method config) each."""
    variants = {}
    for name, spec in (("floor", {"method": "head-only"}), ("lora", {"method": "lora", "rank": rank}),
                       ("curlora", {"method": "curlora", "rank": rank}),
                       ("curlora-materialised", {"method": "curlora", "rank": rank}),
                       ("lora+checkpointing", {"method": "lora", "rank": rank}),
                       ("curlora+checkpointing", {"method": "curlora", "rank": rank})):
        model = copy.deepcopy(lm.model)
        cfg = parse_method(spec, f"bench {name}")
        _, modules = attach_method(model, cfg, auto_targets(model), 0, f"bench {name}")
        if name == "floor":
            model.enable_input_require_grads()  # gradients flow through every layer, as with an adapter
        if name.endswith("+checkpointing"):
            enable_checkpointing(model)
        if name == "curlora-materialised":
            for m in modules:
                layer = model.get_submodule(m)
                layer.__class__ = MaterialisedCURLoRALayer
        variants[name] = (model, modules, cfg)
    return variants


def activation_bytes(model: nn.Module, heads: TaskHeads, ids: torch.Tensor, labels: torch.Tensor,
                     mask: torch.Tensor, device: torch.device, precision: str) -> int:
    """Bytes a training step keeps from its forward pass for backward: the tensors autograd
    saves, plus the inputs checkpointed layers keep to recompute themselves (with gradient
    checkpointing only those, and what lies outside the layers). Device-independent, unlike
    RSS, which a process cannot reset between variants."""
    kept: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:  # tensors sharing storage are counted once
        if t.device.type != "meta":
            storage = t.untyped_storage()
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    def layer_inputs(_module, args) -> None:
        for a in args:
            if isinstance(a, torch.Tensor):
                keep(a)

    hooks = [layer.register_forward_pre_hook(layer_inputs) for layer in checkpointed_layers(model)]
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), autocast(device, precision):
            logits = classify(model, heads, "bench", ids, mask)
        nn.functional.cross_entropy(logits.float(), labels).backward()
    finally:
        for h in hooks:
            h.remove()
    for p in [*model.parameters(), *heads.parameters()]:
        p.grad = None
        kept.pop(p.untyped_storage().data_ptr(), None)  # weights are not activations
    return sum(kept.values())


def eval_split(lm, task_name: str | None, n: int, max_length: int, cache_dir: str | None,
               gen: torch.Generator, vocab: int) -> Split:
    """`n` eval examples of a real task, tokenised as a run does (truncated at `max_length`), so
    the buckets' padding is realistic; `task_name=None` draws lengths uniformly instead."""
    if task_name is None:
        lengths = torch.randint(max_length // 4, max_length + 1, (n,), generator=gen).tolist()
        return Split([torch.randint(0, vocab, (k,), generator=gen).tolist() for k in lengths], [0] * n)
    task = TASKS.get(task_name, "--eval-task")
    ds = subsample(load_splits(task, cache_dir, "--eval-task")["eval"], n, 0)
    split = encode(lm.tokenizer, ds, task.text, max_length, lm.bos_id)
    return Split(split.ids, [0] * len(split))  # the bench head has two classes; labels do not matter here


def check_inputs(lm, rank: int, seq_len: int, model_name: str) -> None:
    """The rank and sequence length the model can take, before anything is allocated."""
    from .adapters.base import check_rank
    from .run import max_positions

    limit = max_positions(lm.model)
    if limit is not None and seq_len > limit:
        raise BenchError(f"--seq-len: {seq_len} is longer than the {limit} positions of model {model_name}")
    check_rank(lm.model, auto_targets(lm.model), rank, "--rank", "")


def bench(model_name: str = "smollm2-135m", rank: int = 8, batch_size: int = 8, seq_len: int = 128,
          steps: int = 6, warmup: int = 2, device_name: str = "auto", precision: str = "fp32",
          compile_model: bool = False, cache_dir: str | None = None, console=None,
          eval_task: str | None = "rt-sentiment", eval_examples: int = 256, eval_batch: int = 64,
          score_task: str | None = "rt-sentiment-prompt", gen_task: str | None = "bible-rewrite",
          prompted_examples: int = 32, gen_tokens: int = 8) -> BenchResult:
    for name, answer in ((score_task, "choices"), (gen_task, "target")):
        if name is not None:
            prompted_task(name, answer)  # a wrong task name fails before anything is measured
    device = resolve_device(device_name)
    check_precision(precision, device)
    configure_threads()
    say = console.print if console else (lambda *_: None)
    lm = load_model(model_name, cache_dir)
    check_inputs(lm, rank, seq_len, model_name)
    vocab = lm.model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(0)
    n_batches = warmup + steps
    data = [torch.randint(0, vocab, (batch_size, seq_len), generator=gen) for _ in range(n_batches)]
    labels = [torch.randint(0, 2, (batch_size,), generator=gen) for _ in range(n_batches)]
    result = BenchResult(config={"model": model_name, "rank": rank, "batch_size": batch_size, "seq_len": seq_len,
                                 "steps": steps, "warmup": warmup, "device": str(device), "precision": precision,
                                 "compile": compile_model})
    precisions = ("fp32", "bf16") if precision == "bf16" else ("fp32",)
    model, heads = bench_training(result, lm, rank, data, labels, warmup, device, precisions, compile_model, say)
    pad = lm.tokenizer.pad_token_id
    split = eval_split(lm, eval_task, eval_examples, seq_len, cache_dir, gen, vocab)
    both(result, precisions, device, lambda r: bench_evaluation(r, model, heads, split, eval_task, eval_batch, pad,
                                                                device, say))
    ppl_gen = torch.Generator().manual_seed(1)
    both(result, precisions, device, lambda r: bench_perplexity(r, lm, model, ppl_gen, vocab, device, say))
    split, choices = prompted_split(lm, score_task, "choices", prompted_examples, seq_len, cache_dir, gen, vocab)
    both(result, precisions, device, lambda r: bench_scoring(r, model, split, choices, score_task, eval_batch, pad,
                                                             device, say))
    split, _ = prompted_split(lm, gen_task, "target", prompted_examples, seq_len - gen_tokens, cache_dir, gen, vocab)
    both(result, precisions, device, lambda r: bench_generation(r, model, lm.tokenizer, split, gen_task, gen_tokens,
                                                                eval_batch, device, say))
    for name, num, den, minimum in TARGETS:
        r = result.figures[num] / result.figures[den]
        result.ratios[name] = {"ratio": r, "target": minimum, "met": r >= minimum}
    for path, minimum in BF16_PATHS.items():
        if path + BF16 in result.figures:
            r = result.figures[path + BF16] / result.figures[path]
            result.ratios[f"{path}: bf16 / fp32"] = {"ratio": r, "target": minimum,
                                                     "met": None if minimum is None else r >= minimum}
    result.memory["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result.memory["peak_device_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    result.environment = {"device": str(device), "device_name": torch.cuda.get_device_name(device)
                          if device.type == "cuda" else "cpu", "dtype": "float32",
                          "autocast": "bf16 beside fp32" if precision == "bf16" else "none",
                          "cpu_capability": cpu_capability(), "threads": torch.get_num_threads(),
                          "versions": package_versions()}
    return result


def both(result: BenchResult, precisions: tuple[str, ...], device: torch.device, measure) -> None:
    """`measure(result)` in fp32, then (with bf16 among `precisions`) again under bf16 autocast, its
    figures and seconds kept beside the fp32 ones with the suffix BF16."""
    measure(result)
    if "bf16" not in precisions:
        return
    extra = BenchResult(config={})
    with autocast(device, "bf16"):
        measure(extra)
    for key, value in extra.figures.items():
        result.figures[key + BF16] = value
    for key, value in extra.seconds.items():
        result.seconds[key + BF16] = value


def bench_training(result: BenchResult, lm, rank: int, data: list[torch.Tensor], labels: list[torch.Tensor],
                   warmup: int, device: torch.device, precisions: tuple[str, ...], compile_model: bool, say):
    """Every training variant, interleaved one step each per round; returns CURLoRA's model and heads.

    Each step is a run's own (`run.lone_stage`, stepped by the `StageTrainer` a run's stage trains
    with): collate, the task kind's loss, the plugins' step hooks, backward, clipping, AdamW and the
    scheduler. With bf16 among `precisions`,
    the run's own variants (floor, lora, curlora) also take a bf16-autocast step each round, on the
    same model with an optimizer of its own, timed as `train <name> (bf16)`."""
    n_batches, (batch_size, seq_len) = len(data), data[0].shape
    rows = [row.tolist() for b in data for row in b]
    task = PreparedTask("bench", 2, Split(rows, [int(y) for b in labels for y in b]), Split([], []), None,
                        KINDS.get("classification"))
    batching = Batching(device, lm.tokenizer.pad_token_id)
    variants = _training_variants(lm, rank)
    hid = hidden_size(lm.model)
    state = {}
    for name, (model, modules, method) in variants.items():
        model.to(device)
        if compile_model:
            backbone(model).compile()
        heads = TaskHeads().to(device)
        new = [heads.add("bench", hid, 2, seed=0).to(device)]
        checkpointing = name.endswith("+checkpointing")
        for precision in precisions:
            if precision != "fp32" and f"train {name}" not in BF16_PATHS:
                continue
            train_cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=1e-4, max_length=seq_len, limit=None,
                                    warmup_steps=warmup, precision=precision, dropout="off")
            key = f"train {name}" + ("" if precision == "fp32" else BF16)
            state[key] = lone_stage(model, modules, method, heads, new, task, train_cfg, batching, checkpointing,
                                    f"bench {name}", n_batches)
            result.seconds[key] = []
    say(f"training: {len(state)} variants x {n_batches} steps of {batch_size}x{seq_len} tokens on {device}")
    for step in range(n_batches):
        idx = list(range(step * batch_size, (step + 1) * batch_size))
        for key, trainer in state.items():
            _sync(device)
            t0 = time.perf_counter()
            trainer.step(task, idx)
            _sync(device)
            if step >= warmup:
                result.seconds[key].append(time.perf_counter() - t0)
    for key in state:
        result.figures[key] = batch_size * seq_len / statistics.median(result.seconds[key])
    # memory kept for backward, measured once per variant outside the timed steps
    mask = torch.ones(batch_size, seq_len, dtype=torch.long, device=device)
    for key, trainer in state.items():
        ctx = trainer.ctx
        mb = activation_bytes(ctx.model, ctx.heads, data[0].to(device), labels[0].to(device), mask, device,
                              ctx.train.precision) / 2**20
        result.memory[f"{key} activations MB"] = mb
    for name in ("lora", "curlora"):
        plain = result.memory[f"train {name} activations MB"]
        result.memory[f"{name} checkpointed / plain activations"] = (
            result.memory[f"train {name}+checkpointing activations MB"] / plain if plain else float("nan"))
    model, heads = state["train curlora"].ctx.model, state["train curlora"].ctx.heads
    del state, variants  # free the other variants' models before evaluating
    model.eval()
    return model, heads


def bench_evaluation(result: BenchResult, model: nn.Module, heads: TaskHeads, split: Split, eval_task: str | None,
                     eval_batch: int, pad: int, device: torch.device, say) -> None:
    """The run's length-sorted eval buckets against a bare forward over the same real tokens."""
    real = sum(len(s) for s in split.ids)
    body = backbone(model)

    @torch.inference_mode()
    def bare_eval() -> None:  # every example alone: no padding, no mask, no head
        for seq in split.ids:
            body(input_ids=torch.tensor([seq], device=device), use_cache=False)

    for name, fn in (("eval (run's buckets)", lambda: accuracy(model, heads, "bench", split, eval_batch, device, pad)),
                     ("eval bare forward", bare_eval)):
        result.seconds[name] = _timed(fn, device, repeats=2)
        result.figures[name] = real / statistics.median(result.seconds[name])  # real (non-pad) tokens/s
    padded = sum(len(idx) * max(len(split.ids[i]) for i in idx)
                 for idx in batches([len(s) for s in split.ids], eval_batch, shuffle=False))
    result.config["eval"] = {"task": eval_task, "examples": len(split), "batch_size": eval_batch,
                             "real_tokens": real, "padded_tokens": padded}
    say(f"evaluation: {len(split)} examples of {eval_task or 'random lengths'}, {real} real tokens, "
        f"{padded} with the buckets' padding")


def bench_perplexity(result: BenchResult, lm, model: nn.Module, gen: torch.Generator, vocab: int,
                     device: torch.device, say) -> None:
    """The run's perplexity against a bare forward pass over the same windows."""
    window = min(1024, getattr(lm.model.config, "max_position_embeddings", 1024) or 1024)
    n_windows, ppl_batch = 4, 2
    corpus = torch.randint(0, vocab, (n_windows * window,), generator=gen).tolist()
    windows = torch.tensor(corpus, device=device).view(n_windows, window)

    @torch.inference_mode()
    def bare() -> None:
        for s in range(0, n_windows, ppl_batch):
            model(input_ids=windows[s : s + ppl_batch]).logits.float()

    def ppl() -> None:
        perplexity(model, corpus, window, window, None, ppl_batch, device)

    for name, fn in (("bare forward", bare), ("perplexity", ppl)):
        result.seconds[name] = _timed(fn, device)
        result.figures[name] = n_windows * window / statistics.median(result.seconds[name])
    say(f"perplexity: {n_windows} windows of {window} tokens")


def prompted_task(name: str, answer: str):
    """The built-in prompted task `name`, which must be answered by `answer` (choices | target)."""
    where = "--score-task" if answer == "choices" else "--gen-task"
    task = TASKS.get(name, where)
    if task.answer != answer:
        raise BenchError(f"{where}: {name} is not a prompted {answer} task (`curlora-bench tasks`)")
    return task


def prompted_split(lm, task_name: str | None, answer: str, n: int, max_length: int, cache_dir: str | None,
                   gen: torch.Generator, vocab: int) -> tuple[PromptedSplit, list[list[int]] | None]:
    """`n` eval prompts of a built-in prompted task, tokenised as a run does (within `max_length`),
    with its choices' ids; `task_name=None`: random prompts of a quarter to half `max_length`
    tokens, and a one-token and a two-token choice."""
    if task_name is None:
        lengths = torch.randint(max(max_length // 4, 1), max(max_length // 2, 2), (n,), generator=gen).tolist()
        ids = [torch.randint(0, vocab, (k,), generator=gen).tolist() for k in lengths]
        choices = [torch.randint(0, vocab, (k,), generator=gen).tolist() for k in (1, 2)]
        return PromptedSplit(ids, [0] * n, lengths, [""] * n), choices if answer == "choices" else None
    where = "--score-task" if answer == "choices" else "--gen-task"
    task = prompted_task(task_name, answer)
    ds = subsample(load_splits(task, cache_dir, where)["eval"], n, 0)
    prepared = KINDS.get("prompted").prepare(task, ds, ds, lm.tokenizer, max_length,
                                             lm.bos_id, where)
    return prepared.eval, prepared.spec.choice_ids


def bench_scoring(result: BenchResult, model: nn.Module, split: PromptedSplit, choices: list[list[int]],
                  task: str | None, batch: int, pad: int, device: torch.device, say) -> None:
    """The run's choice scoring (one prompt pass per batch, each choice continued from its KV cache)
    against a bare forward over every prompt + choice sequence alone (no padding, no LM head)."""
    body = backbone(model)
    seqs = [p + c for p in split.ids for c in choices]
    tokens = sum(len(s) for s in seqs)

    @torch.inference_mode()
    def bare() -> None:
        for seq in seqs:
            body(input_ids=torch.tensor([seq], device=device), use_cache=False)

    for name, fn in (("scoring (choices)", lambda: choice_loglikelihoods(model, split, choices, batch, pad, device)),
                     ("scoring bare forward", bare)):
        result.seconds[name] = _timed(fn, device, repeats=2)
        result.figures[name] = tokens / statistics.median(result.seconds[name])
    result.config["scoring"] = {"task": task, "examples": len(split), "choices": len(choices), "tokens": tokens}
    say(f"scoring: {len(split)} prompts of {task or 'random tokens'} x {len(choices)} choices, {tokens} tokens")


def bench_generation(result: BenchResult, model: nn.Module, tokenizer, split: PromptedSplit, task: str | None,
                     new_tokens: int, batch: int, device: torch.device, say) -> None:
    """Greedy generation of `new_tokens` tokens per prompt (no EOS, no stop: the same work every
    time) with the KV cache and without it, against a bare forward over the finished sequences
    (prompt + generated tokens, each alone); every figure counts those sequences' tokens."""
    spec = PromptSpec("target", "rouge_l", new_tokens, [], None, tokenizer)
    pad = tokenizer.pad_token_id
    new = generate_ids(model, split.ids, spec, batch, pad, device)  # also the warm-up
    finished = [p + n for p, n in zip(split.ids, new)]
    tokens = sum(len(s) for s in finished)
    body = backbone(model)

    @torch.inference_mode()
    def bare() -> None:
        for seq in finished:
            body(input_ids=torch.tensor([seq], device=device), use_cache=False)

    def once(fn) -> list[float]:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return [time.perf_counter() - t0]

    result.seconds["generation (KV cache)"] = _timed(lambda: generate_ids(model, split.ids, spec, batch, pad, device),
                                                     device, repeats=2)
    result.seconds["generation without cache"] = once(  # each step recomputes every position: timed once
        lambda: generate_ids(model, split.ids, spec, batch, pad, device, use_cache=False))
    result.seconds["generation bare forward"] = _timed(bare, device, repeats=2)
    for name in ("generation (KV cache)", "generation without cache", "generation bare forward"):
        result.figures[name] = tokens / statistics.median(result.seconds[name])
    result.config["generation"] = {"task": task, "examples": len(split), "new_tokens": new_tokens, "tokens": tokens,
                                   "batch_size": batch}
    say(f"generation: {len(split)} prompts of {task or 'random tokens'}, {new_tokens} new tokens each, "
        f"{tokens} tokens in the finished sequences")
