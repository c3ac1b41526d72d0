"""The render memo at render time: :class:`RenderMemo` (``environment.render_memo``), which the
compiled template asks at every iteration of a memoised loop, and :func:`note_write`, which the
template namespace calls on every attribute write (:mod:`sftdata.masking.render_memo` describes the
mechanism and the exactness argument).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from jinja2.runtime import LoopContext, Undefined
from jinja2.utils import Namespace, missing
from markupsafe import Markup

from .render_limits import RenderLimitExceeded
from .render_memo_nodes import OTHER
from .render_memo_plan import LoopPlan
from .render_scan_memo import ScanMemo
from .render_memo_trace import LoopMemo

__all__ = ["RenderMemo", "note_write"]


class _Uncacheable(Exception):
    pass


_ACTIVE = threading.local()


def note_write(namespace: Namespace, attr: str, value: Any) -> None:
    """Called by the template namespace on every attribute write: journal it for the iteration
    being recorded in this thread, if any."""
    journal = getattr(_ACTIVE, "journal", None)
    if journal is not None:
        journal.append((namespace, attr, value))


#: values a key holds as they are (``missing``: a key variable that is not bound, which the body reads as Undefined)
_PRIMITIVES = frozenset({str, int, float, bool, type(None), Markup, type(missing)})
_CONTAINERS = frozenset({dict, list, tuple})
_FUNCTIONS = (type(len), type(note_write), type("".strip), type)


class _Iteration:
    __slots__ = ("loop", "key", "out", "record", "obs", "seen", "bases", "writes", "keep")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.out: str | None = None
        self.record = False


class _Buffer(list):
    """An iteration's output pieces, raising the render-size error where the plain render would."""

    __slots__ = ("room", "limit")

    def append(self, piece: str) -> None:
        self.room -= len(piece)
        if self.room < 0:
            raise RenderLimitExceeded(_SIZE_MESSAGE.format(self.limit))
        list.append(self, piece)

    def extend(self, pieces: Any) -> None:
        for p in pieces:
            self.append(p)


_SIZE_MESSAGE = "the rendering exceeds {:,} characters (render size limit)"
_FAR = 1 << 62  # a positional read no skip can cover (a negative or non-integer index)
_MISS_WINDOW = 256  # a window of at least 4 renders and this many lookups of a loop judges its misses


class RenderMemo:
    """The per-template memo of loop iterations (``environment.render_memo``).

    Args:
        max_chars: the render size limit (characters, ``None``: none), checked while an
            iteration's output is buffered exactly as :func:`~sftdata.masking.render_limits.collect` checks it.
    """

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.enabled = True
        #: characters emitted so far by the current render (kept by :meth:`count`)
        self.emitted = 0
        self.seq = 0  # renders started (a trace remembers the render that committed it)
        self.mark: Any = None
        self.loops: dict[int, LoopMemo] = {}
        self._plain: dict[int, tuple[Any, bool]] = {}
        self.current: _Iteration | None = None
        #: the largest ``messages`` index the current iteration's positional observations read
        #: (:data:`_FAR` after a negative or non-integer index)
        self.reach = -1
        self.render_lists: tuple[Any, Any] = (None, None)
        self._kinds: dict[int, tuple] = {}
        #: per loop: run its body plainly (the memo is off, or the loop kept missing)
        self.off: list[bool] = []
        #: the guarded scans' noted positions (:mod:`sftdata.masking.render_scan_memo`)
        self.scans = ScanMemo()

    # -- per conversation / per render ---------------------------------------------------------
    def new_conversation(self) -> None:
        """Forget every recorded iteration (call between conversations)."""
        self.loops.clear()
        self._plain.clear()
        self.scans.reset()
        self.current = None
        self.off = [not self.enabled] * len(self.off)

    def start_render(self, mark: Any, messages: Any = None, base: Any = None) -> None:
        """Called before every render.

        Args:
            mark: the generation-block markers in use, or ``None``.
            messages: the ``messages`` list the template gets.
            base: a list that ``messages`` is ``base[:n]`` of, made by the renderer from one list
                that no render of the conversation mutates (else ``None``): two such renders' lists
                then hold the same objects up to the shorter length, which
                :meth:`LoopMemo.skip <sftdata.masking.render_memo_trace.LoopMemo.skip>` uses instead of
                comparing them.
        """
        self.emitted = 0
        self.seq += 1
        self.mark = mark
        self.render_lists = (base, messages)
        self.current = None
        _ACTIVE.journal = None

    def finish_render(self) -> None:
        """Called after every render (also a failed one): judge each loop's hit rate."""
        self.current = None
        _ACTIVE.journal = None
        for loop_id, lm in self.loops.items():
            lm.commit(self.seq)
            # a loop that does not skip: over 8 renders that looked up more than one iteration
            # (after the loop's first render, which has no trace to skip along), fewer than half
            # replayed at least half of their iterations in one run. Its hits still evaluate their
            # keys and observations one by one, which can cost more than running the body (before
            # positional observations, Qwen3's template with tool calls: bench/prepare.py --long 1k
            # --qwen3-real --long-variants tau, 9.1 CPU-s through the memo, 4.8 plain). Counted in
            # renders, not iterations, so that one long render with nothing to skip along (the
            # training rendering, after a failed first attempt) does not outweigh the rest.
            ran, skipped = lm.lookups - lm.seen_lookups, lm.skipped - lm.seen_skipped
            first = lm.seen_lookups == 0
            lm.seen_lookups, lm.seen_skipped = lm.lookups, lm.skipped
            if ran > 1 and not first:
                lm.skip_renders += 1
                lm.window_skipped += int(skipped * 2 >= ran)  # renders that replayed at least half their iterations
            no_skips = lm.skip_renders >= 8 and lm.window_skipped * 2 < lm.skip_renders
            if lm.skip_renders >= 8:
                lm.skip_renders = lm.window_skipped = 0
            # judged over windows of renders: a loop missing more than a quarter of its lookups costs
            # more than it saves (a miss records; a hit still evaluates its key)
            lm.bad += 1
            if no_skips or (lm.bad >= 4 and lm.render_lookups >= _MISS_WINDOW):
                if no_skips or lm.render_misses * 4 > lm.render_lookups:
                    lm.disabled = True
                    self.off[loop_id] = True
                    lm.cache.clear()
                    lm.t_out = None
                lm.render_lookups = lm.render_misses = lm.bad = 0

    def set_base(self, text: str) -> None:
        """The render that just finished, whose text is ``text``, is the conversation's training
        rendering: each loop keeps its trace (see :meth:`LoopMemo.set_base <sftdata.masking.render_memo_trace.LoopMemo.set_base>`)."""
        for lm in self.loops.values():
            lm.set_base(text, self.seq)

    def count(self, pieces: Any) -> Any:
        """Pass the render's output pieces through, counting their characters."""
        for p in pieces:
            self.emitted += len(p)
            yield p

    def buffer(self) -> list:
        """A buffer for one iteration's output."""
        if self.max_chars is None:
            return []
        b = _Buffer()
        b.limit = self.max_chars
        b.room = self.max_chars - self.emitted
        return b

    # -- keys ---------------------------------------------------------------------------------
    def _is_plain(self, x: Any) -> bool:
        hit = self._plain.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        ok = True
        stack = [x]
        while stack and ok:
            y = stack.pop()
            t = type(y)
            if t in _PRIMITIVES:
                continue
            if t is dict:
                stack.extend(y.keys())
                stack.extend(y.values())
            elif t is list or t is tuple:
                stack.extend(y)
            else:
                ok = False
        self._plain[id(x)] = (x, ok)
        return ok

    def _norm(self, v: Any, out: list) -> None:
        t = type(v)
        if t in _PRIMITIVES:
            out.append(t)
            out.append(v)
        elif t in _CONTAINERS:
            if not self._is_plain(v):
                raise _Uncacheable
            out.append(t)
            out.append(id(v))
        elif isinstance(v, Undefined):
            out.append(t)
            obj = v._undefined_obj
            out.append((v._undefined_hint, v._undefined_name, type(obj), v._undefined_exception))
        elif isinstance(v, _FUNCTIONS) or t.__name__ == "_TemplateDict":
            if isinstance(v, (Namespace, LoopContext)):
                raise _Uncacheable
            out.append(t)
            out.append(id(v))
        else:
            raise _Uncacheable

    # -- one iteration ------------------------------------------------------------------------
    def configure(self, plans: list[LoopPlan]) -> None:
        """Give the memo the observation kinds of each memoised loop (from :func:`~sftdata.masking.render_memo_plan.plan`)."""
        self._kinds = {i: (p.kinds, p.cmps) for i, p in enumerate(plans)}
        self.off = [not self.enabled] * len(plans)

    def begin(
        self, loop_id: int, key_values: tuple | None, observations: tuple[Callable[[], Any], ...], bases: tuple | None,
        loop: LoopContext, ns_reads: Callable[[], tuple],
    ) -> _Iteration:
        """Look the iteration up: a hit carries ``out`` (and its writes are applied); a miss
        records (unless uncacheable) until :meth:`end`. At the loop's first iteration, skip as
        many leading iterations as the last render's trace proves unchanged
        (:meth:`LoopMemo.skip <sftdata.masking.render_memo_trace.LoopMemo.skip>`)."""
        lm = self.loops.get(loop_id)
        if lm is None:
            lm = self.loops[loop_id] = LoopMemo(*self._kinds.get(loop_id, ((), ())))
        first = loop.index0 == 0
        if first:
            lm.new_trace(loop._iterable, self.render_lists, self.emitted)
        it = _Iteration(lm)
        _ACTIVE.journal = None
        self.current = None
        self.reach = -1
        if not self.enabled or lm.disabled or key_values is None or (
            bases and (any(not isinstance(b, Namespace) for b in bases) or len({id(b) for b in bases}) != len(bases))
        ):
            lm.n_ok = False
            return it
        flat: list = [self.mark]
        norm = self._norm
        try:
            for v in key_values:
                t = type(v)
                if t in _PRIMITIVES:  # the common case, inline (as _norm does it)
                    flat.append(t)
                    flat.append(v)
                else:
                    norm(v, flat)
        except _Uncacheable:
            lm.n_ok = False
            return it
        key = tuple(flat)
        if first and lm.n_ok:
            try:
                ns_flat: list = []
                ns_raw = ns_reads()
                for v in ns_raw:
                    self._norm(v, ns_flat)
                ns_values: Any = tuple(ns_flat)
            except Exception:
                ns_values = ns_raw = None
            lm.n_key0, lm.n_ns, lm.n_ns_raw = key, ns_values, ns_raw
            skipped = lm.skip(key, ns_values, loop, bases)
            if skipped is not None:
                it.out = skipped
                return it
        lm.lookups += 1
        lm.render_lookups += 1
        for entry in lm.cache.get(key, ()):
            if self._valid(entry[0], observations):
                for base_index, attr, value in entry[1]:
                    bases[base_index][attr] = value
                lm.hits += 1
                it.out = entry[2]
                lm.add(entry[2], entry[4], entry[1], entry[0], self.reach)
                return it
        # a miss on an item this loop has already run on counts against the loop (a first sight
        # of a message is a miss every memo has to take)
        item = loop._current
        if lm.seen_items.get(id(item)) is item:
            lm.render_misses += 1
        else:
            lm.seen_items[id(item)] = item
        it.record = True
        it.key = key
        it.obs = []
        it.seen = set()
        it.bases = bases
        it.writes = []
        it.keep = [key_values]
        _ACTIVE.journal = it.writes
        self.current = it
        return it

    def _valid(self, recorded: tuple, observations: tuple) -> bool:
        for index, expected in recorded:
            try:
                value = observations[index]()
                t = type(value)
                if t in _PRIMITIVES:  # the common case (a bool), as _norm writes it
                    if (t, value) != expected:
                        return False
                    continue
                now: list = []
                self._norm(value, now)
            except Exception:
                return False
            if tuple(now) != expected:
                return False
        return True

    def pos(self, index: Any) -> Any:
        """Note the index of a positional read ``messages[index]`` (:class:`~sftdata.masking.render_memo_nodes.PosRead`); return it."""
        if type(index) is int and index >= 0:
            if index > self.reach:
                self.reach = index
        else:
            self.reach = _FAR
        return index

    def obs(self, index: int, value: Any) -> Any:
        """Record observation ``index`` of the iteration being recorded; return ``value``."""
        it = self.current
        if it is not None and it.record and index not in it.seen:
            it.seen.add(index)
            t = type(value)
            if t in _PRIMITIVES:  # the common case (a bool), as _norm writes it
                it.obs.append((index, (t, value)))
                it.keep.append(value)
                return value
            norm: list = []
            try:
                self._norm(value, norm)
            except _Uncacheable:
                it.record = False
            else:
                it.obs.append((index, tuple(norm)))
                it.keep.append(value)
        return value

    def end(self, it: _Iteration, buf: list) -> str:
        """Store the iteration just run (when recordable) and return its output."""
        out = "".join(buf)
        if it.record and self.current is it:
            self._store(it, out)
        else:
            it.loop.n_ok = False
        self.current = None
        _ACTIVE.journal = None
        return out

    def _store(self, it: _Iteration, out: str) -> None:
        writes = []
        lm = it.loop
        for ns, attr, value in it.writes:
            index = next((i for i, b in enumerate(it.bases) if b is ns), None)
            if index is None:
                lm.n_ok = False
                return
            try:
                self._norm(value, [])
            except _Uncacheable:
                lm.n_ok = False
                return
            writes.append((index, attr, value))
        flag = 0
        for index, _ in it.obs:
            flag |= lm.kinds[index] if index < len(lm.kinds) else OTHER
        entries = lm.cache.setdefault(it.key, [])
        entries.insert(0, (tuple(it.obs), tuple(writes), out, it.keep, flag))
        del entries[4:]
        lm.add(out, flag, tuple(writes), tuple(it.obs), self.reach)
