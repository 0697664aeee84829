"""Paper fidelity: LoRA's A as the reference code draws it, training dropout, the WikiText
stream and the padding side, each checked against the reference code (MNoorFawi/curlora)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from curlora_bench.adapters import ADAPTERS
from curlora_bench.adapters.base import module_seed
from curlora_bench.adapters.lora import reference_lora_a
from curlora_bench.config.experiment import TrainConfig, resolved_dict
from curlora_bench.config.loading import load_config
from curlora_bench.config.methods import method_dict, parse_method
from curlora_bench.core.errors import BenchError
from curlora_bench.core.protocol import Protocol
from curlora_bench.run.data import Batching, PreparedTask, Split, collate
from curlora_bench.run.evaluate import accuracy, perplexity
from curlora_bench.run.events import RunEvents
from curlora_bench.run.kinds import KINDS
from curlora_bench.run.prepare import prepare
from curlora_bench.sources.heads import TaskHeads, classify
from curlora_bench.sources.models import auto_targets, backbone, hidden_size, load_model
from curlora_bench.sources.tasks import CORPORA
from curlora_bench.store.schema import TaskData
from tests.conftest import tiny_config, train_one
from tests.test_hub_tasks import _hub_folder


# --- the oracle: code/lora.py of the reference repository, verbatim but for comments ---------
class LoRALayer(torch.nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = torch.nn.Parameter(torch.empty(in_dim, rank))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha

    def forward(self, x):
        x = self.alpha * (x @ self.A @ self.B)
        return x


class LinearWithLoRA(torch.nn.Module):
    def __init__(self, linear, rank, alpha):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x):
        x = self.linear(x) + self.lora(x)
        return x
# ----------------------------------------------------------------------------------------------


class OneLayer(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.proj = layer

    def forward(self, x):
        return self.proj(x)


def lora(layer: nn.Module, rank: int, init: str, alpha: float = 1.0, seed: int = 0) -> OneLayer:
    model = OneLayer(copy.deepcopy(layer))
    cfg = parse_method({"method": "lora", "rank": rank, "alpha": alpha, "init": init}, "m")
    ADAPTERS.get("lora").attach(model, ["proj"], cfg.options, seed, "m")
    return model


@pytest.mark.parametrize("init, bound", [("peft", 1 / math.sqrt(512)), ("reference", 1 / math.sqrt(8))])
def test_lora_a_scale_and_b_zero(init, bound):
    torch.manual_seed(0)
    model = lora(nn.Linear(512, 64), rank=8, init=init)
    a, b = model.proj.lora_A["default"].weight, model.proj.lora_B["default"].weight
    assert a.shape == (8, 512)  # PEFT stores A^T of the reference's (in, r)
    assert a.abs().max() <= bound and a.abs().max() > 0.98 * bound  # U(-bound, bound)
    assert a.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(b) == 0


def test_reference_a_is_the_reference_codes_draw():
    # with the global RNG seeded alike, the reference's own LoRALayer draws exactly our A
    seed = module_seed(3, "proj")
    torch.manual_seed(seed)
    oracle = LoRALayer(40, 24, 4, 1.0)
    assert torch.equal(reference_lora_a(40, 4, seed), oracle.A.detach())
    model = lora(nn.Linear(40, 24), rank=4, init="reference", seed=3)
    assert torch.equal(model.proj.lora_A["default"].weight.T, oracle.A.detach())


def test_reference_init_uses_no_global_rng():
    torch.manual_seed(0)
    a = lora(nn.Linear(40, 24), 4, "reference").proj.lora_A["default"].weight
    torch.manual_seed(1)
    b = lora(nn.Linear(40, 24), 4, "reference").proj.lora_A["default"].weight
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_reference_init_is_identity_and_per_module(name):
    lm = load_model(name)
    model = copy.deepcopy(lm.model)
    cfg = parse_method({"method": "lora", "rank": 4, "init": "reference"}, "m")
    names = ADAPTERS.get("lora").attach(model, auto_targets(model), cfg.options, 0, "m")
    x = torch.tensor([lm.tokenizer("a test sentence, with words").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, lm.model(x).logits, atol=1e-6, rtol=1e-6)
    for n in names:  # Conv1D (GPT-2) and Linear alike: A^T of an (in, r) reference draw
        a = model.get_submodule(n).lora_A["default"].weight
        assert torch.equal(a.T, reference_lora_a(a.shape[1], 4, module_seed(0, n)))


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_reference_init_follows_the_reference_module_through_adamw(kind, alpha):
    """Five AdamW steps of our PEFT LoRA (init reference) and of the reference's LinearWithLoRA
    from the same A: the same effective weights and outputs at every step."""
    torch.manual_seed(0)
    n_in, n_out, rank, lr = 24, 16, 4, 1e-2
    base = nn.Linear(n_in, n_out) if kind == "linear" else Conv1D(n_out, n_in)
    if kind == "conv1d":
        nn.init.normal_(base.bias)
        base.in_features, base.out_features = n_in, n_out  # what the reference's wrapper reads
    ours = lora(base, rank, "reference", alpha)
    oracle = LinearWithLoRA(copy.deepcopy(base), rank, alpha)
    oracle.linear.requires_grad_(False)
    with torch.no_grad():
        oracle.lora.A.copy_(ours.proj.lora_A["default"].weight.T)
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    opt_ref = torch.optim.AdamW([oracle.lora.A, oracle.lora.B], lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    probe = torch.randn(3, n_in, generator=gen)
    for _step in range(5):
        x, y = torch.randn(6, n_in, generator=gen), torch.randn(6, n_out, generator=gen)
        for model, opt in ((ours, opt_ours), (oracle, opt_ref)):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        layer = ours.proj
        delta = alpha * (layer.lora_B["default"].weight @ layer.lora_A["default"].weight)  # (out, in)
        ref_delta = oracle.lora.alpha * (oracle.lora.A @ oracle.lora.B).T
        torch.testing.assert_close(delta, ref_delta, atol=1e-6, rtol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(ours(probe), oracle(probe), atol=1e-6, rtol=1e-5)
    assert delta.abs().max() > 1e-3  # it did move


# --- defaults follow the protocol ---------------------------------------------------------------
def _load(toy_data, write_config, **extra):
    return load_config(write_config(tiny_config(toy_data, **extra)))[0]


def test_protocol_defaults(toy_data, write_config):
    std = _load(toy_data, write_config)
    assert (std.methods[0].options.init, std.train.dropout, std.methods[0].display_label) == ("peft", "off", "lora-r2")
    paper = _load(toy_data, write_config, protocol="paper")
    assert (paper.methods[0].options.init, paper.train.dropout, paper.methods[0].display_label) == (
        "reference", "model", "lora-r2")
    resolved = resolved_dict(paper)
    assert resolved["methods"][0]["init"] == "reference" and resolved["train"]["dropout"] == "model"
    assert std.identity(std.methods[0], 0).run_key != paper.identity(paper.methods[0], 0).run_key


@pytest.mark.parametrize("protocol, init, label", [
    ("standard", "reference", "lora-r2-refinit"), ("standard", "peft", "lora-r2"),
    ("paper", "peft", "lora-r2-peftinit"), ("paper", "reference", "lora-r2"),
])
def test_an_explicit_init_is_kept_and_named_when_not_the_protocols(toy_data, write_config, protocol, init, label):
    cfg = _load(toy_data, write_config, protocol=protocol,
                methods=[{"method": "lora", "rank": 2, "init": init}], train={"dropout": "off"})
    assert (cfg.methods[0].options.init, cfg.methods[0].display_label, cfg.train.dropout) == (init, label, "off")
    again = parse_method(method_dict(cfg.methods[0]), "m")  # what export/resume read back
    assert (again.options.init, again.display_label) == (init, label)


def test_bare_yaml_off_and_bad_values(toy_data, write_config, tmp_path):
    path = tmp_path / "off.yaml"
    path.write_text(write_config(tiny_config(toy_data)).read_text() + "protocol: paper\n")
    assert load_config(path, ["train.dropout=off"])[0].train.dropout == "off"  # YAML reads off as false
    with pytest.raises(BenchError, match=r"^methods\[0\].init: expected 'peft' \| 'reference', got 'foo'$"):
        load_config(path, ["methods.0.init=foo"])
    with pytest.raises(BenchError, match=r"^train.dropout: expected 'model' \| 'off', got 'maybe'$"):
        load_config(path, ["train.dropout=maybe"])


# --- dropout --------------------------------------------------------------------------------------
def _train(dropout: str | None, seed: int = 0):
    lm = load_model("tiny-gpt2")
    model = copy.deepcopy(lm.model)
    torch.manual_seed(seed)  # PEFT draws A from the global RNG; dropout masks come from it too
    ADAPTERS.get("lora").attach(model, auto_targets(model), parse_method({"method": "lora", "rank": 2}, "m").options, 0, "m")
    heads = TaskHeads()
    heads.add("t", hidden_size(model), 2, seed=0)
    gen = torch.Generator().manual_seed(0)
    split = Split([torch.randint(0, 200, (int(n),), generator=gen).tolist() for n in torch.randint(4, 12, (16,))],
                  [i % 2 for i in range(16)])
    modes = []
    hook = backbone(model).register_forward_pre_hook(lambda m, _: modes.append(m.training))
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2, warmup_steps=0, dropout=dropout)
    task = PreparedTask("t", 2, split, split, TaskData(1, None, 16, 16, "", ""), KINDS.get("classification"))
    train_one(model, heads, task, cfg, Batching(torch.device("cpu"), lm.tokenizer.pad_token_id),
              Protocol.of("standard"), 0)
    hook.remove()
    lora_sd = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    return model, heads, split, modes, lora_sd


def test_dropout_model_trains_in_train_mode_and_evaluates_in_eval_mode():
    assert load_model("tiny-gpt2").model.config.resid_pdrop == 0.1  # GPT2Config's default
    model, heads, split, modes, trained = _train("model")
    assert modes and all(modes)
    assert not any(m.training for m in model.modules())  # back in eval mode after the stage
    _, _, _, off_modes, off = _train("off")
    assert modes and not any(off_modes)
    assert any(not torch.equal(trained[k], off[k]) for k in trained)  # dropout changed training
    again = _train("off")[4]
    assert all(torch.equal(v, again[k]) for k, v in off.items())  # off is deterministic
    model.train()  # whatever the caller left: evaluation runs without dropout, twice the same
    acc = [accuracy(model, heads, "t", split, 4, torch.device("cpu"), 0) for _ in range(2)]
    model.train()
    ppl = [perplexity(model, list(range(40, 140)), 32, 32, None, 2, torch.device("cpu")).perplexity
           for _ in range(2)]
    assert acc[0] == acc[1] and ppl[0] == ppl[1] and not model.training


def test_standard_training_is_in_eval_mode():
    _, _, _, modes, _ = _train(None)
    assert modes and not any(modes)


# --- the WikiText stream --------------------------------------------------------------------------
WIKI_ROWS = ["", " = Robert Boulter = \n", "", " Robert Boulter is an English film , television and theatre "
             "actor . He had a guest @-@ starring role on the television series The Bill in 2000 . \n", "",
             " = = Career = = \n", "", " In 2006 , Boulter starred alongside Whishaw in the play Citizenship . \n", ""]


@pytest.fixture
def wikitext(tmp_path, monkeypatch):
    import datasets
    from datasets import Dataset

    # datasets caches a local folder by its name, not its path: a private cache keeps other
    # tests' folders of the same name out
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    ds = Dataset.from_dict({"text": WIKI_ROWS})
    root = _hub_folder(tmp_path / "wikitext", {"wikitext-2-raw-v1": {"test": ds, "train": ds, "validation": ds}})
    monkeypatch.setattr(CORPORA.get("wikitext2"), "path", str(root))
    return root


@pytest.mark.parametrize("protocol", ["standard", "paper"])
def test_wikitext_stream(toy_data, write_config, wikitext, tmp_path, protocol):
    cfg = _load(toy_data, write_config, protocol=protocol,
                perplexity={"corpus": "wikitext2", "max_tokens": 100000, "window": 128, "stride": 128})
    ctx = prepare(cfg, RunEvents())
    tok = load_model("tiny-gpt2").tokenizer
    if protocol == "paper":
        # code/utils.py: txt = [s for s in txt if s != '']; txt = "".join(txt); then
        # tokenizer(text, truncation=True, padding=True, max_length=max_len) (GPT-2: max_len)
        txt = "".join([s for s in WIKI_ROWS if s != ""])
        expected = tok(txt, return_tensors="pt", truncation=True, padding=True,
                       max_length=cfg.train.max_length).input_ids[0].tolist()
    else:  # the Hugging Face perplexity guide's joining, up to max_tokens
        expected = tok("\n\n".join(WIKI_ROWS), add_special_tokens=False).input_ids
    assert ctx.corpus_tokens == expected
    assert len(expected) == (cfg.train.max_length if protocol == "paper" else len("\n\n".join(WIKI_ROWS)))


# --- padding side ---------------------------------------------------------------------------------
def test_collate_pads_on_either_side():
    split = Split([[5, 6, 7], [8]], [0, 1])
    right = collate(split, [0, 1], 0, torch.device("cpu"))
    left = collate(split, [0, 1], 0, torch.device("cpu"), "left")
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and right["attention_mask"][1].tolist() == [1, 0, 0]
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]] and left["attention_mask"][1].tolist() == [0, 0, 1]


def test_pooling_on_left_and_right_padded_batches():
    # Llama's rotary positions are relative, so a left-padded row computes what a right-padded one
    # does (GPT-2's absolute positions would shift; its tokenizer pads right, as the paper's did)
    lm = load_model("tiny-llama")
    heads = TaskHeads()
    heads.add("t", hidden_size(lm.model), 3, seed=0)
    gen = torch.Generator().manual_seed(0)
    split = Split([torch.randint(0, 200, (n,), generator=gen).tolist() for n in (5, 9, 3, 7)], [0, 1, 2, 0])
    logits = {}
    for side in ("right", "left"):
        b = collate(split, [0, 1, 2, 3], lm.tokenizer.pad_token_id, torch.device("cpu"), side)
        with torch.no_grad():
            for pooling in ("last", "final"):
                logits[side, pooling] = classify(lm.model, heads, "t", b["input_ids"], b["attention_mask"], pooling)
    torch.testing.assert_close(logits["left", "last"], logits["right", "last"], atol=1e-5, rtol=1e-5)
    assert torch.equal(logits["left", "final"], logits["left", "last"])  # position -1 is the last real token
    assert not torch.allclose(logits["right", "final"], logits["right", "last"])  # ... but a pad when right-padded
    acc = {s: accuracy(lm.model, heads, "t", split, 4, torch.device("cpu"), lm.tokenizer.pad_token_id,
                       padding_side=s) for s in ("left", "right")}
    assert acc["left"] == acc["right"]


def test_paper_protocol_keeps_the_tokenizers_padding_side(toy_data, write_config, tmp_path):
    lm = load_model("tiny-llama")
    folder = tmp_path / "left-llama"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["padding_side"] = "left"  # a tokenizer that pads left (Llama/Mistral/Gemma classes do)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_model(str(folder), padding_side=None).tokenizer.padding_side == "left"
    assert load_model(str(folder)).tokenizer.padding_side == "right"
    for protocol, side in (("standard", "right"), ("paper", "left")):
        cfg = _load(toy_data, write_config, model=str(folder), protocol=protocol, perplexity=None)
        assert prepare(cfg, RunEvents()).batching.padding_side == side
