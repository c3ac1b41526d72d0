"""Tree rows in a batch: row-local ``parent`` arrays -> the flat tensors a tree batch carries.

Used by :mod:`sftdata.collate.collators` (the layout itself is :mod:`sftdata.masking.tree`, see docs/trees.md).
A row *holds a tree* when its ``parent`` is non-empty, or, when a trainer dropped ``parent``
(HF ``Trainer`` keeps only the model's signature columns), when its ``position_ids`` are not
``0, 1, ...`` ramps: depths alone describe a DFS row (:func:`sftdata.masking.tree.parent_from_depths`).
Everything is numpy over the tokens plus a Python step per row and per branch.
"""

from __future__ import annotations

import numpy as np

from ..masking.tree import IGNORE_INDEX, depths, parent_from_depths, shift_labels, subtree_end
from ..masking.tree_arrays import tree_visibility

__all__ = ["dense_tree_mask", "is_ramps", "row_parent", "tree_arrays", "unit_lengths"]


def is_ramps(position_ids: np.ndarray) -> bool:
    """Whether ``position_ids`` are ``0, 1, ...`` restarting at 0 (linear sequences, packed or not)."""
    d = position_ids
    if d.size == 0:
        return True
    return bool(d[0] == 0 and ((d[1:] == d[:-1] + 1) | (d[1:] == 0)).all())


def row_parent(parent: np.ndarray | None, position_ids: np.ndarray | None, n: int, row: int) -> np.ndarray | None:
    """``int64 (n,)`` row-local parent of a row holding a tree, or ``None`` for linear sequences.

    Raises:
        ValueError: naming the row: ``parent``/``position_ids`` of another length than
            ``input_ids``, ``parent[i]`` not ``-1`` or an earlier index, impossible depths.
    """
    if parent is not None and parent.size:
        if parent.size != n:
            raise ValueError(f"row {row}: parent has {parent.size} entries but input_ids has {n}")
        if (parent >= np.arange(n)).any() or (parent < -1).any():
            raise ValueError(f"row {row}: parent[i] must be -1 or an earlier index (not a tree row)")
        return parent
    if position_ids is not None and position_ids.size and not is_ramps(position_ids):
        if position_ids.size != n:
            raise ValueError(f"row {row}: position_ids has {position_ids.size} entries but input_ids has {n}")
        try:
            return parent_from_depths(position_ids)
        except ValueError as e:
            raise ValueError(f"row {row}: position_ids are neither 0,1,... ramps nor tree depths: {e}") from None
    return None


def unit_lengths(parent: np.ndarray, seq_lengths: np.ndarray | None, row: int) -> np.ndarray:
    """Units of a tree row: ``seq_lengths`` (packed rows; each must start at a root), else one
    unit per root (a root's subtree is contiguous in DFS order)."""
    n = parent.size
    if seq_lengths is None:
        roots = np.flatnonzero(parent < 0)
        return np.diff(np.append(roots, n))
    starts = np.cumsum(seq_lengths) - seq_lengths
    if int(seq_lengths.sum()) != n or (seq_lengths.size and seq_lengths.min() < 1):
        raise ValueError(f"row {row}: seq_lengths {seq_lengths.tolist()} do not add up to the row's {n} tokens")
    if (parent[starts] != -1).any():
        raise ValueError(f"row {row}: a sequence of seq_lengths does not start at a root (parent -1)")
    return seq_lengths


def tree_arrays(input_ids: np.ndarray, labels: np.ndarray, seq_lens: np.ndarray,
                parents: list[np.ndarray | None], row_sizes: list[int]) -> dict[str, np.ndarray]:
    """The tree tensors of a flattened batch (``T`` tokens, rows back to back, then padding).

    Args:
        input_ids, labels: ``(T,)`` int64 flat tokens/labels (``labels`` is edited in place:
            ``-100`` at every root, i.e. at the first token of every sequence, tree and branch-less).
        seq_lens: ``(n,)`` unit lengths covering ``T`` (padding is its own unit).
        parents: per row, its row-local parent or ``None`` (linear sequences).
        row_sizes: tokens per row.

    Returns:
        ``parent`` ``(T,)`` int64 global (``-1`` at every unit start and root), ``subtree_end``
        ``(T,)`` int64 global exclusive ends, ``shift_labels`` ``(T,)`` int64 (the target of
        each position, ``-100`` none), ``position_ids`` ``(T,)`` int64 depths.

    Raises:
        ValueError: a row whose tree gives one position two trained children (naming the row).
    """
    total = input_ids.size
    starts = np.cumsum(seq_lens) - seq_lens
    parent = np.arange(total, dtype=np.int64) - 1
    parent[starts] = -1
    off = 0
    for p, n in zip(parents, row_sizes):
        if p is not None:
            parent[off : off + n] = np.where(p >= 0, p + off, -1)
        off += n
    labels[parent < 0] = IGNORE_INDEX
    try:
        shift = shift_labels(input_ids, labels, parent)
    except ValueError:
        off = 0
        for i, (p, n) in enumerate(zip(parents, row_sizes)):
            if p is not None:
                try:
                    shift_labels(input_ids[off : off + n], labels[off : off + n], p)
                except ValueError as e:
                    raise ValueError(f"row {i}: {e}") from None
            off += n
        raise
    return {
        "parent": parent,
        "subtree_end": subtree_end(parent),
        "shift_labels": shift,
        "position_ids": depths(parent),
    }


def dense_tree_mask(parent: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` bool: query ``q`` may attend key ``k`` iff ``k`` is an ancestor of ``q`` or
    ``q`` itself (``k <= q < subtree_end[k]``), for the ``n = parent.size`` real tokens; a padding
    query attends only to itself (no fully masked row, whose softmax would be NaN).

    ``size * size`` bytes: only for ``PaddingCollator(dense_tree_mask=True)`` (an explicit opt-in);
    padding-free tree batches carry ``subtree_end`` instead (memory linear in the tokens)."""
    n = parent.size
    end = subtree_end(parent) if n else np.zeros(0, dtype=np.int64)
    out = np.zeros((size, size), dtype=bool)
    out[:n, :n] = tree_visibility(end)
    pad = np.arange(n, size)
    out[pad, pad] = True
    return out
