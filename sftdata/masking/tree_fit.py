"""A tree row under a length limit: split into sub-trees that fit, never dropped whole.

One rule, used by ``sftdata prepare --max-length`` (:class:`sftdata.masking.encode.ConversationEncoder`)
and by ``sftdata pack`` (:mod:`sftdata.packing._truncate`):

1. **Which trained tokens stay.** A trained token ``t`` (a label ``!= -100`` with a parent)
   belongs to one inference-time sequence: the root-to-``t`` path plus the rest of its turn.
   Its position in that sequence is its depth. With ``L = max_length``:

   * ``turns``: ``t`` stays iff its whole turn fits, i.e. the last token of its trained run
     (followed through the unique trained child, see docs/trees.md) has depth ``< L``: a turn
     is kept whole or not at all;
   * ``truncate``: ``t`` stays iff ``depth(t) < L`` (every *keepable* trained token);
   * ``drop``: ``t`` stays iff the sequence that trains it fits whole: the first leaf (DFS
     order) of its subtree, which owns it (:func:`sftdata.masking.tree.unroll`), has depth ``< L``.

2. **What is kept.** The ancestors of the trained tokens that stay (their exact context); any
   other token (a trailing untrained tail, a branch whose turns were cut) goes.

3. **Split.** The kept nodes are cut into sub-trees of at most ``L`` tokens: their leaves in
   DFS order are grouped greedily (a group grows while its ancestor closure fits), and each
   group is written with *all* the ancestors of its leaves, so a sub-tree repeats the shared
   context its branches need. A trained token is labelled in exactly one sub-tree (the one that
   holds the first leaf below it) and is ``-100`` context elsewhere, so every kept trained
   token is still trained once, from the same tokens at the same depths (``position_ids``).

Every root-to-leaf path of an output row is a prefix of a path of the input, with the input's
tokens, depths and labels (or ``-100`` where another output row trains that token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .tree import IGNORE_INDEX, TreeRow
from .tree_arrays import depths, num_leaves, subtree_end, trained_mask

#: over-length rules (see the module docstring)
FIT_RULES = ("drop", "truncate", "turns")


@dataclass
class FitResult:
    """What :func:`fit_tree` kept of one row.

    Attributes:
        rows: the output rows (:class:`~sftdata.masking.tree.TreeRow`, each ``<= max_length`` tokens,
            each with at least one trained token); empty when nothing fits.
        trained_in: trained tokens of the input (labels ``!= -100`` with a parent).
        trained_kept: trained tokens kept (each trained in exactly one output row).
        keepable: trained tokens at depth ``< max_length`` (what any rule could keep).
        tokens_out: tokens over all output rows (shared context counted once per row).
        tokens_unique: distinct input tokens kept (``tokens_out - tokens_unique`` tokens of
            context are repeated by the split).
        leaves_cut: root-to-leaf paths of the input whose leaf is not kept.
    """

    rows: list[TreeRow] = field(default_factory=list)
    trained_in: int = 0
    trained_kept: int = 0
    keepable: int = 0
    tokens_out: int = 0
    tokens_unique: int = 0
    leaves_cut: int = 0

    @property
    def split(self) -> bool:
        """More than one output row."""
        return len(self.rows) > 1

    @property
    def truncated(self) -> bool:
        """Some trained tokens were cut, but not all."""
        return 0 < self.trained_kept < self.trained_in

    @property
    def dropped(self) -> bool:
        """Nothing is left."""
        return not self.rows


def _row_of(ids: np.ndarray, lab: np.ndarray, par: np.ndarray, dep: np.ndarray, leaves: int, linear: int) -> TreeRow:
    n = ids.size
    single = bool(n == 0 or (par[0] == -1 and (par[1:] == np.arange(n - 1)).all()))
    if single:
        return TreeRow(ids.tolist(), lab.tolist(), [], [], n, 1)
    return TreeRow(ids.tolist(), lab.tolist(), par.tolist(), dep.tolist(), int(linear), int(leaves))


def kept_trained(labels: np.ndarray, parent: np.ndarray, dep: np.ndarray, max_length: int, rule: str) -> np.ndarray:
    """``bool (n,)``: the trained tokens that stay under ``rule`` (step 1 of the module docstring).

    Args:
        labels: ``(n,)`` unshifted labels; parent: ``(n,)`` DFS parent array (``-1`` at roots);
        dep: ``(n,)`` depths; max_length: ``L``; rule: one of :data:`FIT_RULES`.
    """
    n = labels.size
    trained = trained_mask(labels, parent)  # parent is a full array here (never empty)
    L = int(max_length)
    if rule == "truncate":
        return trained & (dep < L)
    if rule == "turns":
        idx = np.flatnonzero(trained)
        child = np.full(n, -1, dtype=np.int64)
        child[parent[idx]] = idx  # the unique trained child of each position (check_tree)
        end = dep.copy()
        ch = child.tolist()
        e = end.tolist()
        for i in reversed(idx.tolist()):  # children come after parents in DFS order
            c = ch[i]
            if c >= 0 and trained[c]:
                e[i] = e[c]
        end = np.asarray(e, dtype=np.int64)
        return trained & (end < L)
    if rule == "drop":
        nxt = np.append(parent[1:], -2)
        is_leaf = nxt != np.arange(n)
        owner = np.where(is_leaf, np.arange(n), n)
        owner = np.minimum.accumulate(owner[::-1])[::-1]  # first leaf at or after i: in i's subtree
        return trained & (dep[owner] < L)
    raise ValueError(f"rule must be one of {FIT_RULES}, got {rule!r}")


def _leaf_groups(leaves: np.ndarray, rank: np.ndarray, dep: np.ndarray, L: int) -> list[tuple[int, int]]:
    """Step 3 of the module docstring: greedy groups ``(first leaf, last leaf)`` of consecutive
    kept leaves. A group of leaves ``a..b`` holds the path of ``a`` plus the kept nodes in
    ``(a, b]`` (pre-order: exactly what later leaves add); a group grows while it stays within
    ``L`` tokens.

    Args:
        leaves: ``(k,)`` the kept leaves, in DFS order; rank: ``(n,)`` position of each kept
            node among the kept nodes; dep: ``(n,)`` depths; L: tokens per row.
    """
    groups: list[tuple[int, int]] = []
    first = prev = int(leaves[0])
    size = int(dep[first]) + 1
    for b in leaves[1:].tolist():
        add = int(rank[b] - rank[prev])
        if size + add > L:
            groups.append((first, prev))
            first, size = b, int(dep[b]) + 1
        else:
            size += add
        prev = b
    groups.append((first, prev))
    return groups


def fit_tree(input_ids: Sequence[int], labels: Sequence[int], parent: Sequence[int], max_length: int,
             rule: str = "turns") -> FitResult:
    """Fit one row (a tree, or a single path given with an empty ``parent``) into ``max_length``.

    A row of at most ``max_length`` tokens comes back unchanged (one row). Otherwise see the
    module docstring. Pure: the inputs are not modified.

    Args:
        input_ids, labels: ``(n,)`` tokens and unshifted labels (``-100`` = untrained).
        parent: ``(n,)`` DFS parent array, or empty for a single path.
        max_length: ``L >= 1``, tokens per output row.
        rule: ``turns``, ``truncate`` or ``drop`` (:data:`FIT_RULES`).

    Returns:
        a :class:`FitResult`.

    Raises:
        ValueError: an unknown rule or ``max_length < 1``.
    """
    if rule not in FIT_RULES:
        raise ValueError(f"rule must be one of {FIT_RULES}, got {rule!r}")
    L = int(max_length)
    if L < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    ids = np.asarray(input_ids, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    n = ids.size
    par = np.asarray(parent, dtype=np.int64) if len(parent) else np.arange(n, dtype=np.int64) - 1
    dep = depths(par) if len(parent) else np.arange(n, dtype=np.int64)
    trained = trained_mask(lab, par)
    res = FitResult(trained_in=int(trained.sum()), keepable=int((trained & (dep < L)).sum()))
    if n <= L:
        if res.trained_in:
            nxt = np.append(par[1:], -2)
            leaves = np.flatnonzero(nxt != np.arange(n))
            res.rows = [_row_of(ids, lab, par, dep, leaves.size, int((dep[leaves] + 1).sum()))]
            res.trained_kept, res.tokens_out, res.tokens_unique = res.trained_in, n, n
        else:
            res.leaves_cut = int(num_leaves(par))
        return res
    keep_t = kept_trained(lab, par, dep, L, rule)
    res.trained_kept = int(keep_t.sum())
    if not res.trained_kept:
        res.leaves_cut = int(num_leaves(par))
        return res
    # step 2: the ancestor closure of the kept trained tokens (i is needed iff its subtree,
    # the contiguous range [i, end[i]), holds one)
    end = subtree_end(par)
    cs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep_t, out=cs[1:])
    need = cs[end] - cs[np.arange(n)] > 0
    kept = np.flatnonzero(need)
    res.tokens_unique = int(kept.size)
    all_leaves = np.flatnonzero(np.append(par[1:], -2) != np.arange(n))
    res.leaves_cut = int((~need[all_leaves]).sum())
    rank = np.full(n, -1, dtype=np.int64)
    rank[kept] = np.arange(kept.size)
    # leaves of the kept sub-forest: no kept node right after them is their child
    nxt_par = np.append(par[kept[1:]], -2)
    leaves = kept[nxt_par != kept]
    owned_after = -1  # tokens <= this are trained in an earlier group
    for a, b in _leaf_groups(leaves, rank, dep, L):
        # the ancestors of a (all of them: a's path), then the kept nodes in (a, b]
        anc = []
        i = int(par[a])
        while i >= 0:
            anc.append(i)
            i = int(par[i])
        nodes = np.concatenate([np.asarray(anc[::-1], dtype=np.int64), kept[rank[a] : rank[b] + 1]])
        g_lab = np.where(keep_t[nodes] & (nodes > owned_after), lab[nodes], IGNORE_INDEX)
        g_par_old = par[nodes]
        g_par = np.where(g_par_old >= 0, np.searchsorted(nodes, g_par_old), -1)
        g_leaves = leaves[(leaves >= a) & (leaves <= b)]
        res.rows.append(_row_of(ids[nodes], g_lab, g_par, dep[nodes], g_leaves.size, int((dep[g_leaves] + 1).sum())))
        res.tokens_out += int(nodes.size)
        owned_after = b
    return res
