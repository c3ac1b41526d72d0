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
construction. It finds each sequence's last node by a polynomial hash of its root path
(uint64 arithmetic, modulo 2**64, computed per chain with numpy), walks the generated span back
up the parent pointers comparing tokens and labels, and finally requires that the trained nodes
it visited are all the trained nodes of the row. Cost: O(row tokens) numpy work plus
O(generated tokens) Python steps per row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .tree import IGNORE_INDEX, TreeRow

_BASE = np.uint64(0x100000001B3)  # the 64-bit FNV prime; any odd base works


def _powers(n: int) -> np.ndarray:
    """``(n,) uint64``: ``_BASE ** i`` modulo 2**64."""
    out = np.empty(n, dtype=np.uint64)
    out[:1] = 1
    if n > 1:
        with np.errstate(over="ignore"):
            np.multiply.accumulate(np.full(n - 1, _BASE, dtype=np.uint64), out=out[1:])
    return out


def _path_hashes(ids: np.ndarray, parent: np.ndarray, depth: np.ndarray, pw: np.ndarray) -> np.ndarray:
    """``(n,) uint64``: for each node, the hash of the tokens of its root path (itself included):
    ``sum((token + 1) * _BASE ** depth)`` over the path, modulo 2**64."""
    n = ids.size
    with np.errstate(over="ignore"):
        w = (ids.astype(np.uint64) + np.uint64(1)) * pw[depth]
        if not parent.size:
            return np.cumsum(w, dtype=np.uint64)
        starts = np.flatnonzero(parent != np.arange(-1, n - 1))
        starts = np.concatenate(([0], starts[starts > 0]))
        out = np.empty(n, dtype=np.uint64)
        ends = np.append(starts[1:], n)
        for s, e in zip(starts.tolist(), ends.tolist()):
            base = out[parent[s]] if parent[s] >= 0 else np.uint64(0)
            out[s:e] = np.cumsum(w[s:e], dtype=np.uint64) + base
    return out


def check_turn_paths(row: TreeRow, sequences: Sequence[tuple[list[int], list[int], int]]) -> str | None:
    """Check ``row`` against the turns' sequences.

    Args:
        row: the tree row (a single path when ``row.parent`` is empty).
        sequences: per trained turn, ``(input_ids, labels, prompt_len)``: ``tokens(P_k) +
            tokens(G_k)``, ``-100`` on the prompt, and the prompt's length.

    Returns:
        ``None`` when every sequence is a root path of ``row`` whose generated span carries the
        sequence's labels, and no other token of ``row`` is trained; else the broken invariant,
        in words.
    """
    n = len(row.input_ids)
    ids = np.asarray(row.input_ids, dtype=np.int64)
    labels = row.labels
    parent = np.asarray(row.parent, dtype=np.int64)
    depth = np.asarray(row.position_ids, dtype=np.int64) if parent.size else np.arange(n, dtype=np.int64)
    longest = max([n] + [len(s[0]) for s in sequences])
    pw = _powers(longest + 1)
    hashes = _path_hashes(ids, parent, depth, pw)
    trained_nodes = [i for i, y in enumerate(labels) if y != IGNORE_INDEX]
    by_hash: dict[tuple[int, int], list[int]] = {}
    for i in trained_nodes:  # a sequence ends in a trained token (its stop token)
        by_hash.setdefault((int(hashes[i]), int(depth[i])), []).append(i)
    visited: set[int] = set()
    # longest first: where the builder stored one path twice (it branches rather than train a node
    # twice), a shorter sequence then takes the copy the longer ones did not walk through
    for turn in sorted(range(len(sequences)), key=lambda t: -len(sequences[t][0])):
        seq_ids, seq_labels, prompt_len = sequences[turn]
        m = len(seq_ids)
        with np.errstate(over="ignore"):
            h = int(np.sum((np.asarray(seq_ids, dtype=np.uint64) + np.uint64(1)) * pw[:m], dtype=np.uint64))
        ends = by_hash.get((h, m - 1)) or []
        node = next((e for e in ends if e not in visited), ends[0] if ends else None)
        if node is None:
            return f"turn {turn}: its sequence P_k + G_k is not a path of the row"
        for j in range(m - 1, prompt_len - 1, -1):
            if node < 0 or row.input_ids[node] != seq_ids[j] or labels[node] != seq_labels[j]:
                return f"turn {turn}: the row's tokens or labels differ from the turn's at position {j}"
            if labels[node] != IGNORE_INDEX:
                visited.add(node)
            node = int(parent[node]) if parent.size else node - 1
    if len(visited) != len(trained_nodes):
        return f"{len(trained_nodes) - len(visited)} trained tokens of the row belong to no turn's generated text"
    return None
