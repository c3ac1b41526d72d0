"""The ``stats.json`` report of ``sftdata prepare``: accumulated while rows stream, never
recomputed from the output; and the content fingerprint of the output.

* :class:`StatsPart` — the per-row accumulators of some rows (a chunk, a committed shard
  file, a whole job). Parts add up (``+=``), so worker processes, resumed jobs and
  ``sftdata merge`` all produce the report of the whole.
* :func:`add_counters` — sums the encoder's :class:`~sftdata.encoder.Counters` generically
  (every dataclass field: ints add, dicts add per key, nested dataclasses recurse), so new
  counters need no change here.
* :class:`ContentHasher` — sha256 over every output column, fed record batch by record
  batch: the value does not depend on how the rows are split into batches or files
  (defined in :mod:`sftdata.hashing`, with every other digest; imported here too).

Accounting invariant, checked by :func:`check_row_accounting` (in :func:`build_stats`):
``rows_in == rows_out + rows_rejected`` where a row is *out* when it produced at least one
training example.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from ..hashing import ContentHasher, content_fingerprint  # noqa: F401 - public here too
from ..invariants import InvariantError
from ..masking.tree_arrays import count_trained
from ..counters import add_counters, add_stats, counters_to_dict  # noqa: F401 - public here too

#: Upper edges (tokens) of the length histogram bins; the last bin is open-ended.
LENGTH_BIN_EDGES = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
HISTOGRAM_KEYS = tuple(f"<={e}" for e in LENGTH_BIN_EDGES) + (f">{LENGTH_BIN_EDGES[-1]}",)


def length_histogram(lengths: np.ndarray) -> dict[str, int]:
    """Counts of examples per length bin, keys like ``"<=512"`` and ``">32768"``."""
    edges = np.asarray(LENGTH_BIN_EDGES)
    idx = np.searchsorted(edges, lengths, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return {k: int(v) for k, v in zip(HISTOGRAM_KEYS, counts)}


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class StatsPart:
    """Accumulators of some input rows and the examples they produced (all additive)."""

    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict = field(default_factory=dict)
    examples_out: int = 0
    examples_by_kind: dict = field(default_factory=dict)
    tokens_total: int = 0
    tokens_trained: int = 0
    tokens_linear: int = 0  # tokens the same examples take in the linear layout
    truncated_examples: int = 0
    length_min: int | None = None
    length_max: int | None = None
    histogram: list = field(default_factory=lambda: [0] * len(HISTOGRAM_KEYS))
    too_long_min_length: int | None = None
    counters: dict = field(default_factory=dict)

    def __iadd__(self, other: "StatsPart") -> "StatsPart":
        for name in ("rows_in", "rows_out", "rows_rejected", "examples_out", "tokens_total", "tokens_trained", "tokens_linear",
                     "truncated_examples"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("rejected_by_reason", "examples_by_kind"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k] = mine.get(k, 0) + v
        self.length_min = _min(self.length_min, other.length_min)
        self.length_max = _max(self.length_max, other.length_max)
        self.too_long_min_length = _min(self.too_long_min_length, other.too_long_min_length)
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram)]
        add_counters(self.counters, other.counters)
        return self

    def add_examples(self, lengths: np.ndarray, labels_flat: np.ndarray, kinds: Iterable[str], truncated: Iterable[bool],
                     linear_lengths: np.ndarray | None = None, parent: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Count a batch of ``n`` output examples.

        Args:
            lengths: ``(n,)`` int tokens per example.
            labels_flat: ``(sum(lengths),)`` the examples' labels, concatenated (unshifted).
            kinds, truncated: ``n`` example kinds and truncation flags.
            linear_lengths: ``(n,)`` tokens of the same examples as linear rows (default: ``lengths``).
            parent: ``(values, offsets)`` of the examples' ``parent`` column (an empty list for
                a linear row); without it every example is counted as a single path.

        ``tokens_trained`` adds the trained tokens of :func:`sftdata.masking.tree_arrays.count_trained`
        (labels ``!= IGNORE_INDEX`` that a position predicts), the rule ``sftdata pack`` and the
        trainer count by.
        """
        n = len(lengths)
        if not n:
            return
        self.examples_out += n
        self.tokens_total += int(lengths.sum())
        self.tokens_linear += int((lengths if linear_lengths is None else linear_lengths).sum())
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        par, par_off = parent if parent is not None else (None, None)
        self.tokens_trained += int(count_trained(labels_flat, offsets, par, par_off).sum())
        self.truncated_examples += int(sum(bool(t) for t in truncated))
        for k, v in Counter(kinds).items():
            self.examples_by_kind[k] = self.examples_by_kind.get(k, 0) + v
        self.length_min = _min(self.length_min, int(lengths.min()))
        self.length_max = _max(self.length_max, int(lengths.max()))
        h = length_histogram(lengths)
        self.histogram = [a + h[k] for a, k in zip(self.histogram, HISTOGRAM_KEYS)]

    def add_reject(self, reason: str, length: int | None = None) -> None:
        """Count one rejected input row under ``reason`` (a :class:`~sftdata.errors.Reason` value); for
        ``too_long``, ``length`` (tokens of its shortest example) updates ``too_long_min_length``."""
        self.rows_rejected += 1
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        if reason == "too_long" and length is not None:
            self.too_long_min_length = _min(self.too_long_min_length, int(length))

    def to_dict(self) -> dict:
        """The accumulators as a JSON-able dict (the shard manifests store it; :meth:`from_dict` reads it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StatsPart":
        """The part written by :meth:`to_dict` (unknown keys, e.g. from a newer version, are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> "StatsPart":
        """Rebuild the accumulators of a finished job from its ``stats.json`` (for merging)."""
        counters = {"render": dict(stats.get("render", {})), "encode": dict(stats.get("encode", {}))}
        if stats.get("dropped_examples"):
            counters["encode"]["dropped_examples"] = dict(stats["dropped_examples"])
        for k, v in stats.get("counters_extra", {}).items():
            counters[k] = v
        length = stats.get("length", {})
        return cls(
            rows_in=stats["rows_in"],
            rows_out=stats["rows_out"],
            rows_rejected=stats["rows_rejected"],
            rejected_by_reason=dict(stats["rejected_by_reason"]),
            examples_out=stats["examples_out"],
            examples_by_kind=dict(stats["examples_by_kind"]),
            tokens_total=stats["tokens_total"],
            tokens_trained=stats["tokens_trained"],
            tokens_linear=stats.get("tokens_linear_layout", stats["tokens_total"]),
            truncated_examples=stats["truncated_examples"],
            length_min=length.get("min") if stats["examples_out"] else None,
            length_max=length.get("max") if stats["examples_out"] else None,
            histogram=[length.get("histogram", {}).get(k, 0) for k in HISTOGRAM_KEYS],
            too_long_min_length=stats.get("too_long_min_length"),
            counters=counters,
        )


def check_row_accounting(part: StatsPart) -> None:
    """The accounting invariant: every input row is out (it produced at least one training
    example) or rejected, never both or neither.

    Raises:
        InvariantError: ``rows_in != rows_out + rows_rejected``.
    """
    if part.rows_in != part.rows_out + part.rows_rejected:
        raise InvariantError("rows_in == rows_out + rows_rejected",
                             f"{part.rows_in} in, {part.rows_out} out, {part.rows_rejected} rejected")


def build_stats(
    *,
    part: StatsPart,
    fingerprint: str,
    tokenizer_info: Mapping[str, str],
    options: Mapping[str, Any],
    seconds: float,
    data: Mapping[str, Any] | None = None,
    sharding: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report from the accumulators of the whole job.

    Raises:
        InvariantError: rows in ≠ rows out + rows rejected (:func:`check_row_accounting`).
    """
    p = part
    check_row_accounting(p)
    counters = {k: dict(v) if isinstance(v, Mapping) else v for k, v in p.counters.items()}
    render = dict(counters.pop("render", {}))
    encode = dict(counters.pop("encode", {}))
    dropped = encode.pop("dropped_examples", {}) or {}
    tokens = p.tokens_total
    stats: dict[str, Any] = {
        "rows_in": p.rows_in,
        "rows_out": p.rows_out,
        "rows_rejected": p.rows_rejected,
        "rejected_by_reason": dict(sorted(p.rejected_by_reason.items())),
        "examples_out": p.examples_out,
        "examples_by_kind": dict(sorted(p.examples_by_kind.items())),
        "turns_trained_in_place": int(encode.get("in_place_turns", 0)),
        "turns_branched": int(encode.get("branched_turns", 0)),
        "tree_rows": int(encode.get("tree_rows", 0)),
        "paths": int(encode.get("paths", 0)),
        "tokens_one_rendering": int(encode.get("tokens_one_rendering", 0)),
        "tokens_total": tokens,
        "tokens_linear_layout": p.tokens_linear,
        "written_per_rendering": round(tokens / encode["tokens_one_rendering"], 4) if encode.get("tokens_one_rendering") else None,
        "tokens_trained": p.tokens_trained,
        "trained_share": round(p.tokens_trained / tokens, 6) if tokens else 0.0,
        "truncated_examples": p.truncated_examples,
        "dropped_examples": dict(sorted(dropped.items())),
        "too_long_min_length": p.too_long_min_length,
        "length": {
            "min": p.length_min or 0,
            "mean": round(tokens / p.examples_out, 1) if p.examples_out else 0.0,
            "max": p.length_max or 0,
            "histogram": dict(zip(HISTOGRAM_KEYS, p.histogram)),
        },
        "render": render,
        "encode": encode,
    }
    if counters:
        stats["counters_extra"] = counters
    stats.update(
        {
            "content_fingerprint": fingerprint,
            "tokenizer": dict(tokenizer_info),
            "options": json.loads(json.dumps(dict(options), default=str)),  # as stats.json reads back
            "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        }
    )
    if sharding is not None:
        stats["sharding"] = dict(sharding)
    if data is not None:
        stats["data"] = dict(data)
    return stats


#: stats.json keys that describe the run, not the data (they differ between identical outputs).
TIMING_KEYS = ("seconds", "tokens_per_second")


def no_schema_warning(stats: Mapping[str, Any]) -> str | None:
    """One line when trained rows call tools whose schema the rows do not carry (the model would
    learn to call tools it never sees), else ``None``."""
    render = stats.get("render") or {}
    calls = render.get("tool_calls_without_schema", 0)
    if not calls:
        return None
    return (f"{calls:,} tool calls in {render.get('rows_with_calls_without_schema', 0):,} rows name a tool with no schema in "
            "the row: the model learns to call tools it never sees (pass the schemas with --tools-file or a tools field)")


def length_loss_warning(stats: Mapping[str, Any], share: float = 0.01) -> str | None:
    """One line when ``max_length`` cost more than ``share`` of the trained tokens (rows written
    plus what was cut), else ``None``."""
    encode = stats.get("encode") or {}
    lost = int(encode.get("trained_tokens_cut", 0))
    total = int(stats.get("tokens_trained", 0)) + lost
    if not total or lost <= share * total:
        return None
    max_length = (stats.get("options") or {}).get("max_length")
    return (f"{lost:,} of {total:,} trained tokens ({lost / total:.1%}) did not fit max_length={max_length:,}"
            f" (truncation={(stats.get('options') or {}).get('truncation')!r}); a larger --max-length keeps more")


def summary(stats: Mapping[str, Any]) -> str:
    """A few human lines for stdout."""
    lines = [
        f"rows: {stats['rows_in']} in, {stats['rows_out']} out, {stats['rows_rejected']} rejected"
        + (f" ({', '.join(f'{k}: {v}' for k, v in stats['rejected_by_reason'].items())})" if stats["rejected_by_reason"] else ""),
        f"examples: {stats['examples_out']} ({', '.join(f'{k}: {v}' for k, v in stats['examples_by_kind'].items())}), "
        f"turns: {stats['turns_trained_in_place']} in place, {stats['turns_branched']} branched "
        f"({stats['tree_rows']} tree rows), truncated: {stats['truncated_examples']}"
        + (f", split to fit: {stats['encode']['split_rows']}" if (stats.get("encode") or {}).get("split_rows") else "")
        + (f", dropped: {stats['dropped_examples']}" if stats["dropped_examples"] else ""),
        f"tokens written: {stats['tokens_total']:,} = {stats['written_per_rendering'] or 0:.3f}x one rendering "
        f"({stats['tokens_one_rendering']:,}); the linear layout would write {stats['tokens_linear_layout']:,}",
        f"tokens: {stats['tokens_total']:,} total, {stats['tokens_trained']:,} trained ({100 * stats['trained_share']:.1f}%), "
        f"length min/mean/max {stats['length']['min']}/{stats['length']['mean']}/{stats['length']['max']}",
        f"time: {stats['seconds']:.2f} s ({stats['tokens_per_second'] or 0:,.0f} tokens/s)",
    ]
    if stats.get("too_long_min_length") is not None:
        max_length = stats.get("options", {}).get("max_length")
        lines.append(
            f"too long: the shortest example of a row rejected too_long has {stats['too_long_min_length']:,} tokens"
            + (f" (max_length {max_length})" if max_length else "")
        )
    return "\n".join(lines)
