"""Array views of prefix-tree rows (see :mod:`sftdata.masking.tree` for the layout): depths, subtree
ends, the target of each position, the trained tokens, the root-to-leaf paths, and the
validity check.

:data:`IGNORE_INDEX` and :func:`trained_mask` / :func:`count_trained` are the one definition
of "not trained" and "trained token" in sftdata (stats, packing, show and the collators use
them; the trainer imports ``IGNORE_INDEX`` from here).

All work on a DFS-ordered ``parent`` array (``-1`` at roots; empty for a single path) with numpy
over the tokens and a Python step per *run* (a maximal chain ``parent[i] = i - 1``; a row has as
many runs as roots plus branches).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: Label of a position that is not trained: PyTorch's ``cross_entropy(ignore_index=-100)``
#: default, which Hugging Face ``transformers`` losses use too.
IGNORE_INDEX = -100


def _run_starts(par: np.ndarray) -> np.ndarray:
    """Start of every run (roots and branch starts): where ``parent[i] != i - 1``, plus 0."""
    starts = par != np.arange(par.size) - 1
    if par.size:
        starts[0] = True
    return np.flatnonzero(starts)


def _leaves(parent: np.ndarray) -> np.ndarray:
    """Indices of the leaves: ``i`` is a leaf iff ``i + 1`` is not its child (DFS order)."""
    n = parent.size
    nxt = np.append(parent[1:], -1)
    return np.flatnonzero(nxt != np.arange(n))


def num_leaves(parent: Sequence[int] | np.ndarray) -> int:
    """Number of leaves (root-to-leaf paths) of a DFS-ordered ``parent`` array."""
    return int(_leaves(np.asarray(parent, dtype=np.int64)).size)


def depths(parent: Sequence[int] | np.ndarray) -> np.ndarray:
    """``int64 (n,)`` depth of every node (``0`` at roots) of a DFS-ordered ``parent`` array.

    Cost: numpy over the tokens plus a Python step per branch (runs that start at a root, e.g.
    the sequences of a packed row, cost nothing extra).
    """
    par = np.asarray(parent, dtype=np.int64)
    n = par.size
    starts = _run_starts(par)
    ends = np.append(starts[1:], n)
    out = np.arange(n, dtype=np.int64) - np.repeat(starts, ends - starts)  # position in the run
    branch = par[starts] >= 0
    for s, e in zip(starts[branch].tolist(), ends[branch].tolist()):
        out[s:e] += int(out[par[s]]) + 1  # continues its parent's depth (parents come first)
    return out


def subtree_end(parent: Sequence[int] | np.ndarray, n: int | None = None) -> np.ndarray:
    """``int64 (n,)`` exclusive end of each node's subtree in DFS order.

    Token ``q`` may attend to token ``k`` iff ``k <= q < subtree_end[k]``. An empty ``parent``
    means one linear sequence of ``n`` tokens (every ``subtree_end`` is ``n``).

    Cost: numpy over the tokens plus a Python step per run that has branches attached
    (a run is a maximal chain ``parent[i] = i - 1``); runs without branches, e.g. the
    sequences of a packed row, are handled in one vectorised pass.
    """
    par = np.asarray(parent, dtype=np.int64)
    if par.size == 0:
        return np.full(int(n or 0), int(n or 0), dtype=np.int64)
    size = par.size
    starts = _run_starts(par)
    ends = np.append(starts[1:], size)
    out = np.repeat(ends, ends - starts)  # a run without branches: every node ends with the run
    kids = starts[par[starts] >= 0]  # branch starts
    if kids.size == 0:
        return out
    owner = np.searchsorted(starts, par[kids], side="right") - 1  # the run each branch hangs from
    order = np.argsort(owner, kind="stable")
    kids, owner = kids[order], owner[order]
    lo = np.searchsorted(owner, np.arange(starts.size), side="left")
    hi = np.searchsorted(owner, np.arange(starts.size), side="right")
    # runs in reverse order: every child run comes after its parent run in DFS order
    for r in np.unique(owner)[::-1].tolist():
        s, e = int(starts[r]), int(ends[r])
        mine = kids[lo[r] : hi[r]]
        vals = np.full(e - s, e, dtype=np.int64)
        np.maximum.at(vals, par[mine] - s, out[mine])
        out[s:e] = np.maximum.accumulate(vals[::-1])[::-1]
    return out


def parent_from_depths(position_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``int64 (n,)`` the ``parent`` array of a DFS-ordered row given only its depths.

    In a pre-order serialisation the parent of token ``i`` is the last token before ``i`` whose
    depth is ``depth[i] - 1`` (every token between them lies in the parent's subtree, hence
    deeper), and a token of depth ``0`` is a root. So ``position_ids`` (the depths) alone
    describe a tree row, a packed row (``0, 1, ...`` restarting at every sequence: one root
    per sequence) or a mix: this is how a collator recovers the tree when a trainer drops the
    ``parent`` column (HF ``Trainer`` keeps only the model's signature columns).

    Vectorised (one sort); ``parent_from_depths(depths(p)) == p`` for every valid tree row.

    Raises:
        ValueError: the first depth is not 0, a depth is negative, or a depth grows by more
            than 1 from one token to the next (no such parent).
    """
    d = np.asarray(position_ids, dtype=np.int64).reshape(-1)
    n = d.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if d[0] != 0 or (d < 0).any():
        raise ValueError("depths (position_ids) of a tree row must start at 0 and be >= 0")
    par = np.arange(n, dtype=np.int64) - 1
    par[0] = -1
    starts = np.flatnonzero(d[1:] != d[:-1] + 1) + 1
    if starts.size == 0:
        return par
    ds = d[starts]
    if (ds > d[starts - 1] + 1).any():
        bad = int(starts[np.argmax(ds > d[starts - 1] + 1)])
        raise ValueError(f"depth {int(d[bad])} at token {bad} follows depth {int(d[bad - 1])}: no parent")
    key = d * n + np.arange(n, dtype=np.int64)  # sorted by (depth, index)
    order = np.argsort(key, kind="stable")
    pos = np.searchsorted(key[order], (ds - 1) * n + starts) - 1  # last key before (depth - 1, i)
    cand = order[np.maximum(pos, 0)]
    ok = (pos >= 0) & (d[cand] == ds - 1)
    roots = ds == 0
    par[starts] = np.where(roots, -1, cand)
    if not (ok | roots).all():  # cannot happen once the growth check passed; kept as a guard
        raise ValueError("a token has no earlier token one level up")
    return par


def linear_length(parent: Sequence[int] | np.ndarray, n: int | None = None) -> int:
    """Tokens the row's examples take as linear rows: the sum of the lengths of its root-to-leaf
    paths (``n`` for a single path, given as an empty ``parent``)."""
    par = np.asarray(parent, dtype=np.int64)
    if par.size == 0:
        return int(n or 0)
    return int((depths(par)[_leaves(par)] + 1).sum())


def shift_linear(labels):
    """The targets of linear rows: ``labels[..., t + 1]`` at position ``t``, ``IGNORE_INDEX`` at the
    last position. One definition for numpy arrays and torch tensors alike (same shape, dtype and
    device as ``labels``; ``(..., T)``): :func:`shift_labels` uses it for a linear row, the trainer
    on a ``(batch, seq_len)`` batch on its device. Hugging Face's causal-LM shift.
    """
    out = labels * 0 + IGNORE_INDEX
    out[..., :-1] = labels[..., 1:]
    return out


def tree_visibility(end):
    """``(n, n)`` bool: query ``q`` may attend key ``k`` iff ``k <= q < end[k]`` (``k`` is an ancestor
    of ``q`` or ``q`` itself), for ``(n,)`` integer :func:`subtree_end` values relative to the first
    token. One definition for numpy arrays and torch tensors alike (the result on ``end``'s device).

    Example (a root with two children ``[0, 1, 2]``, ``end = [3, 2, 3]``)::

        >>> tree_visibility(np.array([3, 2, 3])).astype(int)
        array([[1, 0, 0],
               [1, 1, 0],
               [1, 0, 1]])
    """
    idx = (end * 0 + 1).cumsum(0) - 1
    return (idx[None, :] <= idx[:, None]) & (idx[:, None] < end[None, :])


def shift_labels(input_ids: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray,
                 parent: Sequence[int] | np.ndarray) -> np.ndarray:
    """``int64 (n,)`` the target each position predicts: ``shift[parent[i]] = labels[i]`` for
    every trained ``i`` that has a parent, ``-100`` elsewhere (Hugging Face's ``shift_labels``).

    For an empty ``parent`` (a linear row) this is ``labels[1:] + [-100]``.

    Raises:
        ValueError: a position with two trained children (not a valid tree row).
    """
    lab = np.asarray(labels, dtype=np.int64)
    par = np.asarray(parent, dtype=np.int64)
    if par.size == 0:
        return shift_linear(lab)
    out = np.full(lab.size, IGNORE_INDEX, dtype=np.int64)
    idx = np.flatnonzero((lab != IGNORE_INDEX) & (par >= 0))
    src = par[idx]
    if np.unique(src).size != src.size:
        raise ValueError("a position has two trained children: the tree row is not valid")
    out[src] = lab[idx]
    return out


def trained_mask(labels: Sequence[int] | np.ndarray, parent: Sequence[int] | np.ndarray = ()) -> np.ndarray:
    """``bool (n,)``: which tokens of one row are *trained tokens*.

    A trained token is a token whose label is not :data:`IGNORE_INDEX` **and** that some
    position predicts, i.e. that has a predecessor: its position is ``>= 1`` in a linear row
    (empty ``parent``), it has a parent (``parent[i] >= 0``) in a tree row. Equivalently, the
    trained tokens are the targets ``!= IGNORE_INDEX`` of :func:`shift_labels`, the positions a
    causal-LM loss sums over (``labels[..., 1:] != -100`` in Hugging Face ``transformers``). A
    label at position 0 (or at any root) is never a target: nothing is predicted before it.

    Args:
        labels: ``(n,)`` unshifted labels (any integer dtype).
        parent: ``(n,)`` a tree row's parents, or empty for a linear row.
    """
    mask = np.asarray(labels) != IGNORE_INDEX
    par = np.asarray(parent, dtype=np.int64)
    if par.size:
        return mask & (par >= 0)
    if mask.size:
        mask[0] = False
    return mask


def count_trained(labels: np.ndarray, offsets: np.ndarray, parent: np.ndarray | None = None,
                  parent_offsets: np.ndarray | None = None) -> np.ndarray:
    """``int64 (rows,)`` trained tokens per row (:func:`trained_mask`) of flat list columns.

    Args:
        labels: ``(tokens,)`` the flat ``labels`` column (unshifted, any integer dtype).
        offsets: ``(rows + 1,)`` int row offsets into ``labels`` (``offsets[0] == 0``).
        parent, parent_offsets: the flat ``parent`` column and its ``(rows + 1,)`` offsets
            (an empty list for a linear row), or ``None`` when every row is linear.

    Cost: one cumulative sum over the tokens (plus one pass over the roots of tree rows).
    """
    mask = np.asarray(labels) != IGNORE_INDEX
    off = np.asarray(offsets, dtype=np.int64)
    cs = np.zeros(mask.size + 1, dtype=np.int32 if mask.size < 2**31 else np.int64)
    np.cumsum(mask, out=cs[1:])
    counts = cs[off[1:]].astype(np.int64) - cs[off[:-1]]
    nonempty = off[:-1] < off[1:]
    counts[nonempty] -= mask[off[:-1][nonempty]]  # position 0 of every row: nothing predicts it
    if parent is None or np.asarray(parent).size == 0:
        return counts
    par = np.asarray(parent, dtype=np.int64)
    par_off = np.asarray(parent_offsets, dtype=np.int64)
    plen = np.diff(par_off)
    row_of = np.repeat(np.arange(plen.size), plen)
    pos_in_row = np.arange(par.size) - np.repeat(par_off[:-1], plen)
    at = (par == -1) & (pos_in_row > 0)  # roots after position 0 (a forest, a packed row)
    hit = mask[off[:-1][row_of[at]] + pos_in_row[at]]
    return counts - np.bincount(row_of[at][hit], minlength=plen.size).astype(np.int64)


def unroll(row: Any) -> list[tuple[list[int], list[int]]]:
    """The linear examples of a tree row: one per root-to-leaf path, in DFS order of leaves.

    Each trained token is trained in exactly one example: the first leaf (in DFS order) of its
    subtree, whose path contains the token with its whole context. A single path gives itself.
    """
    ids = list(row["input_ids"] if isinstance(row, dict) else row.input_ids)
    labels = list(row["labels"] if isinstance(row, dict) else row.labels)
    parent = list(row["parent"] if isinstance(row, dict) else row.parent)
    if not parent:
        return [(ids, labels)]
    par = np.asarray(parent, dtype=np.int64)
    n = par.size
    leaves = _leaves(par)
    lab = np.asarray(labels, dtype=np.int64)
    # first leaf at or after every node = the leaf owning it
    owner = np.full(n, n, dtype=np.int64)
    owner[leaves] = leaves
    owner = np.minimum.accumulate(owner[::-1])[::-1]
    is_start = np.zeros(n, dtype=bool)
    is_start[_run_starts(par)] = True
    run_start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    out = []
    for leaf in leaves.tolist():
        pieces = []
        i = leaf
        while i >= 0:
            s = int(run_start[i])
            pieces.append((s, i + 1))
            i = int(par[s])
        nodes = np.concatenate([np.arange(a, b) for a, b in reversed(pieces)])
        path_labels = np.where(owner[nodes] == leaf, lab[nodes], IGNORE_INDEX)
        out.append(([ids[k] for k in nodes.tolist()], path_labels.tolist()))
    return out


def check_tree(input_ids: Sequence[int], labels: Sequence[int], parent: Sequence[int],
               position_ids: Sequence[int] | None = None) -> None:
    """Validate a tree row.

    Raises:
        ValueError: naming the broken invariant: lengths differ; ``labels[i]`` not ``-100`` or
            ``input_ids[i]``; ``parent[i] >= i``; not a pre-order serialisation (the parent of
            ``i`` must be an ancestor-or-self of ``i - 1``); ``position_ids`` not the depths; a
            position with two trained children.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if ids.size != lab.size:
        raise ValueError(f"labels has {lab.size} entries but input_ids has {ids.size}")
    if ((lab != IGNORE_INDEX) & (lab != ids)).any():
        raise ValueError("labels must be -100 or equal to input_ids")
    if len(parent) == 0:
        if position_ids is not None and len(position_ids) not in (0, ids.size):
            raise ValueError("a single-path row has position_ids of another length")
        return
    par = np.asarray(parent, dtype=np.int64)
    if par.size != ids.size:
        raise ValueError(f"parent has {par.size} entries but input_ids has {ids.size}")
    if (par >= np.arange(par.size)).any() or (par < -1).any():
        raise ValueError("parent[i] must be -1 or an earlier index")
    end = subtree_end(par)
    ok = (par < 0) | (end[np.maximum(par, 0)] > np.arange(par.size))
    if par.size and par[0] != -1:
        raise ValueError("the first token of a tree row must be a root")
    # pre-order: each parent p of i must still be "open" at i, i.e. i lies in p's subtree and
    # every node between p and i is a descendant of p
    for i in _run_starts(par).tolist():
        p = int(par[i])
        if p < 0:
            continue
        q = i - 1
        while q != p and q >= 0:
            q = int(par[q])
        if q != p:
            raise ValueError(f"token {i} is not in pre-order: its parent {p} is not an ancestor of token {i - 1}")
    if not ok.all():
        raise ValueError("subtree ranges are not contiguous")
    if position_ids is not None and len(position_ids) and not np.array_equal(np.asarray(position_ids), depths(par)):
        raise ValueError("position_ids must be the depth of every token")
    shift_labels(ids, lab, par)  # raises on two trained children
