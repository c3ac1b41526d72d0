"""Tree attention: every token attends to exactly its ancestors and itself, on every CPU backend."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import PaddingFreeCollator
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata_train.model import attention, tree_attention
from sftdata_train.model.tree_attention import (
    TREE_ATTN_NAME,
    dense_tree_mask,
    run_plan,
    sftdata_tree_attention_forward,
    tree_attention as tree_attn,
)


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    attention.set_backend("auto")


def _ancestors(parent, q):
    out = []
    while q >= 0:
        out.append(q)
        q = int(parent[q])
    return out[::-1]


def per_path_reference(q, k, v, parent):
    """Each token's output from plain causal SDPA over its own root-to-token path (GQA expanded)."""
    rep = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    for i in range(q.shape[0]):
        path = torch.tensor(_ancestors(parent, i))
        kk = k[path].transpose(0, 1).repeat_interleave(rep, 0)
        vv = v[path].transpose(0, 1).repeat_interleave(rep, 0)
        qq = q[i : i + 1].transpose(0, 1)
        out[i] = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv).transpose(0, 1)[0]
    return out


def _batch(rows):
    b = PaddingFreeCollator()(rows)
    if "subtree_end" not in b:
        return None
    from sftdata.masking.tree import parent_from_depths

    return b, parent_from_depths(b["position_ids"][0].numpy())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(tree_rows(), linear_rows()), min_size=1, max_size=4), st.sampled_from([(4, 2), (4, 4)]))
def test_tree_attention_matches_per_path_attention(rows, heads):
    got = _batch(rows)
    if got is None:
        return
    batch, parent = got
    end = batch["subtree_end"]
    T = end.shape[1]
    g = torch.Generator().manual_seed(T)
    q = torch.randn(T, heads[0], 8, generator=g, dtype=torch.float64)
    k = torch.randn(T, heads[1], 8, generator=g, dtype=torch.float64)
    v = torch.randn(T, heads[1], 8, generator=g, dtype=torch.float64)
    ref = per_path_reference(q, k, v, parent)
    dense = tree_attn(q, k, v, end, backend="sdpa", mask=dense_tree_mask(end.reshape(-1)))
    runs = tree_attn(q, k, v, end, backend="sdpa", mask=run_plan(end))
    assert torch.allclose(dense, ref, atol=1e-10) and torch.allclose(runs, ref, atol=1e-10)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_block_mask_matches_dense_on_cpu_forward():
    rows = [{"input_ids": [1, 2, 3, 4, 5, 6, 7], "labels": [-100] * 4 + [5, 6, 7],
             "parent": [-1, 0, 1, 2, 1, 4, 0], "position_ids": [0, 1, 2, 3, 2, 3, 1]},
            {"input_ids": [8, 9, 10], "labels": [8, 9, 10]}]
    batch, parent = _batch(rows)
    end = batch["subtree_end"]
    T = end.shape[1]
    q, k, v = torch.randn(T, 4, 16), torch.randn(T, 2, 16), torch.randn(T, 2, 16)
    flex = tree_attn(q, k, v, end, backend="flex")
    assert torch.allclose(flex, per_path_reference(q, k, v, parent), atol=1e-5)


def test_dense_and_run_paths_have_equal_gradients():
    rows = [{"input_ids": list(range(1, 13)), "labels": [-100] * 12, "parent": [-1, 0, 1, 2, 3, 4, 2, 6, 7, 1, 9, 10],
             "position_ids": [0, 1, 2, 3, 4, 5, 3, 4, 5, 2, 3, 4]}, {"input_ids": [3, 4, 5], "labels": [3, 4, 5]}]
    batch, _ = _batch(rows)
    end = batch["subtree_end"]
    T = end.shape[1]
    leaves = [torch.randn(T, h, 8, dtype=torch.float64, requires_grad=True) for h in (4, 2, 2)]
    w = torch.randn(T, 4, 8, dtype=torch.float64)
    outs = []
    for mask in (dense_tree_mask(end.reshape(-1)), run_plan(end)):
        out = tree_attn(*leaves, end, backend="sdpa", mask=mask)
        outs.append(torch.autograd.grad((out * w).sum(), leaves))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-10)


def test_long_rows_use_runs_and_short_rows_a_dense_mask(monkeypatch):
    end = torch.tensor([[6, 6, 4, 4, 6, 6, 8, 8]], dtype=torch.int32)
    assert tree_attention.tree_plan(end, backend="sdpa").shape == (1, 1, 8, 8)
    monkeypatch.setattr(attention, "DENSE_MASK_MAX_TOKENS", 4)
    runs = tree_attention.tree_plan(end, backend="sdpa")
    assert [(a, b, None if anc is None else anc.tolist()) for a, b, anc in runs] == [
        (0, 4, None), (4, 6, [0, 1]), (6, 8, None)]


def test_mask_cache_never_reuses_another_batch():
    """One mask per batch, shared by the layers of a forward (same tensor); a different batch's
    subtree_end (even of the same shape) gets its own mask."""
    a = torch.tensor([[4, 4, 4, 4]], dtype=torch.int32)
    b = torch.tensor([[4, 2, 2, 4]], dtype=torch.int32)
    m1 = tree_attention._MASKS.get(a, "sdpa", lambda: dense_tree_mask(a))
    assert tree_attention._MASKS.get(a, "sdpa", lambda: None) is m1
    m2 = tree_attention._MASKS.get(b, "sdpa", lambda: dense_tree_mask(b))
    assert not torch.equal(m1, m2)


class _Module(torch.nn.Module):
    is_causal = True


def _qkv(T=5):
    return torch.randn(1, 4, T, 8), torch.randn(1, 2, T, 8), torch.randn(1, 2, T, 8)


def test_refusals_as_on_the_varlen_path():
    q, k, v = _qkv()
    end = torch.tensor([[5, 5, 5, 5, 5]], dtype=torch.int32)
    m = _Module()
    with pytest.raises(ValueError, match="dropout"):
        sftdata_tree_attention_forward(m, q, k, v, None, dropout=0.1, subtree_end=end)
    with pytest.raises(ValueError, match="sliding-window"):
        sftdata_tree_attention_forward(m, q, k, v, None, sliding_window=4, subtree_end=end)
    with pytest.raises(ValueError, match="padding-free"):
        sftdata_tree_attention_forward(m, q, k, v, torch.ones(1, 1, 5, 5, dtype=torch.bool), subtree_end=end)
    with pytest.raises(ValueError, match="batch size 1"):
        sftdata_tree_attention_forward(m, *(t.expand(2, -1, -1, -1) for t in (q, k, v)), None, subtree_end=end)


def test_both_registered_names_route_by_subtree_end():
    from transformers import AttentionInterface

    assert TREE_ATTN_NAME in AttentionInterface()  # registered (the public mapping interface)
    q, k, v = _qkv()
    m = _Module()
    chain = torch.tensor([[5, 5, 5, 5, 5]], dtype=torch.int32)  # one linear sequence as a tree
    tree_out, _ = sftdata_tree_attention_forward(m, q, k, v, None, subtree_end=chain)
    varlen_out, _ = attention.sftdata_varlen_attention_forward(m, q, k, v, None)
    assert torch.allclose(tree_out, varlen_out, atol=1e-6)
    branch = torch.tensor([[5, 3, 3, 5, 5]], dtype=torch.int32)  # token 3 hangs below token 0
    via_varlen, _ = attention.sftdata_varlen_attention_forward(m, q, k, v, None, subtree_end=branch)
    via_tree, _ = sftdata_tree_attention_forward(m, q, k, v, None, subtree_end=branch)
    assert torch.equal(via_varlen, via_tree) and not torch.allclose(via_tree, tree_out)
    no_tree, _ = sftdata_tree_attention_forward(m, q, k, v, None)  # no subtree_end: the varlen path
    assert torch.allclose(no_tree, varlen_out)


def test_backend_resolution():
    cpu = torch.device("cpu")
    assert tree_attention.resolve_tree_backend(cpu, needs_grad=True) == "sdpa"
    assert tree_attention.resolve_tree_backend(cpu, needs_grad=True, requested="flex") == "sdpa"
    assert tree_attention.resolve_tree_backend(cpu, needs_grad=False, requested="flex") == "flex"
    assert tree_attention.resolve_tree_backend(torch.device("cuda"), needs_grad=True, requested="auto") == "flex"
    assert tree_attention.resolve_tree_backend(torch.device("cuda"), needs_grad=True, requested="varlen") == "flex"
    assert tree_attention.resolve_tree_backend(torch.device("cuda"), needs_grad=True, requested="sdpa") == "sdpa"
