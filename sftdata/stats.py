"""The ``stats.json`` report of ``sftdata prepare`` and its human summary.

Accounting invariant, always checked before writing: ``rows_in == rows_out + rows_rejected``
where a row is *out* when it produced at least one training example.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .encoder import Counters

#: Upper edges (tokens) of the length histogram bins; the last bin is open-ended.
LENGTH_BIN_EDGES = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def merge_counters(parts: Iterable[Counters]) -> dict[str, Any]:
    """Sum the counters of several encoder processes into one plain dict."""
    render: Counter = Counter()
    encode: Counter = Counter()
    dropped: Counter = Counter()
    for c in parts:
        for f in fields(c.render):
            render[f.name] += getattr(c.render, f.name)
        for f in fields(c.encode):
            v = getattr(c.encode, f.name)
            if isinstance(v, dict):
                dropped.update(v)
            else:
                encode[f.name] += v
    return {"render": dict(render), "encode": dict(encode), "dropped_examples": dict(dropped)}


def length_histogram(lengths: np.ndarray) -> dict[str, int]:
    """Counts of examples per length bin, keys like ``"<=512"`` and ``">32768"``."""
    edges = np.asarray(LENGTH_BIN_EDGES)
    idx = np.searchsorted(edges, lengths, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    keys = [f"<={e}" for e in LENGTH_BIN_EDGES] + [f">{LENGTH_BIN_EDGES[-1]}"]
    return {k: int(v) for k, v in zip(keys, counts)}


def content_fingerprint(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], source_index: Sequence[int],
                        parent: Sequence[Sequence[int]] | None = None) -> str:
    """sha256 over every row's ids, labels, tree parents and source index (identical rows ⇔ identical hash).

    Rows without tree structure (empty ``parent``) hash as before trees existed."""
    h = hashlib.sha256()
    parents = parent if parent is not None else [()] * len(input_ids)
    for ids, lab, src, par in zip(input_ids, labels, source_index, parents):
        h.update(np.asarray(ids, dtype=np.int32).tobytes())
        h.update(b"|")
        h.update(np.asarray(lab, dtype=np.int32).tobytes())
        if len(par):
            h.update(b"^")
            h.update(np.asarray(par, dtype=np.int32).tobytes())
        h.update(np.int64(src).tobytes())
    return h.hexdigest()


def build_stats(
    *,
    rows_in: int,
    source_index: np.ndarray,
    lengths: np.ndarray,
    trained: np.ndarray,
    kinds: Sequence[str],
    truncated: np.ndarray,
    rejects: Sequence[Mapping[str, Any]],
    counters: Mapping[str, Any],
    fingerprint: str,
    linear_lengths: np.ndarray | None = None,
    tokenizer_info: Mapping[str, str],
    options: Mapping[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """Assemble the report. Raises ``AssertionError`` if rows in ≠ rows out + rejected."""
    rows_out = int(len(np.unique(source_index))) if len(source_index) else 0
    by_reason = Counter(r["reason"] for r in rejects)
    assert rows_in == rows_out + len(rejects), f"row accounting broken: {rows_in} in, {rows_out} out, {len(rejects)} rejected"
    tokens = int(lengths.sum()) if len(lengths) else 0
    trained_tokens = int(trained.sum()) if len(trained) else 0
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": len(rejects),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "examples_out": int(len(lengths)),
        "examples_by_kind": dict(sorted(Counter(kinds).items())),
        "turns_trained_in_place": int(counters["encode"].get("in_place_turns", 0)),
        "turns_branched": int(counters["encode"].get("branched_turns", 0)),
        "tree_rows": int(counters["encode"].get("tree_rows", 0)),
        "paths": int(counters["encode"].get("paths", 0)),
        "tokens_one_rendering": int(counters["encode"].get("tokens_one_rendering", 0)),
        "tokens_total": tokens,
        "tokens_linear_layout": int(linear_lengths.sum()) if linear_lengths is not None and len(linear_lengths) else tokens,
        "written_per_rendering": round(tokens / counters["encode"]["tokens_one_rendering"], 4)
        if counters["encode"].get("tokens_one_rendering")
        else None,
        "tokens_trained": trained_tokens,
        "trained_share": round(trained_tokens / tokens, 6) if tokens else 0.0,
        "truncated_examples": int(truncated.sum()) if len(truncated) else 0,
        "dropped_examples": counters["dropped_examples"],
        "length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "mean": round(float(lengths.mean()), 1) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
            "histogram": length_histogram(lengths),
        },
        "render": counters["render"],
        "encode": counters["encode"],
        "content_fingerprint": fingerprint,
        "tokenizer": dict(tokenizer_info),
        "options": dict(options),
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def summary(stats: Mapping[str, Any]) -> str:
    """A few human lines for stdout."""
    lines = [
        f"rows: {stats['rows_in']} in, {stats['rows_out']} out, {stats['rows_rejected']} rejected"
        + (f" ({', '.join(f'{k}: {v}' for k, v in stats['rejected_by_reason'].items())})" if stats["rejected_by_reason"] else ""),
        f"examples: {stats['examples_out']} ({', '.join(f'{k}: {v}' for k, v in stats['examples_by_kind'].items())}), "
        f"turns: {stats['turns_trained_in_place']} in place, {stats['turns_branched']} branched "
        f"({stats['tree_rows']} tree rows), truncated: {stats['truncated_examples']}"
        + (f", dropped: {stats['dropped_examples']}" if stats["dropped_examples"] else ""),
        f"tokens written: {stats['tokens_total']:,} = {stats['written_per_rendering'] or 0:.3f}x one rendering "
        f"({stats['tokens_one_rendering']:,}); the linear layout would write {stats['tokens_linear_layout']:,}",
        f"tokens: {stats['tokens_total']:,} total, {stats['tokens_trained']:,} trained ({100 * stats['trained_share']:.1f}%), "
        f"length min/mean/max {stats['length']['min']}/{stats['length']['mean']}/{stats['length']['max']}",
        f"time: {stats['seconds']:.2f} s ({stats['tokens_per_second'] or 0:,.0f} tokens/s)",
    ]
    return "\n".join(lines)
