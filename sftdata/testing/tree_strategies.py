"""Hypothesis strategies for prefix-tree rows (docs/trees.md), shared by the tree tests."""

from __future__ import annotations

from hypothesis import strategies as st

from sftdata.masking.tree import IGNORE_INDEX, TrieBuilder

__all__ = ["linear_rows", "tree_rows"]


@st.composite
def tree_rows(draw, vocab: int = 12):
    """A tree row as a dict of its columns (``TrieBuilder`` over sequences sharing prefixes, each trained on a suffix)."""
    tok = st.integers(1, vocab - 1)
    base = draw(st.lists(tok, min_size=1, max_size=25))
    b = TrieBuilder()
    b.add(base, [IGNORE_INDEX] * len(base))
    seen = {tuple(base[: i + 1]) for i in range(len(base))}
    for _ in range(draw(st.integers(0, 4))):
        cut = draw(st.integers(0, len(base)))
        ids = base[:cut] + draw(st.lists(tok, min_size=1, max_size=10))
        start = draw(st.integers(0, len(ids)))
        labels = [IGNORE_INDEX if i < start or tuple(ids[: i + 1]) in seen else t for i, t in enumerate(ids)]
        seen.update(tuple(ids[: i + 1]) for i in range(len(ids)))
        b.add(ids, labels)
    t = b.build()
    return {"input_ids": t.input_ids, "labels": t.labels, "parent": t.parent, "position_ids": t.position_ids}


@st.composite
def linear_rows(draw, vocab: int = 12):
    """A linear row (``input_ids``, ``labels``) trained on a suffix."""
    ids = draw(st.lists(st.integers(1, vocab - 1), min_size=1, max_size=20))
    start = draw(st.integers(0, len(ids)))
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * start + ids[start:]}
