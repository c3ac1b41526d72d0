"""One rule, two array libraries (issue 19 item 4, trainer side): the trainer's on-device torch forms
of the label shift, the trained-token count and the dense tree mask give what sftdata's numpy
definitions give, on random rows and trees; ``IGNORE_INDEX`` is sftdata's."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import sftdata.masking.tree_arrays as rules
from sftdata.collate.collators import PaddingFreeCollator
from sftdata.testing.tree_strategies import tree_rows
from sftdata.collate.tree_collate import dense_tree_mask as sftdata_dense_tree_mask
from sftdata_train import loss
from sftdata_train.model import tree_attention

IGNORE = rules.IGNORE_INDEX


def test_ignore_index_is_defined_once_in_sftdata():
    assert loss.IGNORE_INDEX is rules.IGNORE_INDEX
    for f in sorted(Path(loss.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                assert not any(isinstance(t, ast.Name) and t.id == "IGNORE_INDEX" for t in targets), f


label_rows = st.integers(1, 6).flatmap(
    lambda b: st.integers(1, 24).flatmap(
        lambda t: st.lists(st.lists(st.one_of(st.just(IGNORE), st.integers(0, 50)), min_size=t, max_size=t),
                           min_size=b, max_size=b)
    )
)


@settings(max_examples=60, deadline=None)
@given(label_rows)
def test_shift_labels_and_trained_count_agree_with_sftdata_on_linear_rows(rows):
    labels = torch.tensor(rows, dtype=torch.int64)
    shifted = loss.shift_labels(labels)
    for row, got in zip(rows, shifted):
        ids = np.zeros(len(row), dtype=np.int64)  # the shift of a linear row does not read the ids
        assert got.tolist() == rules.shift_labels(ids, row, []).tolist()
    expected = sum(int(rules.trained_mask(row).sum()) for row in rows)
    assert loss.count_trained_tokens(labels, None) == expected
    assert loss.count_trained_tokens(None, shifted) == expected
    assert torch.equal(loss.targets_of(labels=labels), shifted)


def _parent(row: dict) -> np.ndarray:
    """A row's ``parent``; a linear row (empty ``parent``) is the chain ``i - 1``."""
    p = np.asarray(row["parent"], dtype=np.int64)
    return p if p.size else np.arange(len(row["input_ids"]), dtype=np.int64) - 1


@settings(max_examples=40, deadline=None)
@given(st.lists(tree_rows(), min_size=1, max_size=4))
def test_dense_tree_mask_and_tree_counts_agree_with_sftdata(trees):
    # the global parent of the rows packed in one padding-free batch (each unit's roots stay -1)
    parent, offset, spans = [], 0, []
    for t in trees:
        p = _parent(t)
        parent.append(np.where(p >= 0, p + offset, -1))
        spans.append((offset, offset + p.size))
        offset += p.size
    parent = np.concatenate(parent)
    batch = PaddingFreeCollator()([dict(t) for t in trees])
    end = torch.from_numpy(rules.subtree_end(parent))
    if "subtree_end" in batch:  # some row is a tree: the collator's subtree_end is sftdata's
        assert batch["subtree_end"].reshape(-1).tolist() == end.tolist()

    ours = tree_attention.dense_tree_mask(end)[0, 0]
    assert ours.numpy().tolist() == sftdata_dense_tree_mask(parent, parent.size).tolist()
    for t, (start, stop) in zip(trees, spans):  # one unit at a time: its own mask
        unit = tree_attention.dense_tree_mask(end, start, stop)[0, 0].numpy()
        assert unit.tolist() == sftdata_dense_tree_mask(_parent(t), stop - start).tolist()

    trained = sum(int(rules.trained_mask(t["labels"], t["parent"]).sum()) for t in trees)
    assert loss.count_trained_tokens(batch.get("labels"), batch.get("shift_labels")) == trained
