"""Pooling, batching, perplexity against hand-computed and reference values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from curlora_bench.run.data import Split, batches, collate
from curlora_bench.run.evaluate import accuracy, perplexity, sliding_windows
from curlora_bench.sources.heads import TaskHeads, pool
from curlora_bench.sources.models import load_model


def test_pool_picks_last_real_token_with_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).reshape(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, mask, "last").flatten().tolist() == [1.0, 7.0]
    # the paper's reading: position -1, a pad token for the shorter row
    assert pool(hidden, mask, "final").flatten().tolist() == [3.0, 7.0]
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]


def test_batched_accuracy_equals_one_at_a_time():
    lm = load_model("tiny-llama")
    heads = TaskHeads()
    heads.add("t", 32, 3, seed=0)
    texts = ["short", "a much longer sentence than the others here", "mid length one", "x", "two words"]
    ids = [lm.tokenizer(t).input_ids for t in texts]
    split = Split(ids, [0, 1, 2, 0, 1])
    pad = lm.tokenizer.pad_token_id
    batched = accuracy(lm.model, heads, "t", split, 4, torch.device("cpu"), pad)
    single = accuracy(lm.model, heads, "t", split, 1, torch.device("cpu"), pad)
    assert batched == single
    # and padding does not change the pooled logits
    from curlora_bench.sources.heads import classify

    b = collate(split, [0, 1], pad, torch.device("cpu"))
    together = classify(lm.model, heads, "t", b["input_ids"], b["attention_mask"])
    alone = classify(lm.model, heads, "t", torch.tensor([ids[0]]), torch.ones(1, len(ids[0]), dtype=torch.long))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


def test_batches_cover_every_index_once():
    lengths = [5, 3, 9, 1, 7, 2, 8]
    for shuffle in (False, True):
        out = batches(lengths, 3, shuffle, torch.Generator().manual_seed(0))
        assert sorted(i for b in out for i in b) == list(range(7))
    eval_order = [i for b in batches(lengths, 3, False) for i in b]
    assert [lengths[i] for i in eval_order] == sorted(lengths)


class _Bigram(nn.Module):
    """logits(next | current token) = M[current]: a model whose perplexity is known by hand."""

    base_model_prefix = "body"

    def __init__(self, M: torch.Tensor):
        super().__init__()
        V = M.shape[0]
        self.V = V
        self.head = nn.Linear(V, V, bias=False)
        self.head.weight.data = M.T.clone()  # one_hot(x) @ M  ==  head(one_hot(x))
        self.config = SimpleNamespace()
        outer = self

        class Body(nn.Module):
            def forward(self, input_ids, attention_mask=None, use_cache=None):  # as a transformers body
                return SimpleNamespace(last_hidden_state=nn.functional.one_hot(input_ids, outer.V).float())

        self.body = Body()

    def get_output_embeddings(self):
        return self.head


def test_perplexity_known_logits():
    M = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    logp = torch.log_softmax(M, dim=-1)
    tokens = [0, 1, 2, 2, 0, 1]
    model = _Bigram(M)
    # window 3, stride 3, no BOS: windows [0,1,2] [2,0,1]; the first token of each is unscored
    res = perplexity(model, tokens, 3, 3, None, 4, torch.device("cpu"))
    pairs = [(0, 1), (1, 2), (2, 0), (0, 1)]
    expected = -sum(float(logp[a, b]) for a, b in pairs) / len(pairs)
    assert res.tokens == 4
    assert math.isclose(res.nll, expected, rel_tol=1e-6)
    assert math.isclose(res.perplexity, math.exp(expected), rel_tol=1e-6)
    # window 4, stride 2: every token after the first is scored exactly once, with context
    res2 = perplexity(model, tokens, 4, 2, None, 4, torch.device("cpu"))
    pairs2 = list(zip(tokens[:-1], tokens[1:]))
    expected2 = -sum(float(logp[a, b]) for a, b in pairs2) / len(pairs2)
    assert res2.tokens == 5 and math.isclose(res2.nll, expected2, rel_tol=1e-6)
    # with a BOS (token 2) every corpus token is scored, the first one from BOS
    res3 = perplexity(model, tokens, 4, 4, 2, 4, torch.device("cpu"))
    assert res3.tokens == len(tokens)
    pairs3 = [(2, 0), (0, 1), (1, 2), (2, 2), (2, 0), (0, 1)]
    assert math.isclose(res3.nll, -sum(float(logp[a, b]) for a, b in pairs3) / 6, rel_tol=1e-6)


def test_sliding_windows_score_each_token_once():
    toks = list(range(100, 137))
    for window, stride, bos in [(8, 8, None), (8, 3, None), (8, 8, 1), (8, 5, 1), (50, 50, None)]:
        wins = sliding_windows(toks, window, stride, bos)
        scored = [t for w in wins for t in w.ids[w.first_target:]]
        assert len(scored) == len(set(scored))
        assert all(len(w.ids) <= window for w in wins)
        assert scored[-1] == toks[-1]


def test_perplexity_matches_hf_loss_reference():
    """The fast path (body + LM head on scored positions, batched) vs the model's own loss."""
    lm = load_model("tiny-gpt2")
    torch.manual_seed(0)
    tokens = torch.randint(0, 250, (200,)).tolist()
    res = perplexity(lm.model, tokens, 50, 50, None, 3, torch.device("cpu"))
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, 200, 50):
            x = torch.tensor([tokens[start : start + 50]])
            out = lm.model(x, labels=x)
            total += float(out.loss) * (x.shape[1] - 1)
            count += x.shape[1] - 1
    assert res.tokens == count
    assert math.isclose(res.nll, total / count, rel_tol=1e-5)
