"""A per-row budget: messages, rendered characters, seconds and memory for one input row.

:class:`~sftdata.masking.render_limits.RenderLimits` bounds one render call. A row is rendered many
times (exact masks render ``P_k`` and ``F_k`` for every trained turn), so a row whose every
render is within those limits can still take minutes and gigabytes: a 10,000-message trace
took 178 s and 8.1 GB on the quadratic renderer. :class:`RowBudget` bounds the whole row:
the renderer calls :meth:`RowBudget.start` when it starts a row and :meth:`RowBudget.charge`
with the characters each render (or each memoised piece) produced; past a limit they raise
``RowError(render_limit)`` naming the limit and the option that raises it, so one
pathological row is rejected instead of taking a worker's memory.

The defaults admit a 10,000-message trace with room to spare (see :class:`RowBudget`).
Checks happen only at :meth:`~RowBudget.start`, :meth:`~RowBudget.charge` and
:meth:`~RowBudget.check`: a single render that hangs is the per-render timeout's to stop.

    >>> budget = RowBudget(max_messages=4)
    >>> budget.start(row=7, messages=3)
    >>> budget.charge(120)
    >>> budget.usage()["chars"]
    120
"""

from __future__ import annotations

import os
import time
from typing import Callable

from ..errors import Reason, RowError

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") and "SC_PAGE_SIZE" in getattr(os, "sysconf_names", {}) else 4096


def current_rss() -> int | None:
    """This process's resident memory now, bytes (``/proc/self/statm``; ``None`` where that
    file does not exist, e.g. macOS: the memory limit is then not checked)."""
    try:  # os.open/os.read: three system calls, without building a Python file object
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            return int(os.read(fd, 128).split()[1]) * _PAGE
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return None


class RowBudget:
    """Limits of one input row, over all its renders.

    Args:
        max_messages: messages per row (``None``: no limit). Default 100,000.
        render_max_chars: characters the renders of one row may produce in total, as charged
            by the renderer (``None``: no limit). Default 1,000,000,000: a renderer that
            renders each piece of a conversation once charges a few renderings' worth, far
            below it for a 10,000-message trace; charging every ``P_k`` and ``F_k`` in full
            (the quadratic renderer) charges about ``turns x length`` and reaches it on long
            traces, which is the point.
        timeout: wall-clock seconds per row, from :meth:`start` (``None``: no limit).
            Default 600.
        max_memory_mb: growth of this process's resident memory since :meth:`start`, MiB
            (``None``: no limit; not checked where the resident size cannot be read).
            Default 4096.
        memory_every: read the resident size at every ``memory_every``-th :meth:`charge`
            (reading it costs a few microseconds).
        clock: seconds, monotonic (tests pass a fake one).
        rss: bytes of resident memory or ``None`` (tests pass a fake one).

    Raises:
        ValueError: a limit that is not positive.
    """

    def __init__(
        self,
        max_messages: int | None = 100_000,
        render_max_chars: int | None = 1_000_000_000,
        timeout: float | None = 600.0,
        max_memory_mb: float | None = 4096,
        *,
        memory_every: int = 16,
        clock: Callable[[], float] = time.monotonic,
        rss: Callable[[], int | None] = current_rss,
    ) -> None:
        for name, value in (("max_messages", max_messages), ("render_max_chars", render_max_chars),
                            ("timeout", timeout), ("max_memory_mb", max_memory_mb), ("memory_every", memory_every)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"RowBudget {name} must be positive or None, got {value!r}")
        self.max_messages = max_messages
        self.render_max_chars = render_max_chars
        self.timeout = timeout
        self.max_memory_mb = max_memory_mb
        self.memory_every = memory_every
        self._clock = clock
        self._rss = rss
        self.row: int | None = None
        self.chars = 0
        self._calls = 0
        self._t0 = clock()
        self._rss0: int | None = None

    def start(self, row: int | None = None, messages: int | None = None) -> None:
        """Begin a row: reset the counters, take the time and the resident size.

        Args:
            row: the input row index (for the error; the pipeline fills it in otherwise).
            messages: the row's message count, checked against ``max_messages``.

        Raises:
            RowError: ``render_limit`` when ``messages`` is over ``max_messages``.
        """
        self.row = row
        self.chars = 0
        self._calls = 0
        self._t0 = self._clock()
        self._rss0 = self._rss() if self.max_memory_mb is not None else None
        if messages is not None and self.max_messages is not None and messages > self.max_messages:
            self._fail(f"the row has {messages:,} messages, over the per-row limit of {self.max_messages:,} "
                       f"(raise it with --max-messages / max_messages=)")

    def charge(self, chars: int) -> None:
        """Count ``chars`` rendered characters against the row, then check every limit.

        Raises:
            RowError: ``render_limit`` naming the limit passed (characters, seconds, memory).
        """
        self.chars += chars
        self._calls += 1
        if self.render_max_chars is not None and self.chars > self.render_max_chars:
            self._fail(f"rendering the row produced {self.chars:,} characters, over the per-row limit of "
                       f"{self.render_max_chars:,} (raise it with --row-render-max-chars / row_render_max_chars=)")
        self._check_time()
        if self._calls % self.memory_every == 0:
            self._check_memory()

    def check(self) -> None:
        """Check time and memory without charging (e.g. between turns).

        Raises:
            RowError: ``render_limit`` as :meth:`charge`.
        """
        self._check_time()
        self._check_memory()

    def usage(self) -> dict:
        """``{"chars": int, "seconds": float, "memory_mb": float | None}`` of the current row."""
        now = self._rss() if self._rss0 is not None else None
        grown = (now - self._rss0) / 2**20 if now is not None and self._rss0 is not None else None
        return {"chars": self.chars, "seconds": self._clock() - self._t0, "memory_mb": grown}

    def _check_time(self) -> None:
        if self.timeout is not None:
            spent = self._clock() - self._t0
            if spent > self.timeout:
                self._fail(f"the row took {spent:.1f} s, over the per-row limit of {self.timeout:g} s "
                           f"(raise it with --row-timeout / row_timeout=)")

    def _check_memory(self) -> None:
        if self.max_memory_mb is None or self._rss0 is None:
            return
        now = self._rss()
        if now is not None and (now - self._rss0) / 2**20 > self.max_memory_mb:
            self._fail(f"the row grew this process's memory by {(now - self._rss0) / 2**20:,.0f} MiB, over the per-row "
                       f"limit of {self.max_memory_mb:,g} MiB (raise it with --row-max-memory-mb / row_max_memory_mb=)")

    def _fail(self, message: str) -> None:
        raise RowError(Reason.RENDER_LIMIT, message, field="messages", row=self.row, stage="render")
