"""The SFT loss: a hand-computed seed example, and equality with transformers' own loss."""

from __future__ import annotations

import math

import pytest
import torch

from sftdata_train.loss import (
    IGNORE_INDEX,
    SFTLossModel,
    count_trained_tokens,
    cross_entropy_sum_reference,
    linear_cross_entropy_sum,
    shift_labels,
    sft_loss_sum,
)



# --------------------------------------------------------------------------- the seed example
# Vocabulary (6 words):       0 "The"  1 "cat"  2 "sat"  3 "on"  4 "mat"  5 "<eos>"
# Sequence "The cat sat on" = [0, 1, 2, 3]; labels = [-100, 1, 2, 3] (HF unshifted convention).
# The model's next-token distribution at each position (rows sum to 1):
#
#   after "The"        : The .05  cat .70  sat .10  on .05  mat .05  <eos> .05   target cat -> p = 0.70
#   after "The cat"    : The .02  cat .03  sat .80  on .05  mat .05  <eos> .05   target sat -> p = 0.80
#   after "The cat sat": The .05  cat .05  sat .05  on .65  mat .10  <eos> .10   target on  -> p = 0.65
#
# The logits are log(p) + 2 (softmax ignores a per-row constant, so softmax(logits) = p).
# Cross-entropy = -log p(target):
#   -ln 0.70 = 0.35667,  -ln 0.80 = 0.22314,  -ln 0.65 = 0.43078
#   mean over the 3 trained tokens = (0.35667 + 0.22314 + 0.43078) / 3 = 1.01060 / 3 = 0.33687 ≈ 0.337
PROBS = torch.tensor(
    [
        [0.05, 0.70, 0.10, 0.05, 0.05, 0.05],
        [0.02, 0.03, 0.80, 0.05, 0.05, 0.05],
        [0.05, 0.05, 0.05, 0.65, 0.10, 0.10],
    ],
    dtype=torch.float64,
)
LOGITS = torch.log(PROBS) + 2.0
INPUT_IDS = torch.tensor([[0, 1, 2, 3]])
LABELS = torch.tensor([[IGNORE_INDEX, 1, 2, 3]])


def test_seed_example_by_hand():
    assert torch.allclose(PROBS.sum(1), torch.ones(3, dtype=torch.float64))
    by_hand = (-math.log(0.70) - math.log(0.80) - math.log(0.65)) / 3
    assert round(by_hand, 3) == 0.337
    # textbook cross-entropy on the (B, T, V) logits; the last position has no target
    logits = torch.cat([LOGITS, torch.zeros(1, 6, dtype=torch.float64)])[None]
    ref = cross_entropy_sum_reference(logits, LABELS) / count_trained_tokens(LABELS)
    assert ref.item() == pytest.approx(by_hand, abs=1e-6)
    assert round(ref.item(), 3) == 0.337


def test_seed_example_through_our_loss():
    """Hidden states e_t and an LM head whose weight is the logits table: h_t @ W.T = logits row t."""
    hidden = torch.zeros(1, 4, 3, dtype=torch.float64)
    hidden[0, :3] = torch.eye(3, dtype=torch.float64)
    hidden[0, 3] = 123.0  # the last position has no target: must not count
    head = torch.nn.Linear(3, 6, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(LOGITS.t())
    hidden.requires_grad_(True)
    loss_sum, n = sft_loss_sum(hidden, LABELS, head, chunk_size=2)
    assert int(n) == 3
    assert (loss_sum / n).item() == pytest.approx(0.33687, abs=1e-5)
    assert round((loss_sum / n).item(), 3) == 0.337
    (loss_sum / n).backward()
    # d mean CE / d logits_t = (p_t - onehot_t) / 3, so d/d h_t = W (p_t - onehot_t) / 3
    onehot = torch.nn.functional.one_hot(torch.tensor([1, 2, 3]), 6).double()
    expect = (PROBS - onehot) @ head.weight.detach() / 3
    assert torch.allclose(hidden.grad[0, :3], expect, atol=1e-10)
    assert torch.all(hidden.grad[0, 3] == 0)


def test_shift_and_count():
    labels = torch.tensor([[IGNORE_INDEX, 5, IGNORE_INDEX, 7]])
    assert shift_labels(labels).tolist() == [[5, IGNORE_INDEX, 7, IGNORE_INDEX]]
    assert count_trained_tokens(labels) == 2


# --------------------------------------------------------------------------- chunked head + CE
@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_linear_ce_matches_dense(chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 11, (7,), generator=g)
    ours = linear_cross_entropy_sum(hidden, weight, targets, bias=bias, chunk_size=chunk)
    ours.mul(0.5).backward()
    grads = [hidden.grad.clone(), weight.grad.clone()] + ([bias.grad.clone()] if with_bias else [])
    for t in [hidden, weight] + ([bias] if with_bias else []):
        t.grad = None
    dense = torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight, bias), targets, reduction="sum")
    dense.mul(0.5).backward()
    assert ours.item() == pytest.approx(dense.item(), rel=1e-6)
    ref = [hidden.grad, weight.grad] + ([bias.grad] if with_bias else [])
    for a, b in zip(grads, ref):
        assert torch.allclose(a.double(), b, atol=1e-6)
    with torch.no_grad():  # forward-only path (eval)
        assert linear_cross_entropy_sum(hidden, weight, targets, bias=bias, chunk_size=chunk).item() == pytest.approx(
            dense.item(), rel=1e-6
        )


def test_empty_selection_gives_zero_and_grads():
    hidden = torch.randn(0, 4, requires_grad=True)
    weight = torch.randn(6, 4, requires_grad=True)
    loss = linear_cross_entropy_sum(hidden, weight, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(weight.grad == 0)


def test_never_materialises_full_logits(monkeypatch):
    """The head runs on at most chunk_size rows at a time, and only on trained rows."""
    seen = []
    real_linear = torch.nn.functional.linear

    def spy(x, w, b=None):
        seen.append(tuple(x.shape))
        return real_linear(x, w, b)

    monkeypatch.setattr("sftdata_train.loss.F.linear", spy)
    hidden = torch.randn(1, 50, 8, requires_grad=True)
    labels = torch.full((1, 50), IGNORE_INDEX)
    labels[0, 20:45] = 1  # 25 trained labels -> 24 positions predict them (position 19..43)
    head = torch.nn.Linear(8, 13, bias=False)
    loss, n = sft_loss_sum(hidden, labels, head, chunk_size=10)
    assert int(n) == 25
    assert seen == [(10, 8), (10, 8), (5, 8)]


# --------------------------------------------------------------------------- vs transformers
def _tiny_qwen3(attn="sdpa"):
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, tie_word_embeddings=True, pad_token_id=0,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)


def _padded_batch():
    g = torch.Generator().manual_seed(1)
    lengths = [9, 5, 7]
    T = max(lengths)
    input_ids = torch.zeros(3, T, dtype=torch.long)
    labels = torch.full((3, T), IGNORE_INDEX)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids = torch.randint(1, 97, (n,), generator=g)
        input_ids[b, :n] = ids
        mask[b, :n] = 1
        labels[b, n // 2 : n] = ids[n // 2 :]  # a prompt (masked) then a trained completion
    return input_ids, labels, mask


def test_equals_transformers_loss_on_padded_batch():
    model = _tiny_qwen3()
    input_ids, labels, mask = _padded_batch()
    ref = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    ref.backward()
    ref_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    wrapper = SFTLossModel(model, chunk_size=4)
    loss_sum, n = wrapper(input_ids=input_ids, labels=labels, attention_mask=mask)
    ours = loss_sum / n
    assert int(n) == count_trained_tokens(labels)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    ours.backward()
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[k], atol=1e-6), k


def test_bf16_autocast_close_to_fp32():
    model = _tiny_qwen3()
    input_ids, labels, mask = _padded_batch()
    wrapper = SFTLossModel(model)
    with torch.no_grad():
        s32, n = wrapper(input_ids=input_ids, labels=labels, attention_mask=mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s16, _ = wrapper(input_ids=input_ids, labels=labels, attention_mask=mask)
    assert s16.dtype == torch.float32
    assert (s16 / n).item() == pytest.approx((s32 / n).item(), rel=2e-2)
