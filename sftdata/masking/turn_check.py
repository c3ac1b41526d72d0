"""The definition of a trained turn, checked on every row before it is written.

For every trained turn ``k`` the root-to-node path that ends in it must be exactly the turn's
sequence ``tokens(P_k) + tokens(G_k)``, with labels on ``G_k`` as the turn gives them, and the
row may train no other token::

    row (a tree, DFS order)           sequences of the turns
    0 1 2 3 4 5 6                     P_1 G_1    = tokens 0 1 2 3     (2 3 trained)
    └─┴─┴─┬─┴─┐                       P_3 G_3    = tokens 0 1 4 5 6   (6 trained)
          2 3 4 5 6

The sequences are built from ``P_k``'s exact tokens and the generated tokens (checked by
decoding), and merged by :class:`sftdata.masking.tree.TrieBuilder`; this check does not trust that
construction. For each sequence it takes the trained nodes at the sequence's last depth that
hold its last token, reads each one's root path off the row (a DFS row stores a path as a few
contiguous runs, one per branch) and compares it with the sequence, tokens and then the labels of
the generated span; finally the trained nodes of all generated spans must be all the trained nodes
of the row.

A sequence given as ``Joined(F, shared, tail)`` (its first ``shared`` tokens are the training
rendering's) is compared in two parts, so a long conversation costs O(its tokens + the tails),
not O(turns x length): one pass marks every node whose root path is a prefix of ``F``
(``agrees[i]``: ``input_ids[i] == F[depth[i]]`` and ``agrees[parent[i]]``), then a path equals the
sequence when its node at depth ``shared - 1`` agrees with ``F`` and its last ``len(tail)`` nodes
hold ``tail``. A plain list is compared whole.
"""

from __future__ import annotations

from functools import partial
from itertools import compress
from operator import ne
from typing import Sequence

import numpy as np

from .tree import IGNORE_INDEX, Joined, TreeRow, as_list


_TRAINED = partial(ne, IGNORE_INDEX)  # a label that trains its token


def _chain_starts(parent: np.ndarray) -> np.ndarray:
    """``(n,) int64``: for each node, the first node of the contiguous run (``parent[i] == i - 1``)
    it belongs to."""
    n = parent.size
    starts = np.flatnonzero(parent != np.arange(-1, n - 1))
    if not starts.size or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    return starts[np.searchsorted(starts, np.arange(n), side="right") - 1]


def _path_runs(parent: list[int], start: list[int], node: int) -> list[tuple[int, int]]:
    """The root path of ``node`` as ``(start, end)`` runs of indices, root first."""
    runs = []
    x = node
    while x >= 0:
        s = start[x]
        runs.append((s, x + 1))
        x = parent[s]
    runs.reverse()
    return runs


def _node_at_depth(runs: list[tuple[int, int]], d: int) -> int:
    """The node at depth ``d`` of a path given as runs (root at depth 0)."""
    for s, e in runs:
        if d < e - s:
            return s + d
        d -= e - s
    raise IndexError(d)


def _agrees(head: Sequence[int], ids: np.ndarray, parent: np.ndarray, depth: np.ndarray, run_starts: np.ndarray) -> np.ndarray:
    """``(n,) bool``: whether each node's root path is ``head[:depth + 1]`` (runs in DFS order: a
    run's parent lies before it, so one pass over the runs propagates the answer)."""
    h = np.asarray(head, dtype=np.int64)
    inside = depth < h.size
    eq = np.zeros(ids.size, dtype=bool)
    eq[inside] = ids[inside] == h[depth[inside]]
    out = np.empty(ids.size, dtype=bool)
    bounds = np.append(run_starts, ids.size)
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        p = int(parent[s])
        if p >= 0 and not out[p]:
            out[s:e] = False
        else:
            out[s:e] = np.logical_and.accumulate(eq[s:e])
    return out


def _last_nodes(runs: list[tuple[int, int]], count: int) -> list[int]:
    """The last ``count`` node indices of a path given as runs (O(count + runs read))."""
    parts: list[range] = []
    need = count
    for s, e in reversed(runs):
        if need <= 0:
            break
        a = max(s, e - need)
        parts.append(range(a, e))
        need -= e - a
    return [i for r in reversed(parts) for i in r]


def check_turn_paths(row: TreeRow, sequences: Sequence[tuple[list[int], list[int], int]]) -> str | None:
    """Check ``row`` against the turns' sequences.

    Args:
        row: the tree row (a single path when ``row.parent`` is empty).
        sequences: per trained turn, ``(input_ids, labels, prompt_len)``: ``tokens(P_k) +
            tokens(G_k)``, ``-100`` on the prompt, and the prompt's length (lists or
            :class:`~sftdata.masking.tree.Joined` views; each is built as a list only while it is compared).

    Returns:
        ``None`` when every sequence is a root path of ``row`` whose generated span carries the
        sequence's labels, and no other token of ``row`` is trained; else the broken invariant,
        in words.
    """
    n = len(row.input_ids)
    labels = row.labels
    ids_list = row.input_ids
    if row.parent:
        parent = row.parent
        depth = np.asarray(row.position_ids, dtype=np.int64)
        par_arr = np.asarray(parent, dtype=np.int64)
        start_arr = _chain_starts(par_arr)
        start = start_arr.tolist()
    else:
        parent, depth, start = list(range(-1, n - 1)), np.arange(n), [0] * n
        par_arr, start_arr = np.arange(-1, n - 1), np.zeros(n, dtype=np.int64)
    trained = np.flatnonzero(np.asarray(labels, dtype=np.int64) != IGNORE_INDEX)
    by_depth = trained[np.argsort(depth[trained], kind="stable")]  # trained nodes sorted by depth
    sorted_depths = depth[by_depth]
    covered: set[int] = set()
    agrees: dict[int, np.ndarray] = {}  # id(head) -> nodes whose root path is a prefix of that head
    # longest first: where the builder stored one path twice (it branches rather than train a node
    # twice), a shorter sequence then takes the copy the longer ones did not walk through
    for turn in sorted(range(len(sequences)), key=lambda t: -len(sequences[t][0])):
        seq_ids, seq_labels, prompt_len = sequences[turn]
        m = len(seq_ids)
        if type(seq_ids) is Joined and seq_ids.head is not None and seq_ids.n:
            head, shared, tail = seq_ids.head, seq_ids.n, seq_ids.tail
            if id(head) not in agrees:
                run_starts = start_arr[np.flatnonzero(np.diff(start_arr, prepend=-1))]  # start_arr is non-decreasing
                agrees[id(head)] = _agrees(head, np.asarray(ids_list, dtype=np.int64), par_arr, depth, run_starts)
            agree = agrees[id(head)]
        else:
            head, shared, tail, agree = None, 0, as_list(seq_ids), None
        found = None
        lo, hi = np.searchsorted(sorted_depths, [m - 1, m], side="left").tolist()
        last = seq_ids[-1]
        ends = [e for e in by_depth[lo:hi].tolist() if ids_list[e] == last]  # trained, at the end's depth
        for e in sorted(ends, key=lambda e: e in covered):
            runs = _path_runs(parent, start, e)
            if agree is not None and not agree[_node_at_depth(runs, shared - 1)]:
                continue
            if [ids_list[i] for i in _last_nodes(runs, len(tail))] == tail:
                found = runs
                break
        if found is None:
            return f"turn {turn}: its sequence P_k + G_k is not a path of the row"
        nodes = _last_nodes(found, m - prompt_len)
        got = [labels[i] for i in nodes]
        if got != seq_labels[prompt_len:]:
            return f"turn {turn}: the labels of its generated tokens differ from the turn's"
        covered.update(compress(nodes, map(_TRAINED, got)))
    if len(covered) != trained.size:
        return f"{trained.size - len(covered)} trained tokens of the row belong to no turn's generated text"
    return None
