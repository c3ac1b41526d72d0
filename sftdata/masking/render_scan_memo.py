"""The scan memo: a guarded scan (:mod:`sftdata.masking.render_scan`) skips the items it has
already found to do nothing.

A guarded scan stops at its first iteration whose guard is false; until then every iteration runs.
Qwen3's last-query scan walks ``messages[::-1]`` until it meets a user message, so on an agent trace
with one user message and thousands of tool calls every render walks every message: O(n) per render,
O(n²) for the conversation's renders.

When the rest of the scan's test (after the guard: ``message.role == "user" and not (…)``) reads
only the item, values that depend on the item's position in ``messages`` alone and pure string
methods, tests and filters (:func:`~sftdata.masking.render_scan._memo_rest`), its value at an item
is the same at every render of the conversation that reaches the item: the renderer passes one
message list and a count, so ``messages`` is ``base[:k]`` and position ``i`` holds ``base[i]``
(:meth:`RenderMemo.start_render <sftdata.masking.render_memo_runtime.RenderMemo.start_render>`).

The rest is compiled as ``guard and verdict(rest)`` (``a and b and c`` is ``a and (b and c)``, the
same value and order of evaluation): :meth:`ScanMemo.verdict` notes every position where it was
false, evaluated without error. At the scan's first iteration (its guard true), :meth:`ScanMemo.skip`
moves the loop past the run of positions, from the last one down, already noted: each of those
iterations would evaluate the guard (true: nothing writes it while the branch does not run), the
``set`` statements (no effect, no error: :func:`~sftdata.masking.render_scan.scan_guard`) and the rest
(false again, no error), and do nothing. The loop resumes at the first position not noted, with
``loop.index0``, ``loop.previtem`` and ``loop.length`` as jinja would have them there.
"""

from __future__ import annotations

from typing import Any

from jinja2.utils import missing

__all__ = ["ScanMemo"]


def _first_not_noted(down: dict[int, int], i: int) -> int:
    """The largest position ``<= i`` not in ``down`` (``down[p] = q``: every position in ``q+1..p`` is
    noted), shortening the chain walked (so that repeated calls cost O(1) amortised)."""
    path = []
    while i in down:
        path.append(i)
        i = down[i]
    for p in path:
        down[p] = i
    return i


class ScanMemo:
    """Per conversation, per memoised scan: the positions of ``base`` where the rest of its test was
    false. Reset by :meth:`RenderMemo.new_conversation <sftdata.masking.render_memo_runtime.RenderMemo.new_conversation>`."""

    def __init__(self) -> None:
        self._noted: dict[int, tuple[Any, dict[int, int]]] = {}  # scan id -> (base list, down)

    def reset(self) -> None:
        """Forget every noted position."""
        self._noted.clear()

    def _down(self, scan_id: int, lists: tuple[Any, Any]) -> dict[int, int] | None:
        base, msgs = lists
        if base is None or type(msgs) is not list:  # positions are not base's: note nothing, skip nothing
            return None
        held = self._noted.get(scan_id)
        if held is None or held[0] is not base:
            held = self._noted[scan_id] = (base, {})
        return held[1]

    def verdict(self, scan_id: int, loop: Any, lists: tuple[Any, Any], value: Any) -> Any:
        """Note the current item's position when ``value`` (the rest of the test) is false; return it."""
        if not value:
            down = self._down(scan_id, lists)
            if down is not None:
                i = len(lists[1]) - 1 - loop.index0
                down.setdefault(i, i - 1)
        return value

    def skip(self, scan_id: int, loop: Any, lists: tuple[Any, Any]) -> bool:
        """At the scan's first iteration: move ``loop`` past the noted positions from the last one
        down; ``True`` when the current iteration is one of them (the caller continues the loop)."""
        if loop.index0 != 0:
            return False
        down = self._down(scan_id, lists)
        if not down:
            return False
        msgs = lists[1]
        top = len(msgs) - 1
        low = _first_not_noted(down, top)
        if low >= top:
            return False
        j = top - low  # iterations 0..j-1 (positions top..low+1) do nothing
        loop._iterator = map(msgs.__getitem__, range(low, -1, -1))
        loop.index0 = j - 1
        loop._current = msgs[low + 1]
        loop._after = missing
        return True
