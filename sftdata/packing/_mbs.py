"""``mbs``: minimum-bin-slack completion with pair search, then repair (the default strategy).

Why not BFD: when most sequences are about a third of ``L`` (agent traces: a long system
prompt with tool schemas plus a few turns), BFD puts the two longest items together first and
then rarely finds a third item small enough for the gap; it ends at 94-96% fill. What packs
tight is choosing, for each bin, *the combination of items* that fills it.

Completion greedy (on the length histogram, like :mod:`._bfd`):

1. Open a bin with the longest remaining item ``a``; its slack is ``r = L - a``.
2. Fill the slack: repeatedly take the best *pair* ``(b, c)`` of remaining items with
   ``b + c <= r`` (max sum; for every candidate ``b`` the partner is the largest ``c <= r - b``,
   one vectorised ``searchsorted`` over the distinct sizes), or the best single item if that
   is larger; when items are small relative to the slack (``3 * s_max <= r``) take several of
   the largest at once. Stop when nothing fits.
3. Among pairs with the same (maximal) sum, which to take matters a lot: the smallest
   partners are the scarce fillers that later bins need. The tie-break takes the pair whose
   smaller item ``c`` is closest to ``c_min + W`` (``c_min`` the smallest partner among the
   tied pairs), for a window ``W``.
4. The bin's composition (a multiset of sizes) is then replicated ``k`` times at once, ``k``
   as many times as the remaining counts allow: every step exhausts at least one size, so the
   number of steps is a small multiple of the number of distinct lengths (``<= L``), whatever
   ``n`` is.

Window search: every window of :data:`WINDOWS` runs on a seeded sub-sample (all items when
there are at most :data:`SUBSAMPLE`), the two best run on the full data.

Repair (large-neighbourhood search, ``rounds`` rounds): take a random sample of the bins that
still have usable slack plus random full bins, re-pack that pool with the completion greedy
under other windows, keep the result only if it uses fewer bins. The greedy is sensitive to
its tie-break in a chaotic way (which small items remain for the last bins); re-packing pools
under different windows irons that out (e.g. 97.6% -> 99.2% on 200k lengths ~ N(L/3, 100)).

Subset completion (few large items, e.g. prefix-tree rows of agent traces: a few hundred
units of L/5-L/2 each): when ``bins * items`` is small (:data:`SUBSET_WORK`), every bin is
also built as the longest remaining item plus the subset of the others that fills its slack
best (an exact subset-sum over the slack, one big-integer bitset per item: Fleszar and Hindi's
MBS'), and kept if it uses fewer bins. On 5x tau-bench trees at L = 32K this closes the gap
to the L2 bound (233 -> 226 rows, 0.9 s); pairs cannot, as a bin there holds 4-5 items.

Finally exact BFD is computed too and kept if it happens to use fewer bins, so ``mbs`` never
does worse than BFD. Cost: ``O(n log n)`` for the sort and the ``O(n)`` numpy passes of the
repair, plus about 15 greedy runs of ``O(D)`` vectorised steps each (``D`` ~ distinct lengths,
so the cost hardly depends on ``n``): 1M agent-like sequences at ``L = 4096`` plan in ~2.4 s
here, 50k in ~1 s.
"""

from __future__ import annotations

import numpy as np

from ._bfd import plan_bfd
from ._plan import BinPlan, check_lengths, group_by_bin, items_by_size
from .report import lower_bound_l2

#: tie-break windows tried, as fractions of ``L``
WINDOWS = (1 / 64, 1 / 32, 1 / 16, 3 / 32, 1 / 8)
#: items in the sub-sample on which all windows are tried
SUBSAMPLE = 10_000
#: subset completion runs when (L1 bound) * items is at most this (its cost is about that
#: many big-integer shifts of L bits)
SUBSET_WORK = 2_000_000


def plan_subset(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Bins as lists of item indices: each bin is the longest remaining item plus the subset of
    the remaining items whose sum fills its slack best (exact, bitset subset-sum; MBS').

    Cost: ``O(bins * items)`` shifts of ``capacity``-bit integers.
    """
    x = np.asarray(lengths, dtype=np.int64)
    remaining = np.argsort(-x, kind="stable").tolist()
    sizes = x.tolist()
    bins: list[list[int]] = []
    while remaining:
        a, rest = remaining[0], remaining[1:]
        r = int(capacity) - sizes[a]
        mask = (1 << (r + 1)) - 1
        cand = [i for i in rest if sizes[i] <= r]
        bits, before = 1, []
        for i in cand:
            before.append(bits)
            bits = (bits | (bits << sizes[i])) & mask
        s = bits.bit_length() - 1  # the largest reachable sum <= r
        chosen = []
        for k in range(len(cand) - 1, -1, -1):  # walk back: take item k when s needs it
            if s == 0:
                break
            if not (before[k] >> s) & 1:
                chosen.append(cand[k])
                s -= sizes[cand[k]]
        bins.append([a] + chosen)
        taken = set(chosen)
        remaining = [i for i in rest if i not in taken]
    return bins


def _best_pair(S: np.ndarray, cnt: np.ndarray, r: int, smax: int, window: int):
    """Best ``b >= c`` from the sizes ``S`` (ascending, all ``<= r``, available per ``cnt``) with
    ``b + c <= r`` and ``b + c > smax``; ``None`` if there is none.

    Only ``b > smax / 2`` can be part of such a pair (``b >= c``), which halves the search.
    """
    lo = int(S.searchsorted(smax // 2 + 1))
    b = S[lo:]
    if b.size == 0:
        return None
    idx = np.arange(lo, S.size)
    jj = S.searchsorted(r - b, side="right") - 1
    np.minimum(jj, idx, out=jj)  # partner index, c <= b
    jj -= (jj == idx) & (cnt[b] < 2)  # b == c needs two items
    sums = b + S[np.maximum(jj, 0)]
    sums[jj < 0] = -1
    best = int(sums.max())
    if best <= smax:
        return None
    cand = np.flatnonzero(sums == best)
    c = S[jj[cand]]
    pick = int(cand[np.argmin(np.abs(c - (c.min() + window)))])
    return best, int(b[pick]), int(S[jj[pick]])


def _complete(lengths_counts: np.ndarray, L: int, window: int):
    """Run the completion greedy on the histogram ``lengths_counts`` (modified in place).

    Returns the list of ``(sizes, multiplicities, copies)`` bin compositions.
    """
    cnt = lengths_counts
    S = np.flatnonzero(cnt)
    entries = []
    while S.size:
        a = int(S[-1])
        pattern: dict[int, int] = {a: 1}
        cnt[a] -= 1
        r = L - a
        Sa = S if cnt[a] > 0 else S[:-1]
        while r > 0 and Sa.size:
            hi = int(Sa.searchsorted(r, side="right"))
            if hi == 0:
                break
            smax = int(Sa[hi - 1])
            if 3 * smax <= r:  # lots of room: take several of the largest fitting items
                t = min(int(cnt[smax]), r // smax - 2)
                pattern[smax] = pattern.get(smax, 0) + t
                cnt[smax] -= t
                r -= t * smax
                emptied = cnt[smax] == 0
            else:
                bp = _best_pair(Sa[:hi], cnt, r, smax, window)
                take = (bp[1], bp[2]) if bp is not None else (smax,)
                emptied = False
                for s in take:
                    pattern[s] = pattern.get(s, 0) + 1
                    cnt[s] -= 1
                    r -= s
                    emptied |= cnt[s] == 0
            if emptied:
                Sa = Sa[cnt[Sa] > 0]
        sizes = np.fromiter(pattern.keys(), dtype=np.int64, count=len(pattern))
        mults = np.fromiter(pattern.values(), dtype=np.int64, count=len(pattern))
        cnt[sizes] += mults
        k = int((cnt[sizes] // mults).min())
        cnt[sizes] -= k * mults
        entries.append((sizes, mults, k))
        S = S[cnt[S] > 0]
    return entries


def _count_bins(counts: np.ndarray, L: int, window: int) -> int:
    return sum(k for _, _, k in _complete(counts.copy(), L, window))


def _materialize(entries, sorted_items: np.ndarray, starts: np.ndarray, L: int, info: dict) -> BinPlan:
    """Turn bin compositions into item -> bin assignments (vectorised)."""
    if not entries:
        return BinPlan(np.zeros(0, np.int64), np.zeros(1, np.int64), L, "mbs", info)
    ks = np.fromiter((k for _, _, k in entries), dtype=np.int64, count=len(entries))
    bin0 = np.zeros(len(entries), dtype=np.int64)
    np.cumsum(ks[:-1], out=bin0[1:])
    n_per = np.fromiter((s.size for s, _, _ in entries), dtype=np.int64, count=len(entries))
    e_size = np.concatenate([s for s, _, _ in entries])
    e_mult = np.concatenate([m for _, m, _ in entries])
    e_k = np.repeat(ks, n_per)
    e_bin0 = np.repeat(bin0, n_per)
    e_cnt = e_mult * e_k
    # where each (entry, size) takes its items from that size's run in `sorted_items`
    by_size = np.argsort(e_size, kind="stable")
    cum = np.cumsum(e_cnt[by_size])
    first_of_size = np.r_[True, e_size[by_size][1:] != e_size[by_size][:-1]]
    group_start = np.maximum.accumulate(np.where(first_of_size, np.arange(by_size.size), 0))
    excl = cum - e_cnt[by_size]
    ptr = np.empty_like(excl)
    ptr[by_size] = excl - excl[group_start]
    pos = starts[e_size] + ptr
    total = int(e_cnt.sum())
    rep = np.repeat(np.arange(e_size.size), e_cnt)
    local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(e_cnt) - e_cnt, e_cnt)
    items = sorted_items[pos[rep] + local]
    bins = e_bin0[rep] + local // e_mult[rep]
    order, offsets = group_by_bin(items, bins, int(ks.sum()))
    return BinPlan(order, offsets, L, "mbs", info)


def _window_values(windows, L: int) -> list[int]:
    return sorted({max(1, int(round(f * L))) for f in windows})


def _repair(plan: BinPlan, lengths: np.ndarray, ws: list[int], rng: np.random.Generator, rounds: int,
            pool_items: int, donors: float, windows_per_round: int, *, target: int = 0,
            patience: int = 2) -> tuple[BinPlan, list[int]]:
    """Large-neighbourhood search: re-pack loose bins together with random full ones.

    Each round takes a random sample of the bins with usable slack (up to ``pool_items``
    items), adds random other bins (``donors`` times as many), re-packs that pool with the
    completion greedy under ``windows_per_round`` windows and keeps the result only if it needs
    fewer bins. Bins only ever get fewer; every round is ``O(n)`` numpy plus the pool's runs.
    Stops early at ``target`` bins (a lower bound) or after ``patience`` rounds without gain.
    """
    L = plan.capacity
    min_len = int(lengths.min())
    history = [plan.num_bins]
    stale = 0
    for r in range(rounds):
        if plan.num_bins <= target or stale >= patience:
            break
        sizes = np.diff(plan.offsets)
        slack = L - plan.bin_lengths(lengths)
        # bins whose slack could take an item (single items that nothing fits next to are final)
        loose = np.flatnonzero((slack >= min_len) | ((slack > 0) & (sizes > 1)))
        if loose.size < 2:
            break
        loose = rng.permutation(loose)
        take = np.searchsorted(np.cumsum(sizes[loose]), pool_items, side="right") + 1
        loose = loose[: max(2, int(take))]
        rest = np.setdiff1d(np.arange(plan.num_bins), loose, assume_unique=True)
        nd = min(rest.size, int(donors * loose.size))
        pool = np.concatenate([loose, rng.choice(rest, nd, replace=False)]) if nd else loose
        in_pool = np.zeros(plan.num_bins, dtype=bool)
        in_pool[pool] = True
        item_in_pool = np.repeat(in_pool, sizes)
        pool_items_idx = plan.order[item_in_pool]
        sub_len = lengths[pool_items_idx]
        counts = np.bincount(sub_len, minlength=L + 1).astype(np.int64)
        trial = [ws[(r + j * max(1, len(ws) // windows_per_round)) % len(ws)] for j in range(windows_per_round)]
        best = None
        for w in sorted(set(trial)):
            entries = _complete(counts.copy(), L, w)
            nb = sum(k for _, _, k in entries)
            if best is None or nb < best[0]:
                best = (nb, entries)
        if best[0] < pool.size:
            s_items, _, s_starts = items_by_size(sub_len, L, int(rng.integers(2**31)))
            sub = _materialize(best[1], s_items, s_starts, L, {})
            keep_items = plan.order[~item_in_pool]
            keep_sizes = sizes[~in_pool]
            order = np.concatenate([keep_items, pool_items_idx[sub.order]])
            offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(np.concatenate([keep_sizes, np.diff(sub.offsets)]))])
            plan = BinPlan(order, offsets, L, plan.strategy, plan.info)
            stale = 0
        else:
            stale += 1
        history.append(plan.num_bins)
    return plan, history


def plan_mbs(
    lengths,
    capacity: int,
    *,
    seed: int = 0,
    windows=WINDOWS,
    subsample: int = SUBSAMPLE,
    rounds: int = 4,
    pool_items: int | None = None,
    donors: float = 0.5,
    windows_per_round: int = 2,
) -> BinPlan:
    """Minimum-bin-slack completion with pair search, then repair; see the module docstring.

    Args:
        lengths: ``(n,)`` integer lengths, each in ``[1, capacity]``.
        capacity: the bin size ``L`` in tokens.
        seed: seeds the sub-sample, the repair's donor bins and the order of equal-length items.
        windows: tie-break windows to try, as fractions of ``L``.
        subsample: sub-sample size for trying the windows.
        rounds: repair rounds (0: none).
        pool_items: items from loose bins re-packed per repair round (default
            ``max(20_000, n // 20)``).
        donors: random full bins added to a repair pool, per loose bin.
        windows_per_round: windows tried on each repair pool.

    Returns:
        a :class:`BinPlan`; ``info`` says which window won, the repair's bin counts, and
        ``"bfd"`` if plain BFD happened to be tighter (then the BFD plan is returned).
    """
    lengths = check_lengths(lengths, capacity)
    L = int(capacity)
    n = lengths.size
    sorted_items, counts, starts = items_by_size(lengths, L, seed)
    ws = _window_values(windows, L)
    if n <= subsample:
        finalists = ws
    else:
        sub = lengths[np.random.default_rng(seed + 1).choice(n, subsample, replace=False)]
        sub_counts = np.bincount(sub, minlength=L + 1).astype(np.int64)
        scores = [(_count_bins(sub_counts, L, w), i) for i, w in enumerate(ws)]
        finalists = [ws[i] for _, i in sorted(scores)[:2]]
    best = None
    for w in finalists:
        entries = _complete(counts.copy(), L, w)
        nb = sum(k for _, _, k in entries)
        if best is None or nb < best[0]:
            best = (nb, w, entries)
    info = {"window": best[1] if best else None, "windows_tried": ws}
    plan = _materialize(best[2] if best else [], sorted_items, starts, L, info)
    if rounds > 0 and plan.num_bins > 1:
        rng = np.random.default_rng(seed + 2)
        pool = pool_items if pool_items is not None else max(20_000, n // 20)
        target = lower_bound_l2(lengths, L)
        plan, history = _repair(plan, lengths, ws, rng, rounds, pool, donors, windows_per_round, target=target)
        info["repair_bins"] = history
    if plan.num_bins > lower_bound_l2(lengths, L) and -(-int(lengths.sum()) // L) * n <= SUBSET_WORK:
        groups = plan_subset(lengths, L)
        info["subset_bins"] = len(groups)
        if len(groups) < plan.num_bins:
            offsets = np.zeros(len(groups) + 1, dtype=np.int64)
            np.cumsum([len(g) for g in groups], out=offsets[1:])
            plan = BinPlan(np.asarray([i for g in groups for i in g], dtype=np.int64), offsets, L, "mbs", {})
            rounds = -1  # the subset plan won
    bfd = plan_bfd(lengths, L, seed=seed)
    info["bfd_bins"] = bfd.num_bins
    if bfd.num_bins < plan.num_bins:
        info["chosen"] = "bfd"
        return BinPlan(bfd.order, bfd.offsets, L, "mbs", info)
    info["chosen"] = "subset" if rounds < 0 else "completion+repair" if rounds > 0 else "completion"
    plan.info = info
    plan.strategy = "mbs"
    return plan
