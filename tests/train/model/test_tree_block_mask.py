"""The flex ``BlockMask`` of a tree batch, built from ``subtree_end`` block by block (no ``(T, T)``
mask): the same blocks as ``create_block_mask`` evaluating the rule on every pair, full blocks
only where every pair is allowed, and flex attention through it equal to the dense-mask SDPA
reference (CPU forward; small block sizes so that rows span many blocks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import PaddingFreeCollator
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata_train.model.tree_attention import dense_tree_mask, flex_tree_block_mask

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def _reference_block_mask(end: torch.Tensor, block: int):
    from torch.nn.attention.flex_attention import create_block_mask

    def rule(b, h, q, kv):
        return (kv <= q) & (end[kv] > q)

    T = end.numel()
    return create_block_mask(rule, None, None, T, T, device="cpu", BLOCK_SIZE=block)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(tree_rows(), linear_rows()), min_size=1, max_size=5), st.sampled_from([1, 2, 4, 8, 128]))
def test_block_mask_equals_create_block_mask_and_dense_attention(rows, block):
    end = PaddingFreeCollator()(rows).get("subtree_end")
    if end is None:
        return
    end = end.reshape(-1)
    T = end.numel()
    ours, ref = flex_tree_block_mask(end, block_size=block), _reference_block_mask(end, block)
    assert torch.equal(ours.to_dense(), ref.to_dense())  # blocks computed (partial or full)
    dense = dense_tree_mask(end)[0, 0]
    nb = ours.to_dense().shape[-1]
    full_ours = torch.zeros(nb, nb, dtype=torch.bool)
    for i in range(nb):
        n = int(ours.full_kv_num_blocks[0, 0, i])
        full_ours[i, ours.full_kv_indices[0, 0, i, :n].long()] = True
    for i in range(nb):  # a full block is one where every (q, k) pair is allowed
        for j in range(nb):
            tile = dense[i * block : (i + 1) * block, j * block : (j + 1) * block]
            assert bool(full_ours[i, j]) == bool(tile.all()), (i, j)
    from torch.nn.attention.flex_attention import flex_attention

    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(1, 2, T, 8, generator=g, dtype=torch.float64) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    got = flex_attention(q, k, v, block_mask=ours)
    assert torch.allclose(got, want, atol=1e-10)
