"""Tree rows in packing: one unit each, never split; over-length trees lose whole branches.

A tree row (``parent`` non-empty, see docs/trees.md) is planned like a sequence of
``length`` tokens. What is kept of a tree longer than ``L`` is always a **prefix in DFS
order**, which is itself a valid tree row: parents come before their children, so every kept
token keeps its whole context and every kept trained token is still predicted from it.

* ``truncate``: the first ``L`` tokens (DFS order);
* ``turns``: the longest DFS prefix of at most ``L`` tokens that ends at a leaf (i.e. drops
  whole branches, the later ones in DFS order first), or, inside a path, right after a trained
  span (the linear rule: never inside an assistant turn). Root-to-leaf paths whose leaf is cut
  are counted (``PackReport.tree_paths_dropped``).

Trained tokens of a tree are its labels ``!= -100`` that have a parent (a root predicts
nothing), which for a single path is the linear rule (position 0 excluded).
"""

from __future__ import annotations

import numpy as np

from ..tree import linear_length, num_leaves

IGNORE = -100


def trained_roots(mask: np.ndarray, lab_off: np.ndarray, par: np.ndarray, par_off: np.ndarray) -> np.ndarray:
    """Per row: trained labels at roots (``parent == -1``) other than position 0, for tree rows.

    Args:
        mask: flat ``labels != -100`` of the chunk; lab_off: its row offsets ``(rows + 1,)``.
        par, par_off: the flat ``parent`` column and its row offsets (empty lists for linear rows).
    """
    rows = lab_off.size - 1
    plen = np.diff(par_off)
    if par.size == 0:
        return np.zeros(rows, dtype=np.int64)
    row_of = np.repeat(np.arange(rows), plen)
    pos_in_row = np.arange(par.size) - np.repeat(par_off[:-1], plen)
    at = (par == -1) & (pos_in_row > 0)
    hit = mask[lab_off[:-1][row_of[at]] + pos_in_row[at]]
    return np.bincount(row_of[at][hit], minlength=rows).astype(np.int64)


def cut_tree(parent: np.ndarray, mask: np.ndarray, max_length: int, truncation: str) -> tuple[int, int, int, int]:
    """What to keep of one tree row longer than ``max_length``.

    Args:
        parent: ``(n,)`` the row's parent array; mask: ``(n,)`` ``labels != -100``.
        truncation: ``truncate`` or ``turns`` (see the module docstring).

    Returns:
        ``(keep, trained_kept, linear_length_kept, paths_dropped)``; ``keep == 0`` when nothing
        fits (``turns`` with no valid cut).
    """
    n = parent.size
    L = int(max_length)
    m = mask & (parent >= 0)
    if truncation == "truncate":
        keep = L
    else:
        j = np.arange(1, L + 1)  # candidate cut: keep [0, j)
        nxt = np.append(parent, -2)[j]  # parent of token j (-2: past the end)
        leaf_end = nxt != j - 1  # token j - 1 is a leaf
        span_end = m[j - 1] & ~np.append(m, False)[j]
        ok = np.flatnonzero(leaf_end | span_end)
        keep = int(j[ok[-1]]) if ok.size else 0
    if keep == 0:
        return 0, 0, 0, 0
    kept = parent[:keep]
    leaves_all = num_leaves(parent)
    leaves_kept = num_leaves(kept)
    cut_inside = keep < n and parent[keep] == keep - 1  # the last kept path lost its end
    dropped = leaves_all - leaves_kept + (1 if cut_inside else 0)
    return keep, int(np.count_nonzero(m[:keep])), linear_length(kept), int(dropped)


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
