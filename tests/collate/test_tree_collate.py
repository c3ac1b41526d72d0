"""Collators on prefix-tree rows: alone, packed, mixed with linear rows, with columns dropped.

The reference is brute force over an independently built flat ``parent`` array: a token may
attend to exactly its ancestors and itself, each trained token is predicted from its parent,
positions are depths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator, num_trained_tokens
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata.masking.tree import IGNORE_INDEX, depths
from sftdata.collate.tree_collate import is_ramps

LINEAR_KEYS = {"input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
               "max_length_k", "use_cache"}


def reference(rows, pad: int = 0):
    """Flat parent, trained-token targets and unit lengths, built row by row."""
    parent, ids, labels, units = [], [], [], []
    for r in rows + ([{"input_ids": [0] * pad, "labels": [IGNORE_INDEX] * pad}] if pad else []):
        n, off = len(r["input_ids"]), len(ids)
        p = r.get("parent") or ([-1] + list(range(n - 1)))
        parent += [x + off if x >= 0 else -1 for x in p]
        ids += list(r["input_ids"])
        labels += list(r["labels"])
        roots = [i for i, x in enumerate(p) if x < 0] + [n]
        units += [b - a for a, b in zip(roots[:-1], roots[1:])]
    return np.array(parent), np.array(ids), np.array(labels), units


def ancestors(parent, q):
    out = set()
    while q >= 0:
        out.add(q)
        q = parent[q]
    return out


def check_tree_batch(batch, rows, pad=0):
    parent, ids, labels, units = reference(rows, pad)
    T = ids.size
    assert batch["input_ids"][0].tolist() == ids.tolist()
    end = batch["subtree_end"][0].numpy()
    assert batch["subtree_end"].dtype == torch.int32 and batch["shift_labels"].dtype == torch.int64
    for q in range(T):
        anc = ancestors(parent, q)
        assert {k for k in range(T) if k <= q < end[k]} == anc
    shift = batch["shift_labels"][0].numpy()
    expected = np.full(T, IGNORE_INDEX)
    for i in range(T):
        if labels[i] != IGNORE_INDEX and parent[i] >= 0:
            expected[parent[i]] = labels[i]
    assert shift.tolist() == expected.tolist()
    assert batch["position_ids"][0].tolist() == depths(parent).tolist()
    assert batch["labels"][0][parent < 0].eq(IGNORE_INDEX).all()
    assert num_trained_tokens(batch) == int((expected != IGNORE_INDEX).sum())
    assert batch["cu_seq_lens_q"].diff().tolist() == units


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(tree_rows(), linear_rows()), min_size=1, max_size=5), st.sampled_from([None, 16]))
def test_padding_free_tree_batch_is_exact(rows, multiple):
    batch = PaddingFreeCollator(pad_to_multiple_of=multiple)(rows)
    if not any(r.get("parent") for r in rows):
        assert set(batch) == LINEAR_KEYS  # a batch without a tree is what it was before trees
        return
    total = sum(len(r["input_ids"]) for r in rows)
    check_tree_batch(batch, rows, pad=(-total) % multiple if multiple else 0)
    # HF Trainer drops `parent` (not in the model's signature): depths alone give the same batch
    dropped = [{k: v for k, v in r.items() if k != "parent"} for r in rows]
    again = PaddingFreeCollator(pad_to_multiple_of=multiple)(dropped)
    if "subtree_end" not in again:  # a forest of plain chains: depths are ramps, i.e. packed sequences
        assert all(is_ramps(np.asarray(r.get("position_ids") or [0])) for r in rows)
        assert set(batch) - set(again) == {"subtree_end", "shift_labels"}
        check_tree_batch({**again, "subtree_end": batch["subtree_end"], "shift_labels": batch["shift_labels"]}, rows,
                         pad=(-total) % multiple if multiple else 0)
        return
    for k, v in batch.items():
        assert (v == again[k]).all() if isinstance(v, torch.Tensor) else v == again[k], k


def test_single_path_tree_rows_equal_plain_rows():
    """A tree-layout row without a branch (parent = position_ids = []) is exactly a linear row."""
    rows = [{"input_ids": [3, 4, 5], "labels": [-100, 4, 5]}, {"input_ids": [6, 7], "labels": [6, 7]}]
    as_tree = [dict(r, parent=[], position_ids=[]) for r in rows]
    for col in (PaddingFreeCollator(), PaddingCollator(0)):
        a, b = col(rows), col(as_tree)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                            for k in a)
    assert "subtree_end" not in PaddingFreeCollator()(as_tree)


def test_docstring_example():
    # trunk 1 2 3 4 | branch 5 6 below token 1 (index 1); the branch is trained
    row = {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, -100, -100, 5, 6],
           "parent": [-1, 0, 1, 2, 1, 4], "position_ids": [0, 1, 2, 3, 2, 3]}
    b = PaddingFreeCollator()([row, {"input_ids": [7, 8], "labels": [7, 8]}])
    assert b["subtree_end"].tolist() == [[6, 6, 4, 4, 6, 6, 8, 8]]
    assert b["shift_labels"].tolist() == [[-100, 5, -100, -100, 6, -100, 8, -100]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3, 0, 1]]
    assert b["labels"].tolist() == [[-100, -100, -100, -100, 5, 6, -100, 8]]
    assert b["cu_seq_lens_q"].tolist() == [0, 6, 8]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(tree_rows(), linear_rows()), min_size=1, max_size=4))
def test_padding_collator_dense_tree_mask(rows):
    batch = PaddingCollator(0, pad_to_multiple_of=8, dense_tree_mask=True)(rows)
    if not any(r.get("parent") for r in rows):
        assert batch["attention_mask"].dim() == 2 and "shift_labels" not in batch
        return
    B, _, T, _ = batch["attention_mask"].shape
    assert batch["attention_mask"].dtype == torch.bool and T % 8 == 0
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        parent, _, labels, _ = reference([r])
        m = batch["attention_mask"][b, 0].numpy()
        for q in range(T):
            want = ancestors(parent, q) if q < n else {q}
            assert set(np.flatnonzero(m[q]).tolist()) == want
        flat = PaddingFreeCollator()([r])
        if "shift_labels" in flat:
            assert batch["shift_labels"][b, :n].tolist() == flat["shift_labels"][0].tolist()
            assert batch["position_ids"][b, :n].tolist() == flat["position_ids"][0].tolist()
        assert (batch["shift_labels"][b, n:] == IGNORE_INDEX).all()


def test_bad_tree_rows_name_the_row():
    good = {"input_ids": [1, 2], "labels": [1, 2]}
    two_children = {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "parent": [-1, 0, 0], "position_ids": [0, 1, 1]}
    with pytest.raises(ValueError, match="row 1: .*two trained children"):
        PaddingFreeCollator()([good, two_children])
    with pytest.raises(ValueError, match="row 0: parent has 2 entries"):
        PaddingFreeCollator()([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "parent": [-1, 0]}])
    with pytest.raises(ValueError, match="row 0: parent"):
        PaddingFreeCollator()([{"input_ids": [1, 2], "labels": [1, 2], "parent": [-1, 1]}])
    with pytest.raises(ValueError, match="row 0: position_ids"):
        PaddingFreeCollator()([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 2, 3]}])
    with pytest.raises(ValueError, match="row 0: a sequence of seq_lengths does not start at a root"):
        PaddingFreeCollator()([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "parent": [-1, 0, 0],
                                "seq_lengths": [1, 2]}])
