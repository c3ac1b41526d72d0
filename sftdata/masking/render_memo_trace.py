"""One memoised loop's state in the render memo (:class:`LoopMemo`): its recorded iterations, the trace
of the last render that ran it, and the skip over that trace's unchanged leading iterations
(:mod:`sftdata.masking.render_memo` describes the mechanism and why a skip is exact).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from typing import Any

from jinja2.runtime import LoopContext
from jinja2.utils import missing

from .render_memo_nodes import NEXT, NS, OTHER
from .render_split import BaseSlice

__all__ = ["LoopMemo"]


class LoopMemo:
    """One memoised loop: its recorded iterations (``cache``), the trace of the last render that
    ran it (``t_*``: per iteration its output, observation kinds, namespace writes so far), the
    trace being built by the current render (``n_*``), and hit counters."""

    def __init__(self, kinds: tuple[int, ...], cmps: tuple = ()) -> None:
        self.kinds = kinds
        self.cmps = cmps
        self.cache: dict = {}
        self.lookups = self.hits = self.render_lookups = self.render_misses = self.bad = self.skipped = 0
        self.seen_lookups = self.seen_skipped = 0  # lookups/skips counted by earlier renders
        self.skip_renders = self.window_skipped = 0  # the skip judge's window: renders, and those that mostly skipped
        self.seen_items: dict[int, Any] = {}  # id -> item: items this loop has run an iteration on
        self.disabled = False
        self.t_out: list | None = None
        self.t_render: tuple[Any, Any] = (None, None)
        self.n_render: tuple[Any, Any] = (None, None)
        self.n_items: Any = None
        self.n_ok = False
        # the training rendering's trace (set_base): its outputs, their offsets in it, its text
        self.b_out: list | None = None
        self.b_off: list[int] = []
        self.b_text: str | None = None
        self.t_agree = self.n_agree = 0  # leading iterations of a trace whose text is the training rendering's
        self.t_start = self.n_start = 0
        self.t_seq = -1

    def new_trace(self, items: Any, render: tuple[Any, Any] = (None, None), start: int = 0) -> None:
        """Start the current render's trace over ``items``; ``render`` is ``(base, messages)`` of
        the render (see :meth:`RenderMemo.start_render <sftdata.masking.render_memo_runtime.RenderMemo.start_render>`),
        ``start`` the characters the render emitted before the loop."""
        self.n_render = render
        self.n_start = start
        self.n_agree = 0
        self.n_items = items if type(items) in (list, tuple) else None
        self.n_ok = self.n_items is not None
        self.n_out: list = []
        self.n_flags: list = []
        self.n_snap: list = []
        self.n_cum: dict = {}
        self.n_key0: Any = None
        self.n_ns: Any = None
        self.n_first_other = self.n_first_ns = self.n_first_cmp = -1
        self.n_iv: tuple = ()  # per ns_reads index: the interval of its values every iteration so far allows
        self.n_ivs: list = []
        self.n_reach: list = []  # per iteration: the largest messages index read by it or an earlier one
        self.n_ns_raw: Any = None

    def add(self, out: str, flag: int, writes: tuple, obs: tuple = (), reach: int = -1) -> None:
        """Append one iteration (its output, observation kinds, namespace writes, the largest
        ``messages`` index its positional observations read) to the trace."""
        if not self.n_ok:
            return
        reach_so_far = self.n_reach[-1] if self.n_reach else -1
        self.n_reach.append(reach if reach > reach_so_far else reach_so_far)
        if writes:
            cum = dict(self.n_cum)
            for base_index, attr, value in writes:
                cum[(base_index, attr)] = value
            self.n_cum = cum
        i = len(self.n_out)
        if flag & NS:
            # an observation of a namespace attribute: a comparison loop.index0 <op> ns.attr
            # narrows that attribute's interval; any other makes the iteration need equal values
            plain_ns = False
            ivs = list(self.n_iv)
            for index, value in obs:
                cmp = self.cmps[index] if index < len(self.cmps) else None
                if self.kinds[index] & NS and (cmp is None or value[0] is not bool):
                    plain_ns = True
                elif cmp is not None:
                    a, op, offset = cmp
                    while len(ivs) <= a:
                        ivs.append((float("-inf"), float("inf")))
                    lo, hi = _interval(op, i + offset, value[1])
                    ivs[a] = (max(ivs[a][0], lo), min(ivs[a][1], hi))
            self.n_iv = tuple(ivs)
            if plain_ns and self.n_first_ns < 0:
                self.n_first_ns = i
            if self.n_first_cmp < 0 and any(c is not None for c in self.cmps):
                self.n_first_cmp = i
        b_out = self.b_out
        if self.n_agree == i and b_out is not None and i < len(b_out):
            own = b_out[i]
            # still the training rendering's iterations: the same text (an iteration recorded under
            # another key, as Qwen3's assistant turn after the last query, may render it again),
            # held as F's own string so later skips compare identities
            if out is own or out == own:
                out = own
                self.n_agree = i + 1
        self.n_out.append(out)
        self.n_flags.append(flag)
        self.n_snap.append(self.n_cum)
        self.n_ivs.append(self.n_iv)
        if flag & OTHER and self.n_first_other < 0:
            self.n_first_other = i

    def commit(self, seq: int = -1) -> None:
        """End of render ``seq``: its trace (the iterations it recorded, a prefix of the loop) becomes
        the one the next render may skip over."""
        if self.n_items is not None and self.n_out:
            self.t_items, self.t_out, self.t_flags, self.t_snap = self.n_items, self.n_out, self.n_flags, self.n_snap
            self.t_agree, self.t_start, self.t_seq = self.n_agree, self.n_start, seq
            self.t_render = self.n_render
            self.t_key0, self.t_ns, self.t_first_other, self.t_first_ns = self.n_key0, self.n_ns, self.n_first_other, self.n_first_ns
            self.t_ivs, self.t_first_cmp = self.n_ivs, self.n_first_cmp
            self.t_reach = self.n_reach
        self.n_items = None
        self.n_ok = False

    def set_base(self, text: str, seq: int) -> None:
        """Render ``seq``, whose text is ``text``, is the training rendering: keep its trace's outputs
        and where they lie in ``text`` (a later skip over the same objects is emitted as a
        :class:`~sftdata.masking.render_split.BaseSlice` of it). O(its iterations), once."""
        if self.t_out is None or self.t_seq != seq:
            self.b_out, self.b_text = None, None
            return
        self.b_out = list(self.t_out)
        self.b_off = list(itertools.accumulate(map(len, self.b_out), initial=self.t_start))
        self.b_text = text
        self.t_agree = len(self.b_out)

    def skip(self, key: tuple, ns_values: Any, loop: LoopContext, bases: tuple) -> str | BaseSlice | None:
        """Replay the leading iterations of the last render's trace that are unchanged, or return ``None``.

        Iteration ``i`` of the trace replays exactly when: the first iteration's key is equal (so
        every outer value and the namespace state at the loop's start that the body reads are
        equal), the items ``0..i`` are the same objects, and each observation the trace's
        iterations made still has its value: none of kind OTHER; kind NS only when the namespace
        attributes the body reads are equal; kind NEXT (``loop.last``, ``loop.nextitem``) only
        when item ``i+1`` is the same object in both lists (then neither iteration is the last).
        """
        t_out = self.t_out
        if t_out is None or key != self.t_key0:
            return None
        items, old = self.n_items, self.t_items
        (base, msgs), (t_base, t_msgs) = self.n_render, self.t_render
        same_base = base is not None and base is t_base  # both base[:n]: the same objects up to the shorter
        if same_base and items is msgs and old is t_msgs:
            common = min(len(items), len(old))
        elif items is old:  # the same list again (the tools of every render of a conversation)
            common = len(items)
        else:
            common = _common_prefix(items, old)
        j = min(common, len(t_out))
        if self.t_first_other >= 0:
            j = min(j, self.t_first_other)
        if ns_values is None or ns_values != self.t_ns:
            if self.t_first_ns >= 0:
                j = min(j, self.t_first_ns)
            if self.t_first_cmp >= 0 and j > self.t_first_cmp:
                j = _interval_prefix(self.t_ivs, self.n_ns_raw, j, self.t_first_cmp)
        if j > 0 and self.t_reach[j - 1] >= 0:  # iterations read messages[i]: only where both renders' lists hold the same item
            if same_base:
                shared = min(len(msgs), len(t_msgs))
            else:
                shared = _common_prefix(msgs, t_msgs) if type(msgs) is list and type(t_msgs) is list else 0
            j = bisect.bisect_left(self.t_reach, shared, 0, j)
        if j > 0 and self.t_flags[j - 1] & NEXT and not j < common:
            j -= 1
        if j <= 0:
            return None
        for (base_index, attr), value in self.t_snap[j - 1].items():
            bases[base_index][attr] = value
        loop._iterator = iter(items[j:])
        loop.index0 = j - 1
        loop._current = items[j - 1]
        loop._after = missing
        # the new trace continues the old one's first j iterations: cut the old lists in place (O(what
        # is dropped), not O(j)); the old trace is not read again (commit replaces it by this one)
        for trace in (t_out, self.t_flags, self.t_snap, self.t_ivs, self.t_reach):
            del trace[j:]
        self.n_out, self.n_flags, self.n_snap, self.n_cum = t_out, self.t_flags, self.t_snap, self.t_snap[j - 1]
        self.n_ivs, self.n_iv = self.t_ivs, self.t_ivs[j - 1]
        self.n_reach = self.t_reach
        # what the replayed prefix holds (it has no OTHER observation: j <= t_first_other)
        self.n_first_cmp = self.t_first_cmp if self.t_first_cmp < j else -1
        self.n_first_ns = self.t_first_ns if self.t_first_ns < j else -1
        self.lookups += j
        self.hits += j
        self.skipped += j
        self.render_lookups += j
        self.n_agree = min(j, self.t_agree)
        if self.n_agree == j and self.b_text is not None:  # the training rendering's own iterations 0..j-1
            return BaseSlice(self.b_text, self.b_off[0], self.b_off[j])
        return "".join(t_out)


def _interval(op: str, x: int, result: bool) -> tuple[float, float]:
    """The integers ``v`` with ``(x <op> v) == result``, as a closed interval."""
    inf = float("inf")
    if op == "gt":  # x > v  <=>  v <= x - 1
        return (-inf, x - 1) if result else (x, inf)
    if op == "lt":  # x < v  <=>  v >= x + 1
        return (x + 1, inf) if result else (-inf, x)
    if op == "gteq":  # x >= v  <=>  v <= x
        return (-inf, x) if result else (x + 1, inf)
    return (x, inf) if result else (-inf, x - 1)  # lteq: x <= v  <=>  v >= x


def _interval_prefix(ivs: list, values: Any, j: int, first: int) -> int:
    """The largest ``j' <= j`` such that every iteration before ``j'`` allows the namespace values
    ``values`` (``ivs[i]``: per attribute, the interval iterations ``0..i`` allow; they shrink as
    ``i`` grows, so the answer is found by bisection). Values that are not ints allow ``first``."""
    if values is None or any(type(v) is not int for v in values):
        return first
    if len(values) == 1:  # the common case (one attribute, as Qwen3's last_query_index): no generator per probe
        v = values[0]

        def ok(i: int) -> bool:
            iv = ivs[i]
            return not iv or iv[0][0] <= v <= iv[0][1]
    else:

        def ok(i: int) -> bool:
            return all(lo <= values[a] <= hi for a, (lo, hi) in enumerate(ivs[i]) if a < len(values))

    lo, hi = first, j  # ok(first - 1) holds (no comparison before first); find the largest good count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid - 1):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_prefix(a: Any, b: Any) -> int:
    """How many leading items of ``a`` and ``b`` are the same objects (C speed)."""
    n = min(len(a), len(b))
    return next(itertools.compress(itertools.count(), map(operator.is_not, a, b)), n) if n else 0
