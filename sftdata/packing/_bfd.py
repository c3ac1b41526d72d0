"""Best-fit decreasing (BFD), exact, on the length histogram.

Classic BFD takes items longest first and puts each into the open bin with the *least*
remaining space that still fits it (a new bin if none). Done item by item that is
``O(n log L)`` Python steps (TRL uses a segment tree). Here it is done in bulk: bins with
the same remaining space are interchangeable, so the state is "how many open bins have
``c`` tokens left" (``c`` in ``0..L``) and all items of one size are placed at once:

* the best fit for size ``s`` is the smallest ``c >= s`` with open bins (a sorted list of
  the non-empty ``c`` values, ``bisect``);
* each such bin takes ``q = c // s`` items of size ``s`` in a row (after one item its space
  ``c - s`` is again the smallest that fits, as long as it is ``>= s``), so ``k // q`` bins are
  filled with ``q`` items each and moved to ``c - q*s`` in one step.

The number of steps is bounded by the number of (size, space) transitions, a few thousand
for ``L = 4096`` whatever ``n`` is; the per-item work is numpy (``O(n log n)`` for the sort).
The result is exactly the packing item-by-item BFD produces (ties between bins with the same
space broken last-in-first-out).
"""

from __future__ import annotations

import bisect

import numpy as np

from ._plan import BinPlan, check_lengths, group_by_bin, items_by_size


def plan_bfd(lengths, capacity: int, *, seed: int = 0) -> BinPlan:
    """Best-fit decreasing.

    Args:
        lengths: ``(n,)`` integer lengths, each in ``[1, capacity]``.
        capacity: the bin size ``L`` in tokens.
        seed: order of equal-length items (which of them share a bin).

    Returns:
        a :class:`BinPlan` whose ``order`` indexes ``lengths``.
    """
    lengths = check_lengths(lengths, capacity)
    L = int(capacity)
    sorted_items, counts, starts = items_by_size(lengths, L, seed)

    open_ids: dict[int, list[np.ndarray]] = {}  # space -> stack of chunks of bin ids
    open_cnt: dict[int, int] = {}
    nonempty: list[int] = []  # sorted spaces (1..L-1) with open bins
    item_parts: list[np.ndarray] = []
    bin_parts: list[np.ndarray] = []
    next_bin = 0

    def pop(c: int, m: int) -> np.ndarray:
        chunks = open_ids[c]
        out = []
        while m > 0:
            last = chunks[-1]
            if last.size <= m:
                out.append(last)
                chunks.pop()
                m -= last.size
            else:
                out.append(last[-m:])
                chunks[-1] = last[:-m]
                m = 0
        return out[0] if len(out) == 1 else np.concatenate(out)

    for s in np.flatnonzero(counts)[::-1].tolist():
        k = int(counts[s])
        ptr = int(starts[s])
        while k > 0:
            i = bisect.bisect_left(nonempty, s)
            if i < len(nonempty):
                c = nonempty[i]
                avail = open_cnt[c]
            else:
                c, avail = L, None  # open new bins
            q = c // s
            full = k // q if avail is None else min(k // q, avail)
            nb, per = (full, q) if full > 0 else (1, k)
            if c == L:
                ids = np.arange(next_bin, next_bin + nb, dtype=np.int64)
                next_bin += nb
            else:
                ids = pop(c, nb)
                open_cnt[c] -= nb
                if open_cnt[c] == 0:
                    nonempty.pop(i)
                    del open_cnt[c], open_ids[c]
            item_parts.append(sorted_items[ptr : ptr + nb * per])
            bin_parts.append(ids if per == 1 else np.repeat(ids, per))
            ptr += nb * per
            k -= nb * per
            nc = c - per * s
            if nc > 0:
                if nc not in open_cnt:
                    bisect.insort(nonempty, nc)
                    open_cnt[nc] = 0
                    open_ids[nc] = []
                open_cnt[nc] += nb
                open_ids[nc].append(ids)

    if not item_parts:
        return BinPlan(np.zeros(0, np.int64), np.zeros(1, np.int64), L, "bfd")
    order, offsets = group_by_bin(np.concatenate(item_parts), np.concatenate(bin_parts), next_bin)
    return BinPlan(order, offsets, L, "bfd")
