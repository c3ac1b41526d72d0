"""Length-aware samplers: seedable, epoch-aware, distributed-aware and resumable mid-epoch.

* :class:`LengthGroupedSampler` yields *indices* for ``DataLoader(batch_size=B, sampler=...)``:
  random mega-batches, each sorted by length and cut into batches, batches shuffled.
* :class:`TokenBudgetBatchSampler` yields *batches* (lists of indices) for
  ``DataLoader(batch_sampler=...)`` holding at most ``max_tokens`` tokens: padded cost
  ``max_len * n`` or, padding-free, ``sum(len)``.

Both are deterministic functions of ``(lengths, seed, epoch)`` and the options, so every rank
computes the same global plan and takes its share: **every rank gets the same number of
batches** (a rank that runs out early would hang the others in DDP/FSDP collectives). To get
there the global plan is padded by repeating its first samples/batches (``drop_last=False``)
or cut (``drop_last=True``).

Resuming: ``state_dict()`` returns ``{"epoch", "num_yielded", ...}`` where ``num_yielded``
counts what this sampler's current iterator has yielded in the epoch (indices for
:class:`LengthGroupedSampler`, batches for :class:`TokenBudgetBatchSampler`). After
``load_state_dict(sd)`` the next ``iter()`` continues with the first item not yet yielded; later
iterations start at the beginning of the epoch again. ``set_epoch(e)`` with a *different* epoch
clears a pending resume position; calling it with the loaded epoch keeps it. Note that a
``DataLoader`` with workers pulls indices ahead of the batches the training loop consumed: if
you checkpoint from the loop, store the number of consumed batches (times ``batch_size`` for the
index sampler) as ``num_yielded`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["LengthGroupedSampler", "TokenBudgetBatchSampler"]


def _check_dist(num_replicas: int, rank: int) -> None:
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")


def _lengths(lengths) -> np.ndarray:
    arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        raise ValueError("lengths is empty")
    if arr.min() < 0:
        raise ValueError("lengths must be >= 0")
    return arr


class _Resumable:
    """Epoch bookkeeping and the resume position shared by both samplers."""

    _unit = "items"

    def __init__(self, seed: int, num_replicas: int, rank: int) -> None:
        _check_dist(num_replicas, rank)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self._resume = 0
        self._yielded = 0

    def _rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, salt])

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (call before each epoch, as with ``DistributedSampler``)."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self._resume = 0
            self._yielded = 0
        self.epoch = epoch

    def _fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "num_yielded", ...}``: enough to continue exactly where iteration stopped."""
        return {"epoch": self.epoch, "num_yielded": self._yielded, "seed": self.seed, **self._fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position: the next ``iter()`` starts with the first item not yet yielded."""
        mine = self._fingerprint()
        for key, value in mine.items():
            if key in state and key != "rank" and state[key] != value:
                raise ValueError(f"sampler state has {key}={state[key]!r} but this sampler has {value!r}")
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self._resume = self._yielded = int(state["num_yielded"])

    def _items(self) -> list:
        raise NotImplementedError

    def __iter__(self) -> Iterator:
        items = self._items()
        start = min(self._resume, len(items))
        self._resume = 0
        self._yielded = start
        for item in items[start:]:
            self._yielded += 1
            yield item


class LengthGroupedSampler(_Resumable):
    """Indices grouped by length: batches of similar length, in random order.

    Each epoch: a seeded permutation is cut into mega-batches of
    ``mega_batch_mult * batch_size * num_replicas`` indices; each mega-batch is sorted by
    length (longest first) and cut into global batches of ``batch_size * num_replicas``;
    the global batches are shuffled (the one holding the longest sequence goes first, so an
    out-of-memory shows at step 1); rank ``r`` takes slice ``r`` of each global batch, so the
    ranks of one step get sequences of similar length.

    Args:
        lengths: ``(N,)`` sequence lengths.
        batch_size: per-rank batch size ``B`` (the ``DataLoader``'s ``batch_size``).
        mega_batch_mult: batches per mega-batch (larger: less padding, less randomness).
        shuffle: ``False`` keeps the dataset order for the mega-batches and the batch order.
        seed: base seed; the epoch is mixed in.
        num_replicas, rank: data-parallel world size and this rank.
        drop_last: ``False``: pad the epoch to a multiple of ``B * num_replicas`` by repeating
            the first indices of the permutation; ``True``: drop the remainder.

    Yields:
        ``int`` indices; ``len(self)`` per epoch, the same on every rank.
    """

    _unit = "indices"

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        mega_batch_mult: int = 50,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed, num_replicas, rank)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if mega_batch_mult < 1:
            raise ValueError("mega_batch_mult must be >= 1")
        self.lengths = _lengths(lengths)
        self.batch_size = int(batch_size)
        self.mega_batch_mult = int(mega_batch_mult)
        self.shuffle = shuffle
        self.drop_last = drop_last
        n, g = self.lengths.size, self.batch_size * self.num_replicas
        self._total = (n // g) * g if drop_last else -(-n // g) * g
        self._cache: tuple[int, list[int]] | None = None

    def _fingerprint(self) -> dict[str, Any]:
        return {"n": int(self.lengths.size), "batch_size": self.batch_size, "num_replicas": self.num_replicas,
                "rank": self.rank}

    def __len__(self) -> int:
        return self._total // self.num_replicas

    def global_batches(self) -> np.ndarray:
        """``int64 (num_global_batches, batch_size * num_replicas)``: this epoch's plan for all ranks."""
        n = self.lengths.size
        g = self.batch_size * self.num_replicas
        order = self._rng().permutation(n) if self.shuffle else np.arange(n)
        if self._total <= n:
            order = order[: self._total]
        else:
            order = np.concatenate([order, np.resize(order, self._total - n)])
        if order.size == 0:
            return np.zeros((0, g), dtype=np.int64)
        mega = self.mega_batch_mult * g
        lens = self.lengths[order]
        parts = []
        for start in range(0, order.size, mega):
            chunk = order[start : start + mega]
            parts.append(chunk[np.argsort(-lens[start : start + mega], kind="stable")])
        batches = np.concatenate(parts).reshape(-1, g)
        if self.shuffle:
            batches = batches[self._rng(1).permutation(batches.shape[0])]
            longest = int(np.argmax(self.lengths[batches].max(axis=1)))
            batches[[0, longest]] = batches[[longest, 0]]
        return batches

    def _items(self) -> list[int]:
        if self._cache is None or self._cache[0] != self.epoch:
            b = self.batch_size
            mine = self.global_batches()[:, self.rank * b : (self.rank + 1) * b]
            self._cache = (self.epoch, mine.reshape(-1).tolist())
        return self._cache[1]


class TokenBudgetBatchSampler(_Resumable):
    """Batches of at most ``max_tokens`` tokens.

    Each epoch: a seeded permutation is cut into mega-batches of about
    ``mega_batch_mult * max_tokens`` tokens; inside each

    * padded (``padding_free=False``): sorted by length, longest first, and cut greedily so that
      ``longest * count <= max_tokens`` (the cost of the padded ``(count, longest)`` batch);
    * padding-free: packed by best-fit decreasing into bins of ``max_tokens`` (cost: total
      tokens), which fills batches to ~99%.

    A sequence longer than ``max_tokens`` gets a batch of its own (it exceeds the budget; filter or
    truncate such rows beforehand if that must not happen). The batches are shuffled and dealt
    round-robin to the ranks; the batch count is padded to a multiple of ``num_replicas`` by
    repeating the first batches (``drop_last=False``) or cut (``drop_last=True``), so every rank
    gets ``len(self)`` batches.

    Args:
        lengths: ``(N,)`` row lengths in tokens (packed rows: their total length).
        max_tokens: token budget per batch (per rank).
        padding_free: count ``sum(len)`` (for :class:`~sftdata.collate.collators.PaddingFreeCollator`)
            instead of ``max(len) * n`` (for :class:`~sftdata.collate.collators.PaddingCollator`).
        shuffle: ``False``: mega-batches in dataset order, batches in plan order.
        seed: base seed; the epoch is mixed in.
        num_replicas, rank: data-parallel world size and this rank.
        drop_last: see above.
        mega_batch_mult: batches per mega-batch, roughly.

    Yields:
        ``list[int]`` batches of indices; ``len(self)`` per epoch, the same on every rank (it can
        change from epoch to epoch as the packing changes).
    """

    _unit = "batches"

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        padding_free: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        mega_batch_mult: int = 32,
    ) -> None:
        super().__init__(seed, num_replicas, rank)
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if mega_batch_mult < 1:
            raise ValueError("mega_batch_mult must be >= 1")
        self.lengths = _lengths(lengths)
        self.max_tokens = int(max_tokens)
        self.padding_free = padding_free
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.mega_batch_mult = int(mega_batch_mult)
        self._cache: tuple[int, list[list[int]]] | None = None

    def _fingerprint(self) -> dict[str, Any]:
        return {"n": int(self.lengths.size), "max_tokens": self.max_tokens, "padding_free": self.padding_free,
                "num_replicas": self.num_replicas, "rank": self.rank}

    @staticmethod
    def batch_cost(lengths: np.ndarray, padding_free: bool) -> int:
        """Tokens a batch of these lengths occupies: ``sum`` or ``max * count``."""
        lengths = np.asarray(lengths)
        return int(lengths.sum()) if padding_free else int(lengths.max()) * int(lengths.size)

    def _pack_padded(self, idx: np.ndarray) -> list[np.ndarray]:
        lens = self.lengths[idx]
        order = np.argsort(-lens, kind="stable")
        idx, lens = idx[order], lens[order]
        out, i, n = [], 0, idx.size
        while i < n:
            count = max(1, self.max_tokens // max(int(lens[i]), 1))
            out.append(idx[i : i + count])
            i += count
        return out

    def _pack_free(self, idx: np.ndarray) -> list[np.ndarray]:
        from ..packing import plan_bfd

        lens = np.maximum(self.lengths[idx], 1)
        big = lens > self.max_tokens
        out = [idx[i : i + 1] for i in np.flatnonzero(big)]
        small = idx[~big]
        if small.size:
            plan = plan_bfd(lens[~big], self.max_tokens, seed=int(self._rng(2).integers(2**31)))
            out.extend(np.split(small[plan.order], plan.offsets[1:-1]))
        return out

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches for all ranks, after padding/cutting to a multiple of ``num_replicas``."""
        n = self.lengths.size
        order = self._rng().permutation(n) if self.shuffle else np.arange(n)
        cum = np.cumsum(np.maximum(self.lengths[order], 1))
        budget = self.mega_batch_mult * self.max_tokens
        cuts = np.searchsorted(cum, np.arange(budget, int(cum[-1]), budget), side="right")
        batches: list[np.ndarray] = []
        for part in np.split(order, cuts):
            if part.size:
                batches.extend(self._pack_free(part) if self.padding_free else self._pack_padded(part))
        if self.shuffle:
            perm = self._rng(3).permutation(len(batches))
            batches = [batches[i] for i in perm]
        r = self.num_replicas
        if len(batches) % r:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % r]
            else:
                extra = r - len(batches) % r
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
        return [b.tolist() for b in batches]

    def _items(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.global_batches()[self.rank :: self.num_replicas])
        return self._cache[1]

    def __len__(self) -> int:
        return len(self._items())
