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


# --------------------------------------------------------------------------- shift_labels
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 12), min_size=1, max_size=9), min_size=1, max_size=3), st.integers(1, 5))
def test_shift_labels_from_labels_is_the_labels_path(rows, chunk):
    """Built from the labels, shift_labels gives exactly the labels path (loss, count, gradients)."""
    width = max(len(r) for r in rows)
    labels = torch.full((len(rows), width), IGNORE_INDEX)
    for b, r in enumerate(rows):
        labels[b, : len(r)] = torch.tensor([IGNORE_INDEX if x < 0 else x for x in r])
    g = torch.Generator().manual_seed(len(rows) * 31 + width)
    hidden = torch.randn(len(rows), width, 6, generator=g, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(6, 13, bias=False).double()
    a, na = sft_loss_sum(hidden, labels, head, chunk_size=chunk)
    a.backward()
    grads = (hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad = head.weight.grad = None
    b, nb = sft_loss_sum(hidden, None, head, chunk_size=chunk, shift_labels=shift_labels(labels))
    b.backward()
    assert torch.equal(a, b) and int(na) == int(nb) == count_trained_tokens(labels)
    assert count_trained_tokens(shift_labels=shift_labels(labels)) == int(na)
    assert torch.equal(grads[0], hidden.grad) and torch.equal(grads[1], head.weight.grad)


def test_shift_labels_that_are_not_the_next_position():
    """A tree layout: position 1 predicts token 7 and position 3 predicts token 2 (not the next positions)."""
    logits = torch.randn(1, 4, 9, dtype=torch.float64)
    hidden = logits.clone().requires_grad_(True)  # identity head: hidden_t @ I = logits_t
    head = torch.nn.Linear(9, 9, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(9, dtype=torch.float64))
    shift = torch.tensor([[IGNORE_INDEX, 7, IGNORE_INDEX, 2]])
    loss, n = sft_loss_sum(hidden, None, head, shift_labels=shift)
    by_hand = -(torch.log_softmax(logits[0, 1], -1)[7] + torch.log_softmax(logits[0, 3], -1)[2])
    assert int(n) == 2 and loss.item() == pytest.approx(by_hand.item(), abs=1e-6)  # softmax runs in fp32
    with pytest.raises(ValueError, match="labels or shift_labels"):
        sft_loss_sum(hidden, None, head)
    with pytest.raises(ValueError, match="differ in shape"):
        sft_loss_sum(hidden, torch.zeros(1, 3, dtype=torch.long), head, shift_labels=shift)


def test_wrapper_and_step_accept_shift_labels(tmp_path):
    """SFTLossModel and Trainer.train_step (its trained-token count) take shift_labels from the batch."""
    from sftdata.collate.collators import PaddingFreeCollator
    from sftdata_train.loop.trainer import Trainer
    from sftdata_train.testing import prepare_dir, synthetic_conversations

    ds = prepare_dir(synthetic_conversations(8, seed=3), tmp_path / "p")
    batch = PaddingFreeCollator()([ds[i] for i in range(4)])
    cfg = dict(data=str(tmp_path / "p"), precision="fp32", progress_bar=False, max_steps=2, lr=1e-3, seed=1)
    plain = Trainer(dict(cfg, output_dir=str(tmp_path / "a")))
    shifted = Trainer(dict(cfg, output_dir=str(tmp_path / "b")))
    with_shift = dict(batch, shift_labels=shift_labels(batch["labels"]), labels=None)
    out_a, out_b = plain.train_step([batch]), shifted.train_step([with_shift])
    assert out_a.trained_tokens == out_b.trained_tokens == count_trained_tokens(batch["labels"])
    assert out_a.loss == out_b.loss and out_a.grad_norm == out_b.grad_norm


# --------------------------------------------------------------------------- lean LM head
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from sftdata_train import loss as loss_mod  # noqa: E402


class _BigAllocations(TorchDispatchMode):
    """Every op output (not in-place, not out=) with at least ``threshold`` elements: (op, numel, dtype, ptr)."""

    def __init__(self, threshold):
        super().__init__()
        self.threshold, self.seen = threshold, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._schema.name.split("::")[-1]
        mutating = name.endswith("_") or func._overloadname == "out" or func._schema.is_mutable
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and not mutating and t.numel() >= self.threshold:
                if not any(t.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()
                           for a in args if isinstance(a, torch.Tensor)):  # views of inputs allocate nothing
                    self.seen.append((name, t.numel(), t.dtype, t.untyped_storage().data_ptr()))
        return out


@pytest.mark.parametrize(
    "w_dtype, compute, expected",
    [
        # bf16-mixed on one device: fp32 master weight, bf16 matmuls -> one cast of W + one fp32 buffer
        (torch.float32, torch.bfloat16, [torch.bfloat16, torch.float32]),
        # fp32: the buffer only
        (torch.float32, torch.float32, [torch.float32]),
        # FSDP2 unsharded bf16 weight: fp32 accumulator, cast once to the weight's dtype in backward
        (torch.bfloat16, torch.bfloat16, [torch.float32, torch.bfloat16]),
    ],
)
def test_head_gradient_one_buffer_no_vocab_by_hidden_temporaries(monkeypatch, w_dtype, compute, expected):
    V, H, N, chunk = 512, 64, 120, 16  # 8 chunks; (chunk, V) logits and (N, H) are below V x H / 4
    monkeypatch.setattr(loss_mod, "WEIGHT_GRAD_SLICE_BYTES", V * H * 2 // 4)  # 4 vocab slices
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(N, H, generator=g).to(compute).requires_grad_(True)
    weight = (torch.randn(V, H, generator=g) * 0.05).to(w_dtype).requires_grad_(True)
    targets = torch.randint(0, V, (N,), generator=g)
    mode = _BigAllocations(V * H // 4)
    with mode:
        loss = linear_cross_entropy_sum(hidden, weight, targets, chunk_size=chunk, compute_dtype=compute)
        node = loss.grad_fn
        held = [t for t in node.grads if t is not None]
        assert len(node.saved_tensors) == 0
        assert [tuple(t.shape) for t in held if t.numel() >= V * H] == [(V, H)]  # graph holds one V x H buffer
        del held, node  # (a reference kept here would force autograd to copy the buffer)
        loss.backward()
    full = [(name, dt) for name, n, dt, _ in mode.seen if n >= V * H]
    assert [dt for _, dt in full] == expected, mode.seen  # never per chunk: 8 chunks would show 8+
    assert all(n <= V * H // 4 for _, n, _, _ in mode.seen if n < V * H)  # slices bounded as configured
    if w_dtype == torch.float32:  # the buffer became the gradient without a copy
        buffer_ptr = next(p for _, n, dt, p in mode.seen if n >= V * H and dt == torch.float32)
        assert weight.grad.untyped_storage().data_ptr() == buffer_ptr
    # and the numbers are those of the dense computation
    ref_w = weight.detach().float().requires_grad_(True)
    ref_h = hidden.detach().float().requires_grad_(True)
    torch.nn.functional.cross_entropy(ref_h @ ref_w.t(), targets, reduction="sum").backward()
    tol = 1e-5 if compute == torch.float32 else 3e-2
    assert torch.allclose(weight.grad.float(), ref_w.grad, atol=tol * ref_w.grad.abs().max())
    assert torch.allclose(hidden.grad.float(), ref_h.grad, atol=tol * ref_h.grad.abs().max())


def test_backward_twice_is_a_clear_error():
    hidden = torch.randn(5, 4, requires_grad=True)
    weight = torch.randn(7, 4, requires_grad=True)
    loss = linear_cross_entropy_sum(hidden, weight, torch.randint(0, 7, (5,)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()
