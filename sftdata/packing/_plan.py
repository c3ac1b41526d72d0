"""A packing plan: which sequences go into which bin (row), in which order.

Planning works on lengths only (an ``int64`` numpy array), never on tokens, so it is global
over the whole dataset and fast: the strategies below are vectorised over the *length
histogram* (at most ``capacity`` distinct sizes), not over the items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BinPlan:
    """Items grouped into bins.

    Attributes:
        order: ``int64 (n,)`` item indices (positions in the ``lengths`` array given to the
            planner), grouped bin by bin; inside a bin, in placement order.
        offsets: ``int64 (bins + 1,)``; bin ``b`` holds ``order[offsets[b]:offsets[b + 1]]``.
        capacity: the bin size ``L`` (tokens).
        strategy: the strategy that produced the plan.
        info: strategy details (e.g. the tie-break window chosen by ``mbs``).
    """

    order: np.ndarray
    offsets: np.ndarray
    capacity: int
    strategy: str
    info: dict = field(default_factory=dict)

    @property
    def num_bins(self) -> int:
        """Number of bins (packed rows) of the plan."""
        return int(self.offsets.size - 1)

    def bin_lengths(self, lengths: np.ndarray) -> np.ndarray:
        """``int64 (bins,)`` tokens per bin for the item ``lengths`` the plan was made from."""
        if self.order.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.add.reduceat(np.asarray(lengths, dtype=np.int64)[self.order], self.offsets[:-1])

    def bin_of(self) -> np.ndarray:
        """``int64 (n,)``: the bin of each item (indexed like ``lengths``)."""
        out = np.empty(self.order.size, dtype=np.int64)
        out[self.order] = np.repeat(np.arange(self.num_bins, dtype=np.int64), np.diff(self.offsets))
        return out

    def permuted(self, perm: np.ndarray) -> "BinPlan":
        """The same bins in the order ``perm`` (a permutation of ``range(bins)``)."""
        sizes = np.diff(self.offsets)[perm]
        starts = self.offsets[:-1][perm]
        new_offsets = np.zeros(perm.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=new_offsets[1:])
        idx = np.repeat(starts - new_offsets[:-1], sizes) + np.arange(self.order.size, dtype=np.int64)
        return BinPlan(self.order[idx], new_offsets, self.capacity, self.strategy, dict(self.info))


def group_by_bin(items: np.ndarray, bins: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ``items`` by ``bins`` (stable: keeps the given order inside a bin).

    Returns ``(order, offsets)`` as in :class:`BinPlan`.
    """
    sort = np.argsort(bins, kind="stable")
    counts = np.bincount(bins, minlength=num_bins)
    offsets = np.zeros(num_bins + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return items[sort].astype(np.int64, copy=False), offsets


def items_by_size(lengths: np.ndarray, capacity: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item indices sorted by size (ties in a seeded random order), the size histogram and
    where each size starts in that sorted array.

    Returns ``(sorted_items, counts, starts)``: ``counts[s]`` items have size ``s`` and they are
    ``sorted_items[starts[s]:starts[s] + counts[s]]``.
    """
    n = lengths.size
    perm = np.random.default_rng(seed).permutation(n) if n else np.zeros(0, dtype=np.int64)
    sorted_items = perm[np.argsort(lengths[perm], kind="stable")]
    counts = np.bincount(lengths, minlength=capacity + 1).astype(np.int64)
    starts = np.zeros(capacity + 2, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return sorted_items, counts, starts[:-1]


def check_lengths(lengths, capacity: int) -> np.ndarray:
    """Validate and return ``lengths`` as ``int64``: every length in ``[1, capacity]``."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 1 or arr.max() > capacity):
        bad = int(arr.max()) if arr.max() > capacity else int(arr.min())
        raise ValueError(f"every length must be in [1, {capacity}] for packing; found {bad}")
    return arr
