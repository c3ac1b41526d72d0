"""The parent side of ``prepare``: read lazily, encode chunks in a worker pool, keep order.

* :func:`chunked` groups the lazily read rows into chunks of :data:`CHUNK_ROWS` rows;
* :func:`ordered_map` runs :class:`~sftdata.chunks.ChunkEncoder` in-process or in a pool
  of ``num_proc`` processes with at most ``2 * num_proc + 2`` chunks in flight, yielding
  results in input order: the parent holds a bounded number of chunks whatever the input
  size, and workers send back Arrow record batches, not Python lists.
"""

from __future__ import annotations

import os
from collections import deque
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator

from .chunks import ChunkResult
from .invariants import InvariantError

#: Input rows per work item (also the tokenizer batch inside a worker).
CHUNK_ROWS = 64


def chunked(items: Iterable[tuple[int, Any]], size: int = CHUNK_ROWS) -> Iterator[list[tuple[int, Any]]]:
    """Group ``(row_index, item)`` pairs into lists of ``size``."""
    chunk: list[tuple[int, Any]] = []
    for pair in items:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_WORKER: Callable | None = None


def _init_worker(fn: Callable) -> None:
    global _WORKER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _WORKER = fn


def _work(chunk: list[tuple[int, Any]]) -> ChunkResult:
    """Run the worker function of this pool process (set by :func:`_init_worker`) on ``chunk``."""
    if _WORKER is None:
        raise InvariantError("a pool worker runs chunks only after _init_worker set its function")
    return _WORKER(chunk)


def ordered_map(fn: Callable[[list], ChunkResult], chunks: Iterable[list], num_proc: int = 1) -> Iterator[ChunkResult]:
    """``fn`` over ``chunks`` in order; in ``num_proc`` worker processes when ``num_proc > 1``.

    The pool uses ``fork`` where available (workers inherit ``fn`` without pickling), else
    ``spawn`` (``fn`` is pickled: :class:`~sftdata.encoder.Encoder` supports it).
    """
    if num_proc <= 1:
        for chunk in chunks:
            yield fn(chunk)
        return
    ctx = get_context("fork") if hasattr(os, "fork") else get_context("spawn")
    max_inflight = 2 * num_proc + 2
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(fn,)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_work, (chunk,)))
            while len(pending) >= max_inflight:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
