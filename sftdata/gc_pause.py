"""Garbage-collection thresholds while a batch of rows is encoded: young collections less often,
full collections deferred.

CPython's cyclic collector (3.11 to 3.13) collects the youngest generation every 700 container
allocations (``threshold0``), traversing every young container still alive, and runs a *full*
collection, over every tracked object in the process, once ten younger collections have run and
the objects that survived them have grown by a quarter since the last one. Encoding a conversation
keeps thousands of containers alive for as long as it is encoded (its message dicts, the render
memo's keys and traces, token lists, the prefix tree), so the young collections traverse them
again and again and the full ones come back and free next to nothing (``gc.callbacks``):

* one 10,000-message conversation, real Qwen3 tokenizer: 5 full collections took 0.54 s of a
  2.7 s ``prepare`` and collected 10 objects (the process held about 270,000 tracked objects);
* tau-bench joined 10 by 10 (``bench/prepare.py --join 10 --qwen3-real``): 162 young and 14
  middle collections took 0.075 s of 1.9 s and collected nothing; with ``threshold0`` at 10,000,
  23 and 2 took 0.018 s.

:func:`batch_gc_thresholds` sets the first threshold to :data:`YOUNG_THRESHOLD` (unless it is
already higher) and the third out of reach for the duration of a batch: cycles that die young (a
template building namespaces that refer to themselves) are still freed by the young collections,
every 10,000 allocations instead of 700, and everything else is freed by reference counting. The
previous thresholds are restored on leaving, unless something else changed them meanwhile; the
next full collection then runs when CPython's own rule calls for it. Python 3.14's incremental
collector ignores the third threshold (``gc.set_threshold``); the first still sets its young
generation's size.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

__all__ = ["YOUNG_THRESHOLD", "batch_gc_thresholds"]

#: the first threshold inside :func:`batch_gc_thresholds` (container allocations between young collections)
YOUNG_THRESHOLD = 10_000
#: the third threshold inside :func:`batch_gc_thresholds` (younger collections before a full one)
_DEFERRED = 1 << 30


@contextmanager
def batch_gc_thresholds() -> Iterator[None]:
    """Collect the young generation every :data:`YOUNG_THRESHOLD` allocations and defer full
    collections inside the block (nothing changes with the collector off or inside another such block)."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[2] >= _DEFERRED:  # off, or already set (nested)
        yield
        return
    mine = (max(before[0], YOUNG_THRESHOLD), before[1], _DEFERRED)
    gc.set_threshold(*mine)
    try:
        yield
    finally:
        if gc.get_threshold() == mine:  # nobody else changed them meanwhile
            gc.set_threshold(*before)
