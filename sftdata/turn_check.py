"""The definition of a trained turn, checked on every row before it is written.

For every trained turn ``k`` the root-to-node path that ends in it must be exactly the turn's
sequence ``tokens(P_k) + tokens(G_k)``, with labels on ``G_k`` as the turn gives them, and the
row may train no other token::

    row (a tree, DFS order)           sequences of the turns
    0 1 2 3 4 5 6                     P_1 G_1    = tokens 0 1 2 3     (2 3 trained)
    └─┴─┴─┬─┴─┐                       P_3 G_3    = tokens 0 1 4 5 6   (6 trained)
          2 3 4 5 6

The sequences are built from ``P_k``'s exact tokens and the generated tokens (checked by
decoding), and merged by :class:`sftdata.tree.TrieBuilder`; this check does not trust that
construction. For each sequence it takes the trained nodes at the sequence's last depth that
hold its last token, reads each one's root path off the row (a DFS row stores a path as a few
contiguous runs, one per branch: the path is a concatenation of list slices) and compares it
with the sequence, tokens and then the labels of the generated span; finally the trained nodes
of all generated spans must be all the trained nodes of the row. Cost per row: O(tokens) numpy
work plus list slices and compares (C speed) over every sequence.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .tree import IGNORE_INDEX, TreeRow, as_list


def _chain_starts(parent: np.ndarray) -> np.ndarray:
    """``(n,) int64``: for each node, the first node of the contiguous run (``parent[i] == i - 1``)
    it belongs to."""
    n = parent.size
    starts = np.flatnonzero(parent != np.arange(-1, n - 1))
    if not starts.size or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    return starts[np.searchsorted(starts, np.arange(n), side="right") - 1]


def _root_path(values: list[int], parent: list[int], start: list[int], node: int) -> tuple[list[int], list[tuple[int, int]]]:
    """``values`` along the root path of ``node`` (root first), and the path as ``(start, end)``
    runs of indices, root first."""
    runs = []
    x = node
    while x >= 0:
        s = start[x]
        runs.append((s, x + 1))
        x = parent[s]
    runs.reverse()
    out: list[int] = []
    for s, e in runs:
        out += values[s:e]
    return out, runs


def _last_nodes(runs: list[tuple[int, int]], count: int) -> list[int]:
    """The last ``count`` node indices of a path given as runs."""
    out: list[int] = []
    for s, e in reversed(runs):
        if len(out) >= count:
            break
        out[:0] = range(max(s, e - (count - len(out))), e)
    return out


def check_turn_paths(row: TreeRow, sequences: Sequence[tuple[list[int], list[int], int]]) -> str | None:
    """Check ``row`` against the turns' sequences.

    Args:
        row: the tree row (a single path when ``row.parent`` is empty).
        sequences: per trained turn, ``(input_ids, labels, prompt_len)``: ``tokens(P_k) +
            tokens(G_k)``, ``-100`` on the prompt, and the prompt's length (lists or
            :class:`~sftdata.tree.Joined` views; each is built as a list only while it is compared).

    Returns:
        ``None`` when every sequence is a root path of ``row`` whose generated span carries the
        sequence's labels, and no other token of ``row`` is trained; else the broken invariant,
        in words.
    """
    n = len(row.input_ids)
    labels = row.labels
    if row.parent:
        parent = row.parent
        depth = np.asarray(row.position_ids, dtype=np.int64)
        start = _chain_starts(np.asarray(parent, dtype=np.int64)).tolist()
    else:
        parent, depth, start = list(range(-1, n - 1)), np.arange(n), [0] * n
    trained = np.flatnonzero(np.asarray(labels, dtype=np.int64) != IGNORE_INDEX)
    by_depth = trained[np.argsort(depth[trained], kind="stable")]  # trained nodes sorted by depth
    sorted_depths = depth[by_depth]
    covered: set[int] = set()
    # longest first: where the builder stored one path twice (it branches rather than train a node
    # twice), a shorter sequence then takes the copy the longer ones did not walk through
    for turn in sorted(range(len(sequences)), key=lambda t: -len(sequences[t][0])):
        seq_ids, seq_labels, prompt_len = sequences[turn]
        m = len(seq_ids)
        found = None
        lo, hi = np.searchsorted(sorted_depths, [m - 1, m], side="left").tolist()
        ends = [e for e in by_depth[lo:hi].tolist() if row.input_ids[e] == seq_ids[-1]]  # trained, at the end's depth
        want = as_list(seq_ids) if ends else None
        for e in sorted(ends, key=lambda e: e in covered):
            path, runs = _root_path(row.input_ids, parent, start, e)
            if path == want:
                found = runs
                break
        if found is None:
            return f"turn {turn}: its sequence P_k + G_k is not a path of the row"
        nodes = _last_nodes(found, m - prompt_len)
        if [labels[i] for i in nodes] != seq_labels[prompt_len:]:
            return f"turn {turn}: the labels of its generated tokens differ from the turn's"
        covered.update(i for i in nodes if labels[i] != IGNORE_INDEX)
    if len(covered) != trained.size:
        return f"{trained.size - len(covered)} trained tokens of the row belong to no turn's generated text"
    return None
