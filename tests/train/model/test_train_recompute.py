"""Activation checkpointing: the activation estimate against the tensors transformers' layers really
save, the plan against its definition, and ``auto`` end to end (CPU, with --memory-budget-gb)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata_train.model import attention
from sftdata_train.model.recompute import (
    LayerShape,
    checkpointed_layer_bytes,
    layer_activation_bytes,
    layers_to_checkpoint,
    plan,
)


class _FlashLike(torch.autograd.Function):
    """Saves what FlashAttention-style kernels save: q, k, v, out and an fp32 (heads, tokens) log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v):
        rep = q.shape[1] // k.shape[1]
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1).repeat_interleave(rep, 0), v.transpose(0, 1).repeat_interleave(rep, 0),
            is_causal=True,
        ).transpose(0, 1).contiguous()
        ctx.save_for_backward(q, k, v, out, torch.zeros(q.shape[1], q.shape[0]))
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - only the forward's saved tensors are measured
        raise NotImplementedError


def _saved_bytes_per_token(arch, dtype, tokens, monkeypatch):
    """Bytes of distinct storages one decoder layer saves for backward (parameters and the shared
    rotary cos/sin excluded), measured with saved_tensors_hooks."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    monkeypatch.setattr(attention, "varlen_causal_attention", lambda q, k, v, *a, **kw: _FlashLike.apply(q, k, v))
    size = dict(vocab_size=64, hidden_size=64, intermediate_size=160, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16)
    cfg = (Qwen3Config if arch == "qwen3" else LlamaConfig)(**size)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attention.ATTN_NAME).to(dtype)
    layer = model.model.layers[0]
    x = torch.randn(1, tokens, 64, dtype=dtype, requires_grad=True)
    pos = torch.arange(tokens)[None]
    cos, sin = model.model.rotary_emb(x, pos)
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    exclude |= {cos.untyped_storage().data_ptr(), sin.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t):
        st_ = t.untyped_storage()
        if st_.data_ptr() not in exclude:
            seen[st_.data_ptr()] = st_.nbytes()
        return t

    cu = torch.tensor([0, tokens], dtype=torch.int32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, position_embeddings=(cos, sin), position_ids=pos, cu_seq_lens_q=cu, max_length_q=tokens)
    return sum(seen.values()), LayerShape.from_model(model)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_estimate_equals_saved_tensors(arch, dtype, monkeypatch):
    measured, shape = _saved_bytes_per_token(arch, dtype, 96, monkeypatch)
    assert shape.qk_norm == (arch == "qwen3")
    assert layer_activation_bytes(shape, 96, dtype.itemsize) == measured


def test_estimate_for_qwen3_0_6b():
    """The figure the default plan uses for the GPU benchmark's model (28 layers, 8,192 tokens, bf16)."""
    shape = LayerShape(hidden=1024, intermediate=3072, n_heads=16, n_kv_heads=8, head_dim=128, qk_norm=True)
    per_token = layer_activation_bytes(shape, 1, 2)
    # norms + projections' inputs, q/k/v + output + lse, q/k norms, SwiGLU
    assert per_token == 2 * (8 * 1024 + 4) + (2 * 4096 + 2 * 2048 + 64) + (6 * 3072 + 4 * 24) + 8 * 3072 == 71848
    assert 28 * layer_activation_bytes(shape, 8192, 2) / 1e9 == pytest.approx(16.48, abs=0.01)
    assert checkpointed_layer_bytes(shape, 8192, 2) == 2 * 1024 * 8192


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 10**8))
def test_layers_to_checkpoint_is_the_fewest_that_fit(n, full, ckpt, available):
    k = layers_to_checkpoint(n, full, ckpt, available)
    assert 0 <= k <= n

    def need(j):
        return (n - j) * full + j * ckpt + (full if j else 0)

    if k == 0:
        assert need(0) <= available
        return
    assert need(0) > available
    if need(k) <= available:
        assert k == 1 or need(k - 1) > available  # minimal
    else:
        assert k == n  # nothing fits: everything is checkpointed (the caller warns)


def test_plan_modes():
    shape = LayerShape(hidden=64, intermediate=160, n_heads=4, n_kv_heads=2, head_dim=16, qk_norm=True)
    full = layer_activation_bytes(shape, 1000, 2)
    kw = dict(n_layers=8, shape=shape, tokens=1000, elem_bytes=2)
    assert plan("on", budget=None, **kw).layers == tuple(range(8))
    assert plan("off", budget=1, **kw).layers == ()
    assert plan("auto", budget=None, **kw).layers == ()  # no budget known (CPU): nothing
    assert plan("auto", budget=10**12, **kw).layers == ()  # fits
    tight = plan("auto", budget=math.ceil((5 * full) / 0.9), **kw)  # room for ~5 layers' activations
    assert 0 < len(tight.layers) < 8 and tight.layers == tuple(range(len(tight.layers)))
    assert plan("auto", budget=1, **kw).layers == tuple(range(8))
    assert "layers checkpointed" in tight.describe() and "budget" in tight.describe()
    with pytest.raises(ValueError):
        plan("sometimes", budget=None, **kw)


def test_auto_end_to_end_with_a_budget(tmp_path):
    """--memory-budget-gb on a CPU: a generous budget checkpoints nothing, a tiny one every layer, one
    in between the fewest layers that fit, and those layers really recompute (their MLP runs twice)."""
    from sftdata_train.loop.trainer import Trainer
    from sftdata_train.model.loading import load_tokenizer
    from sftdata_train.testing import prepare_dir, synthetic_conversations, tiny_qwen3_dir

    prepare_dir(synthetic_conversations(20, seed=1), tmp_path / "p")
    tiny_qwen3_dir(tmp_path / "m", load_tokenizer(None), num_hidden_layers=4)
    base = dict(data=str(tmp_path / "p"), model=str(tmp_path / "m"), precision="fp32", progress_bar=False,
                max_steps=2, max_tokens_per_batch=2048)
    chosen = {}
    for name, budget in (("big", 100.0), ("tiny", 1e-6)):
        t = Trainer(dict(base, output_dir=str(tmp_path / name), memory_budget_gb=budget))
        chosen[name] = t.memory_plan.layers
    assert chosen == {"big": (), "tiny": (0, 1, 2, 3)}
    # room for 3.5 layers' activations: 4 do not fit, 1 checkpointed + 1 recomputed do not either
    # (4 f + c), 2 checkpointed do (3 f + 2 c)
    probe = Trainer(dict(base, output_dir=str(tmp_path / "probe"), memory_budget_gb=100.0)).memory_plan
    per_layer = probe.activations / probe.n_layers
    t = Trainer(dict(base, output_dir=str(tmp_path / "mid"),
                     memory_budget_gb=(probe.other + 3.5 * per_layer) / 0.9 / 1e9))
    assert t.memory_plan.layers == (0, 1)
    calls = {i: [] for i in range(4)}
    for i, layer in enumerate(t.hf_model.model.layers):
        layer.mlp.register_forward_pre_hook(lambda *a, i=i: calls[i].append(1))
    t.train_step([next(t.stream)])
    assert [len(calls[i]) for i in range(4)] == [2, 2, 1, 1]
