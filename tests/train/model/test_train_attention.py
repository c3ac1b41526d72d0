"""Padding-free attention: packed sequences never attend to each other, on every CPU-testable path."""

from __future__ import annotations

import pytest
import torch

from sftdata_train.model import attention
from sftdata_train.model.attention import (
    ATTN_NAME,
    block_causal_mask,
    cu_seq_lens_from_position_ids,
    resolve_backend,
    varlen_causal_attention,
)


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    attention.set_backend("auto")


def test_offsets_and_mask():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    cu = cu_seq_lens_from_position_ids(pos)
    assert cu.tolist() == [0, 3, 5, 9] and cu.dtype == torch.int32
    m = block_causal_mask(cu, 9)[0, 0]
    assert m.shape == (9, 9)
    assert m[4].tolist() == [False, False, False, True, True, False, False, False, False]
    assert m[8].tolist() == [False] * 5 + [True] * 4


def test_backend_resolution_on_cpu():
    assert resolve_backend(torch.device("cpu"), torch.bfloat16, "auto") == "sdpa"
    assert resolve_backend(torch.device("cpu"), torch.float32, "varlen") == "sdpa"
    assert resolve_backend(torch.device("cpu"), torch.float32, "flex") == "flex"
    assert attention.has_torch_varlen()  # torch >= 2.10 ships torch.nn.attention.varlen


def _reference(q, k, v, cu):
    """Each sequence on its own with plain causal SDPA."""
    outs = []
    rep = q.shape[1] // k.shape[1]
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qq = q[a:b].transpose(0, 1)
        kk = k[a:b].transpose(0, 1).repeat_interleave(rep, 0)
        vv = v[a:b].transpose(0, 1).repeat_interleave(rep, 0)
        outs.append(torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=True).transpose(0, 1))
    return torch.cat(outs)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_varlen_matches_per_sequence(backend):
    g = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 5, 6, 19, 32], dtype=torch.int32)
    q = torch.randn(32, 4, 8, generator=g)
    k = torch.randn(32, 2, 8, generator=g)
    v = torch.randn(32, 2, 8, generator=g)
    with torch.no_grad():  # flex has no CPU backward; sdpa is also checked with grads below
        out = varlen_causal_attention(q, k, v, cu, 13, backend=backend)
    assert out.shape == (32, 4, 8)
    assert torch.allclose(out, _reference(q, k, v, cu), atol=1e-5)


def _tiny_model():
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=ATTN_NAME, dtype=torch.float32)


def test_packed_row_equals_sequences_alone():
    """Hidden states of a packed row = those of each sequence run alone; changing one sequence
    leaves the others' outputs untouched (no cross-sequence attention)."""
    model = _tiny_model().eval()
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, 101, (n,), generator=g) for n in (7, 3, 11)]
    ids = torch.cat(seqs)[None]
    pos = torch.cat([torch.arange(len(s)) for s in seqs])[None]
    cu = torch.tensor([0, 7, 10, 21], dtype=torch.int32)
    with torch.no_grad():
        packed = model.model(input_ids=ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                             max_length_q=11, max_length_k=11, use_cache=False).last_hidden_state[0]
        alone = torch.cat([model.model(input_ids=s[None], use_cache=False).last_hidden_state[0] for s in seqs])
        # the offsets can also be derived from position_ids alone
        derived = model.model(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state[0]
        ids2 = ids.clone()
        ids2[0, 7:10] = (ids2[0, 7:10] + 1) % 101  # change the middle sequence only
        changed = model.model(input_ids=ids2, position_ids=pos, cu_seq_lens_q=cu, max_length_q=11,
                              use_cache=False).last_hidden_state[0]
    assert torch.allclose(packed, alone, atol=1e-5)
    assert torch.allclose(derived, packed, atol=1e-6)
    assert torch.allclose(changed[:7], packed[:7], atol=1e-6) and torch.allclose(changed[10:], packed[10:], atol=1e-6)
    assert not torch.allclose(changed[7:10], packed[7:10])


def test_padding_free_rejects_attention_mask():
    model = _tiny_model()
    with pytest.raises(ValueError, match="padding-free"):
        attention.sftdata_varlen_attention_forward(
            model.model.layers[0].self_attn, torch.zeros(1, 4, 3, 8), torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8),
            torch.ones(1, 1, 3, 3, dtype=torch.bool),
        )


def test_long_rows_use_per_sequence_path(monkeypatch):
    monkeypatch.setattr(attention, "DENSE_MASK_MAX_TOKENS", 8)
    g = torch.Generator().manual_seed(1)
    cu = torch.tensor([0, 5, 6, 19, 32], dtype=torch.int32)
    q = torch.randn(32, 4, 8, generator=g, requires_grad=True)
    k = torch.randn(32, 2, 8, generator=g)
    v = torch.randn(32, 2, 8, generator=g)
    out = varlen_causal_attention(q, k, v, cu, 13, backend="sdpa")
    assert torch.allclose(out, _reference(q, k, v, cu), atol=1e-5)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
