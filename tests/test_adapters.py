"""Adapters: identity at init, trainable tensors, CURLoRA's sampling, save/load, determinism."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from curlora_bench.adapters import ADAPTERS, adapter_of
from curlora_bench.adapters.curlora_layer import CURLoRALayer, cur_indices, sampling_probabilities
from curlora_bench.config.methods import parse_method
from curlora_bench.sources.heads import TaskHeads
from curlora_bench.sources.models import auto_targets, hidden_size, load_model

METHODS = [
    {"method": "lora", "rank": 4},
    {"method": "curlora", "rank": 4},
    {"method": "curlora", "rank": 4, "sampling": "uniform", "replacement": False},
    {"method": "full"},
    {"method": "head-only"},
    {"method": "peft", "type": "DORA", "r": 4},
    {"method": "peft", "type": "VERA", "r": 4},
    {"method": "peft", "type": "PISSA", "r": 4, "lora_alpha": 4},
    {"method": "curlora", "rank": 4, "cr": "random"},
    {"method": "curlora", "rank": 4, "regime": "joint"},
    {"method": "o-lora", "rank": 4},
    {"method": "inflora", "rank": 4},
    {"method": "i-lora", "rank": 4},
]


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def base(request):
    return load_model(request.param)


def attach(lm, spec, seed=0):
    cfg = parse_method(spec, "methods[0]")
    model = copy.deepcopy(lm.model)
    names = adapter_of(cfg).attach(model, auto_targets(model), cfg.options, seed, "methods[0]")
    return model, names, cfg


@pytest.mark.parametrize("spec", METHODS, ids=lambda s: s.get("type", s["method"]))
def test_identity_at_init(base, spec):
    x = torch.tensor([base.tokenizer("a test sentence, with words").input_ids])
    model, _, _ = attach(base, spec)
    with torch.no_grad():
        # PiSSA moves the top singular directions into A/B: equal up to float rounding
        torch.testing.assert_close(model(x).logits, base.model(x).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", METHODS, ids=lambda s: s.get("type", s["method"]))
def test_only_adapter_tensors_train(base, spec):
    model, names, cfg = attach(base, spec)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if cfg.method == "head-only":
        assert trainable == []
        return
    assert trainable, "an adapter must train something"
    markers = {"lora": "lora_", "curlora": "curlora_U", "peft": ("lora_", "vera_lambda"), "o-lora": "tasklora_",
               "inflora": "tasklora_B", "i-lora": ("ilora_A", "ilora_B")}
    for n in trainable:
        assert any(n.startswith(m + ".") for m in names), n
        if cfg.method == "full":
            assert n.endswith(("weight", "bias"))
        else:
            m = markers[cfg.method]
            assert any(k in n for k in ((m,) if isinstance(m, str) else m)), n


def test_curlora_parameter_count(base):
    model, names, _ = attach(base, {"method": "curlora", "rank": 4})
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 16 * len(names)


def test_curlora_c_and_r_are_columns_and_rows_of_w(base):
    model, names, _ = attach(base, {"method": "curlora", "rank": 4})
    for name in names:
        layer = model.get_submodule(name)
        w = layer.base_layer.weight
        for k, c in enumerate(layer.curlora_col_idx):
            assert torch.equal(layer.curlora_C[:, k], w[:, c])
        for k, r in enumerate(layer.curlora_row_idx):
            assert torch.equal(layer.curlora_R[k, :], w[r, :])


def test_inverted_probabilities_hand_made():
    # column norms^2: [1, 4, 0.25*... ] -> W columns (1,0), (0,2), (1,1)
    w = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
    norms = w.pow(2).sum(0)  # [1, 4, 2], total 7
    p = torch.tensor([1 / 7, 4 / 7, 2 / 7], dtype=torch.float64)
    torch.testing.assert_close(sampling_probabilities(norms, "normal", 0.0), p)
    inv = 1 / p
    torch.testing.assert_close(sampling_probabilities(norms, "inverse", 0.0), inv / inv.sum())
    # [7, 7/4, 7/2] / (49/4) = [4/7, 1/7, 2/7]
    torch.testing.assert_close(
        sampling_probabilities(norms, "inverse", 0.0), torch.tensor([4 / 7, 1 / 7, 2 / 7], dtype=torch.float64)
    )
    smoothed = 1 / (p + 1e-3)
    torch.testing.assert_close(sampling_probabilities(norms, "inverse", 1e-3), smoothed / smoothed.sum())
    torch.testing.assert_close(sampling_probabilities(norms, "uniform", 0.0), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_inverse_sampling_prefers_small_columns():
    w = torch.ones(4, 50)
    w[:, :25] *= 10.0  # large-norm columns
    cols, _, q, _ = cur_indices(w, 40, "inverse", 0.0, True, seed=0)
    assert (cols >= 25).float().mean() > 0.9
    assert q[30] > q[0]


def test_factored_forward_equals_materialised(base):
    model, names, _ = attach(base, {"method": "curlora", "rank": 4, "alpha": 2.0})
    layer = model.get_submodule(names[0])
    with torch.no_grad():
        layer.curlora_U.normal_()
    x = torch.randn(3, 5, layer.base_layer.weight.shape[0 if layer.transposed else 1])
    delta = layer.delta_weight()
    expected = layer.base_layer(x) + (x @ delta if layer.transposed else x @ delta.T)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_same_seed_same_c_r_and_numbers(base):
    a, names, _ = attach(base, {"method": "curlora", "rank": 4}, seed=7)
    b, _, _ = attach(base, {"method": "curlora", "rank": 4}, seed=7)
    c, _, _ = attach(base, {"method": "curlora", "rank": 4}, seed=8)
    la, lb, lc = (m.get_submodule(names[0]) for m in (a, b, c))
    assert torch.equal(la.curlora_col_idx, lb.curlora_col_idx)
    assert torch.equal(la.curlora_C, lb.curlora_C) and torch.equal(la.curlora_R, lb.curlora_R)
    assert not (torch.equal(la.curlora_col_idx, lc.curlora_col_idx) and torch.equal(la.curlora_row_idx, lc.curlora_row_idx))
    # different modules get different draws from the same run seed
    if len(names) > 1:
        l2 = a.get_submodule(names[1])
        assert not torch.equal(la.curlora_col_idx, l2.curlora_col_idx) or la.curlora_C.shape != l2.curlora_C.shape


def test_c_r_survive_save_load(base, tmp_path):
    model, names, cfg = attach(base, {"method": "curlora", "rank": 4}, seed=1)
    with torch.no_grad():
        for n in names:
            model.get_submodule(n).curlora_U.normal_()
    adapter = ADAPTERS.get("curlora")
    sd = adapter.state_dict(model, names, cfg.options)
    assert any(k.endswith("curlora_C") for k in sd) and any(k.endswith("curlora_R") for k in sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "a.safetensors")
    fresh, _, _ = attach(base, {"method": "curlora", "rank": 4}, seed=99)  # other C/R
    missing, unexpected = fresh.load_state_dict(load_file(tmp_path / "a.safetensors"), strict=False)
    assert not unexpected
    x = torch.tensor([base.tokenizer("hello there").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).logits, model(x).logits)


def test_rank_larger_than_matrix_is_refused(base):
    from curlora_bench.core.errors import BenchError

    with pytest.raises(BenchError, match="rank"):
        attach(base, {"method": "curlora", "rank": 4096})


def test_heads_are_seeded(base):
    h1, h2 = TaskHeads(), TaskHeads()
    a = h1.add("t", hidden_size(base.model), 3, seed=5)
    b = h2.add("t", hidden_size(base.model), 3, seed=5)
    assert torch.equal(a.weight, b.weight)


def test_curlora_layer_conv1d_orientation():
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(6, 4)  # in 4, out 6; weight stored (4, 6)
    torch.nn.init.normal_(conv.weight)
    cols, rows, q1, q2 = cur_indices(conv.weight, 2, "inverse", 1e-3, True, 0)
    layer = CURLoRALayer(conv, 2, 1.0, cols, rows, q1, q2)
    assert layer.delta_weight().shape == conv.weight.shape


def test_osf_follows_its_continual_protocol():
    """Between tasks: the update is merged, the SVD recomputed on the merged weights and the
    preserved rank grown by rank_step; the function the model computes does not change."""
    lm = load_model("tiny-llama")
    model, names, cfg = attach(lm, {"method": "peft", "type": "OSF", "effective_rank": 2, "rank_step": 3})
    adapter = adapter_of(cfg)
    assert adapter is ADAPTERS.get("osf") and adapter is not ADAPTERS.get("peft")  # its own module, same spelling
    assert cfg.options.stage_rank(1) == 2 and cfg.options.stage_rank(3) == 8
    x = torch.tensor([lm.tokenizer("a test sentence, with words").input_ids])
    with torch.no_grad():  # an identity at init (its delta is U_low S_low V_low minus their init)
        torch.testing.assert_close(model(x).logits, lm.model(x).logits, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # as if stage 1 trained
        for n, p in model.named_parameters():
            if "osf_svd_params" in n:
                p.add_(0.05 * torch.randn_like(p))
        before = model(x).logits
        base_before = {n: model.get_submodule(n).base_layer.weight.clone() for n in names}
    stage = SimpleNamespace(position=2)  # the second task OSF learns
    adapter.before_stage(SimpleNamespace(model=model, modules=names, method=cfg.options, stage=stage, where="m"))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, before, atol=1e-4, rtol=1e-4)
    for n in names:
        layer = model.get_submodule(n)
        assert layer.effective_rank["default"] == 5  # 2 + 3
        assert not torch.equal(layer.base_layer.weight, base_before[n])  # stage 1 merged into the base
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("osf_svd_params" in n for n in trainable)
    with torch.no_grad():  # as if stage 2 trained
        for n, p in model.named_parameters():
            if "osf_svd_params" in n:
                p.add_(0.05 * torch.randn_like(p))
    # a resumed run rebuilds the stage-2 structure before loading the stage-2 tensors
    fresh, _, _ = attach(lm, {"method": "peft", "type": "OSF", "effective_rank": 2, "rank_step": 3})
    saved = adapter.state_dict(model, names, cfg.options)
    adapter.structure_for(fresh, names, cfg.options, 2, "m", saved)
    assert {k: v.shape for k, v in adapter.state_dict(fresh, names, cfg.options).items()} == {k: v.shape for k, v in saved.items()}
    fresh.load_state_dict(saved, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).logits, model(x).logits)


def test_osf_is_its_own_adapter_under_the_peft_spelling():
    """`{method: peft, type: OSF}` is parsed and run by adapters/osf.py and stored as written, so its
    run keys are those of the runs made before OSF had a module; `{method: osf}` is the same entry."""
    from curlora_bench.config.identity import RunIdentity
    from curlora_bench.config.methods import method_dict
    from curlora_bench.core.errors import BenchError

    peft = parse_method({"method": "peft", "type": "OSF", "effective_rank": 2}, "m")
    short = parse_method({"method": "osf", "effective_rank": 2}, "m")
    assert adapter_of(peft) is adapter_of(short) is ADAPTERS.get("osf")
    assert method_dict(peft) == method_dict(short) == {"method": "peft", "label": "peft-osf-e2", "type": "OSF",
                                                       "rank_step": 2, "effective_rank": 2}
    assert RunIdentity.of({}, method_dict(peft), 0).run_key == RunIdentity.of({}, method_dict(short), 0).run_key
    assert adapter_of(parse_method({"method": "peft", "type": "VERA", "r": 4}, "m")) is ADAPTERS.get("peft")
    with pytest.raises(BenchError, match=r"m\.rank_step: only OSF grows a preserved rank between tasks, not LORA"):
        parse_method({"method": "peft", "type": "LORA", "r": 4, "rank_step": 2}, "m")
    with pytest.raises(BenchError, match=r"m\.type: the osf method is PEFT type OSF, got 'VERA'"):
        parse_method({"method": "osf", "type": "VERA", "effective_rank": 2}, "m")
