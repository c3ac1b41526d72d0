"""Prefix trees of token sequences: many examples of one conversation in one row.

When a chat template rewrites history (Qwen3 drops earlier reasoning, gpt-oss drops the
analysis of tool calls once a final answer follows), every rewritten turn is its own
inference-time sequence ``P_k + G_k``. Those sequences share long prefixes (system prompt,
tool schemas, earlier turns). A *tree row* stores their token trie once, serialised
depth-first (pre-order), so each shared prefix is stored and computed once::

    sequences                         tree row (DFS order)          parent  depth
    A:  s y s u 1 a 1                 0 s                             -1      0
    B:  s y s u 1 b 1 b 2             1 y                              0      1
                                      2 s                              1      2
                                      3 u                              2      3
                                      4 1                              3      4
                                      5 a   (A's branch)               4      5
                                      6 1                              5      6
                                      7 b   (B's branch)               4      5
                                      8 1                              7      6
                                      9 2                              8      7

Columns of a tree row (all ``list<int32>`` of length ``n``):

* ``input_ids``: the tokens in DFS order;
* ``labels``: unshifted (Hugging Face convention): ``-100`` or ``input_ids[i]``. A trained
  token ``i`` is predicted from the position of its **parent** (``parent[i]``), which is
  ``i - 1`` except at the first token of a branch;
* ``parent``: index of each token's parent, ``-1`` for a root; ``parent[i] < i``;
* ``position_ids``: the depth of each token (``0`` at a root), i.e. its position in the
  linear sequence it belongs to, which is what RoPE must see.

A row that is a single path (no branch) stores ``parent = position_ids = []``: it is exactly
an ordinary linear row (``parent[i] = i - 1``, ``position_ids = 0..n-1``).

Attention in a tree row: token ``q`` attends to token ``k`` iff ``k`` is an ancestor of ``q``
or ``q`` itself. In DFS order the subtree of ``k`` is the contiguous range
``[k, subtree_end[k])``, so the rule is ``k <= q < subtree_end[k]`` (see :func:`subtree_end`).
The same rule describes packed linear sequences (``subtree_end`` = end of the sequence),
so one mask serves linear, packed and tree rows (Tree Training, arXiv 2511.00413, uses the
same DFS serialisation).

Guarantees of :class:`TrieBuilder` (checked by :func:`check_tree`):

* every trained token is trained once: summing the loss over the tree's trained tokens equals
  summing it over the linear examples it was built from (no weight column is needed);
* no position has two trained children, so "the target predicted at position ``p``" is
  well defined (:func:`shift_labels`): a Hugging Face model can train a tree batch through its
  own loss with ``shift_labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .joined import Joined, as_list  # noqa: F401 - the tree API lives in one namespace
from .tree_arrays import (  # noqa: F401 - the tree API lives in one namespace
    IGNORE_INDEX,
    check_tree,
    depths,
    linear_length,
    num_leaves,
    parent_from_depths,
    shift_labels,
    subtree_end,
    trained_mask,
    unroll,
)

__all__ = [
    "IGNORE_INDEX",
    "Joined",
    "TreeRow",
    "TrieBuilder",
    "check_tree",
    "common_prefix_len",
    "depths",
    "linear_length",
    "num_leaves",
    "parent_from_depths",
    "shift_labels",
    "subtree_end",
    "unroll",
]


def common_prefix_len(a: Sequence[int], b: Sequence[int], start: int = 0) -> int:
    """Length of the longest common prefix of two int lists (C-speed slice compares, O(n log n)).

    With ``start``, ``a[:start] == b[:start]`` is taken as known and the result is at least
    ``start``: windows from ``start`` on are compared, doubling while they agree, so a
    divergence soon after ``start`` costs no copy of the long tails."""
    n = min(len(a), len(b))
    lo, step = min(max(start, 0), n), 64
    while True:  # a[:lo] == b[:lo]; find a window [lo, hi) where they differ
        hi = min(lo + step, n)
        if a[lo:hi] != b[lo:hi]:
            break
        if hi == n:
            return n
        lo, step = hi, step * 2
    # invariant: a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(slots=True)
class TreeRow:
    """One tree row (see the module docstring for the columns).

    Attributes:
        input_ids, labels: ``(n,)`` token ids and unshifted labels.
        parent, position_ids: ``(n,)``, or both empty for a single path.
        linear_length: tokens the same examples take as linear rows (sum of the lengths of
            every root-to-leaf path); ``n`` for a single path.
        num_paths: number of root-to-leaf paths (linear examples).
    """

    input_ids: list[int]
    labels: list[int]
    parent: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    linear_length: int = 0
    num_paths: int = 1

    @property
    def is_path(self) -> bool:
        """A single path (no branch): ``parent`` and ``position_ids`` are empty."""
        return not self.parent

    @property
    def num_trained(self) -> int:
        """Trained tokens (:func:`sftdata.masking.tree_arrays.trained_mask`: labels a position predicts)."""
        return int(trained_mask(self.labels, self.parent).sum())


class _Chain:
    """A run of trie nodes ``tokens[0..]`` whose first node hangs below ``attach`` (chain, offset)."""

    __slots__ = ("tokens", "labels", "attach", "branches")

    def __init__(self, tokens: list[int], labels: list[int], attach: tuple[int, int] | None) -> None:
        self.tokens = tokens
        self.labels = labels
        self.attach = attach
        self.branches: dict[int, list[int]] = {}  # offset -> chain ids attached below that node


class TrieBuilder:
    """Merges token sequences with labels into one prefix tree.

    Sequences are inserted in order; each one shares the longest prefix it has in common with
    any sequence inserted before (same tokens), and the rest becomes a new branch. Where
    sharing would train one node twice, or give one node two trained children, the new
    sequence branches earlier instead (so the guarantees in the module docstring hold; this
    only happens on pathological templates).

    Example::

        b = TrieBuilder()
        b.add(ids_F, [-100] * len(ids_F))          # the training rendering, untrained
        b.add(ids_P + ids_G, [-100] * len(ids_P) + ids_G)
        row = b.build()
    """

    def __init__(self) -> None:
        self._chains: list[_Chain] = []
        self._paths: list[tuple[Sequence[int], list[tuple[int, int, int]]]] = []  # (tokens, [(chain, path_start, length)])
        self._pivot_lcp: list[int] = []  # each path's common prefix with the first path
        self._by_pivot: dict[int, list[int]] = {}  # that common prefix -> the paths (after the first) with it

    # -- insertion ----------------------------------------------------------------
    def add(self, input_ids: Sequence[int], labels: Sequence[int], trained_from: int = 0, known_prefix: int = 0) -> int:
        """Insert one sequence. ``labels`` is ``-100`` or the token id at each position.

        Args:
            input_ids, labels: lists, or :class:`Joined` views (a sequence that shares the first
                path's leading tokens is then stored as a reference to them plus its tail, so
                memory grows with the tails, not with the number of sequences times their length).
            trained_from: no label before this index is trained (a prompt's length): lets
                long prompts be inserted without scanning their labels.
            known_prefix: this many leading tokens are known to equal the first sequence's
                (a prompt encoded as a prefix of the rendering): they are not compared again.

        Raises:
            ValueError: different lengths, an empty sequence, or a label that is neither
                ``-100`` nor its token.

        Returns:
            the length of the prefix this sequence has in common with the first one inserted.
        """
        ids = input_ids if type(input_ids) is list or type(input_ids) is Joined else list(input_ids)
        labs = labels if type(labels) is list or type(labels) is Joined else list(labels)
        if len(ids) != len(labs) or not ids:
            raise ValueError(f"a tree sequence needs tokens and labels of the same non-zero length, got {len(ids)} and {len(labs)}")
        t0 = max(trained_from, 0)
        if labs[t0:] == ids[t0:]:  # every token from t0 on is trained (a generated turn): one C compare
            trained = list(range(t0, len(labs)))
        else:
            trained = [i for i in range(t0, len(labs)) if labs[i] != IGNORE_INDEX]
            if any(labs[i] != ids[i] for i in trained):
                raise ValueError("labels must be -100 or equal to input_ids at every position")
        best, best_len, pivot = self._longest_shared(ids, known_prefix)
        segs = self._paths[best][1] if best is not None else []
        share = self._safe_share(segs, best_len, ids, labs, trained)
        for i in trained:
            if i >= share:
                break
            c, j = self._node(segs, i)
            self._chains[c].labels[j] = labs[i]
        new_segs = self._cut(segs, share)
        if share < len(ids):
            attach = self._node(segs, share - 1) if share > 0 else None
            cid = len(self._chains)
            self._chains.append(_Chain(ids[share:], labs[share:], attach))
            if attach is not None:
                self._chains[attach[0]].branches.setdefault(attach[1], []).append(cid)
            new_segs.append((cid, share, len(ids) - share))
        if self._paths:
            self._by_pivot.setdefault(pivot, []).append(len(self._paths))
        self._pivot_lcp.append(pivot)
        self._paths.append((ids, new_segs))
        return self._pivot_lcp[-1]

    def _longest_shared(self, ids: list[int], known: int = 0) -> tuple[int | None, int, int]:
        """(path index, length) of the longest common prefix of ``ids`` with an inserted path,
        and that prefix's length with the first path (``len(ids)`` when ``ids`` is the first).

        With ``l(a, b)`` the common prefix length, ``l(x, p) = min(l(x, F), l(p, F))`` whenever
        ``l(x, F) != l(p, F)`` (F the first path), so only paths that leave F where ``x`` does
        need comparing, and only beyond that point: no other path shares more than F does
        (``min(l(p, F), l(x, F)) <= l(x, F)``), so they are looked up by that length, not scanned
        (linear in the number of paths over a conversation, not quadratic)."""
        if not self._paths:
            return None, 0, len(ids)
        first = self._paths[0][0]
        pivot = common_prefix_len(ids, first, known)
        best, best_len = (0, pivot) if pivot else (None, 0)
        for p in self._by_pivot.get(pivot, ()):
            n = common_prefix_len(ids, self._paths[p][0], pivot)
            if n > best_len:
                best, best_len = p, n
        return best, best_len, pivot

    @staticmethod
    def _node(segs: list[tuple[int, int, int]], i: int) -> tuple[int, int]:
        """(chain, offset) of the node at index ``i`` of a path given as segments."""
        for c, start, n in segs:
            if start <= i < start + n:
                return c, i - start
        raise IndexError(i)

    @staticmethod
    def _cut(segs: list[tuple[int, int, int]], length: int) -> list[tuple[int, int, int]]:
        out = []
        for c, start, n in segs:
            if start >= length:
                break
            out.append((c, start, min(n, length - start)))
        return out

    def _trained_children(self, node: tuple[int, int] | None) -> list[tuple[int, int]]:
        """Children of ``node`` (chain, offset) whose label is trained."""
        if node is None:
            return []
        c, j = node
        ch = self._chains[c]
        out = []
        if j + 1 < len(ch.tokens) and ch.labels[j + 1] != IGNORE_INDEX:
            out.append((c, j + 1))
        for b in ch.branches.get(j, ()):
            if self._chains[b].labels[0] != IGNORE_INDEX:
                out.append((b, 0))
        return out

    def _parent(self, node: tuple[int, int]) -> tuple[int, int] | None:
        c, j = node
        return (c, j - 1) if j > 0 else self._chains[c].attach

    def _safe_share(self, segs, share: int, ids, labs, trained: list[int]) -> int:
        """Largest prefix length <= ``share`` that can be shared without training a node twice
        or giving a node two trained children."""
        for i in trained:
            if i >= share:
                break
            node = self._node(segs, i)
            c, j = node
            if self._chains[c].labels[j] != IGNORE_INDEX:
                share = i  # already trained by another sequence: branch before it
                break
            others = [x for x in self._trained_children(self._parent(node)) if x != node]
            if others:
                share = max(i - 1, 0)  # its parent already has a trained child: branch above
                break
        while 0 < share < len(ids) and labs[share] != IGNORE_INDEX and self._trained_children(self._node(segs, share - 1)):
            share -= 1
        return share

    # -- serialisation ------------------------------------------------------------
    def build(self) -> TreeRow:
        """The DFS serialisation (a single path gives ``parent = position_ids = []``)."""
        if not self._chains:
            raise ValueError("no sequence was added")
        if len(self._chains) == 1:
            ch = self._chains[0]
            return TreeRow(list(ch.tokens), list(ch.labels), [], [], len(ch.tokens), 1)
        ids: list[int] = []
        labels: list[int] = []
        parent: list[int] = []
        depth: list[int] = []
        start: dict[int, int] = {}
        base_depth: dict[int, int] = {}
        runs = leaves = linear = 0  # runs: where parent[i] != i - 1; leaves and the sum of their depth + 1
        chains = self._chains
        # pre-order, iteratively (a chain, then its branches from the last token up: the
        # continuation came first); no recursion, so no depth limit and no closure cycle keeping
        # the builder alive after it returns
        stack = [cid for cid in range(len(chains) - 1, -1, -1) if chains[cid].attach is None]
        while stack:
            cid = stack.pop()
            ch = chains[cid]
            pos = len(ids)
            start[cid] = pos
            if ch.attach is None:
                p, d0 = -1, 0
            else:
                ac, aj = ch.attach
                p = start[ac] + aj
                d0 = base_depth[ac] + aj + 1
            base_depth[cid] = d0
            n = len(ch.tokens)
            runs += p != pos - 1 or pos == 0
            ids.extend(ch.tokens)
            labels.extend(ch.labels)
            parent.append(p)
            parent.extend(range(pos, pos + n - 1))
            depth.extend(range(d0, d0 + n))
            if not ch.branches.get(n - 1):  # the chain's last token has no child: a leaf
                leaves += 1
                linear += d0 + n
            if ch.branches:
                stack.extend(reversed([b for j in sorted(ch.branches, reverse=True) for b in ch.branches[j]]))
        if runs == 1:  # branches that only continued a path: still one path
            return TreeRow(ids, labels, [], [], len(ids), 1)
        return TreeRow(ids, labels, parent, depth, linear, leaves)
