"""Tree rows in packing: one unit each (a tree longer than ``L`` was split first).

A tree row (``parent`` non-empty, see docs/trees.md) is planned like a sequence of
``length`` tokens. A tree longer than ``L`` is first split into sub-trees of at most ``L``
tokens by :func:`sftdata.packing._truncate.fit_long_trees` (:mod:`sftdata.masking.tree_fit`): each
sub-tree repeats the context its branches need, only sequences that do not fit are cut, and
root-to-leaf paths whose leaf is cut are counted (``PackReport.tree_paths_dropped``).

Trained tokens of a tree are its labels ``!= IGNORE_INDEX`` that have a parent (a root predicts
nothing), which for a single path is the linear rule (position 0 excluded): one definition,
:func:`sftdata.masking.tree_arrays.count_trained`.
"""

from __future__ import annotations

import numpy as np


def tree_columns(rows_par: np.ndarray, rows_pos: np.ndarray, is_tree: np.ndarray, keep: np.ndarray,
                 item_off: np.ndarray, bin_len: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``parent`` and ``position_ids`` of packed rows holding tree units.

    Args:
        rows_par, rows_pos: the kept prefixes of the tree items' ``parent``/``position_ids``,
            concatenated in item order (linear items contribute nothing).
        is_tree: ``(items,)`` bool; keep: ``(items,)`` kept tokens per item (in row order).
        item_off: ``(bins + 1,)`` item offsets of the bins; bin_len: ``(bins,)`` tokens per bin.
        pos: ``(tokens,)`` the linear ``position_ids`` ramps, overwritten for tree units.

    Returns:
        ``(parent_values, parent_offsets, position_ids)``: the ``parent`` list column (row-local
        indices, ``-1`` at every unit start and root; empty for rows without a tree unit) and
        the ``position_ids`` (depths) of all tokens.
    """
    total = int(keep.sum())
    unit_start = np.cumsum(keep) - keep  # flat start of every item
    flat = np.arange(total, dtype=np.int64) - 1
    flat[unit_start] = -1
    if is_tree.any():
        kt = keep[is_tree]
        base = np.repeat(unit_start[is_tree], kt)
        idx = base + (np.arange(int(kt.sum())) - np.repeat(np.cumsum(kt) - kt, kt))
        g = rows_par.astype(np.int64)
        flat[idx] = np.where(g >= 0, g + base, -1)
        pos[idx] = rows_pos
    tok_off = np.zeros(bin_len.size + 1, dtype=np.int64)
    np.cumsum(bin_len, out=tok_off[1:])
    row_start = np.repeat(tok_off[:-1], bin_len)
    local = np.where(flat >= 0, flat - row_start, -1)
    has_tree = (np.add.reduceat(is_tree.astype(np.int64), item_off[:-1]) > 0) if keep.size else np.zeros(0, bool)
    values = local[np.repeat(has_tree, bin_len)]
    offsets = np.zeros(bin_len.size + 1, dtype=np.int64)
    np.cumsum(bin_len * has_tree, out=offsets[1:])
    return values.astype(np.int32), offsets, pos
