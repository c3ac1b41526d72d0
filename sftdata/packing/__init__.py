"""Packing: many conversations per fixed-length row, boundaries intact.

``pack_dataset(ds, L)`` turns a prepared dataset (one sequence per row: ``input_ids``,
``labels``, ``length``, ``source_index``) into packed rows of at most ``L`` tokens:

* planning is *global* over the whole dataset (lengths only, a few seconds for 1M rows), not
  per 1,000-row map batch; deterministic for a seed;
* the default strategy ``mbs`` packs tighter than best-fit decreasing (see
  :mod:`sftdata.packing._mbs`); ``bfd`` is exact best-fit decreasing, the baseline;
* sequences longer than ``L`` are dropped or truncated (``truncation``), never silently lost:
  the :class:`PackReport` counts every row and token;
* each packed row keeps ``seq_lengths`` and ``position_ids`` (restarting at 0), which the
  collators in :mod:`sftdata.collate.collators` turn into ``cu_seq_lens`` so attention never crosses a
  sequence boundary;
* a prefix-tree row (``parent`` non-empty, docs/trees.md) is one unit; the packed row keeps
  its ``parent`` (row-local) and depths as ``position_ids``; a tree longer than ``L`` is
  split into sub-trees that fit (:mod:`sftdata.masking.tree_fit`), counted.

Example::

    packed, report = pack_dataset(ds, 4096)
    print(report.summary())
    save_packed(packed, report, "out/packed")
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .report import PACK_STATS_FILE
from ._bfd import plan_bfd
from ._mbs import plan_mbs
from ._packed import PACKED_SCHEMA, TREE_PACKED_SCHEMA, build_packed_table, position_ids_for
from ._plan import BinPlan
from ._truncate import TRUNCATION, check_truncation, fit_long_trees, scan_rows
from .report import PackReport, lower_bound_l1, lower_bound_l2

__all__ = [
    "DEFAULT_STRATEGY",
    "PACKED_SCHEMA",
    "STRATEGIES",
    "TREE_PACKED_SCHEMA",
    "TRUNCATION",
    "BinPlan",
    "PackReport",
    "lower_bound_l1",
    "lower_bound_l2",
    "pack_dataset",
    "plan_bfd",
    "plan_bins",
    "position_ids_for",
    "save_packed",
    "unpack_row",
]

_PLANNERS = {"mbs": plan_mbs, "bfd": plan_bfd}
#: packing strategies: ``mbs`` (default; best-pair completion + repair, never worse than BFD)
#: and ``bfd`` (exact best-fit decreasing)
STRATEGIES = tuple(_PLANNERS)
DEFAULT_STRATEGY = "mbs"


def plan_bins(lengths, max_length: int, *, strategy: str = DEFAULT_STRATEGY, seed: int = 0,
              shard_size: int | None = None, **options) -> BinPlan:
    """Group sequences of ``lengths`` (each in ``[1, max_length]``) into bins of ``max_length``.

    Args:
        lengths: ``(n,)`` integer lengths.
        max_length: bin capacity ``L``.
        strategy: one of :data:`STRATEGIES`.
        seed: makes the plan deterministic (ties, sub-samples).
        shard_size: plan consecutive shards of this many sequences independently (for
            datasets too large to plan at once; planning is global when ``None``).
        **options: strategy options (see :func:`sftdata.packing._mbs.plan_mbs`).

    Returns:
        a :class:`BinPlan` whose ``order`` indexes ``lengths``.
    """
    if strategy not in _PLANNERS:
        raise ConfigError(f"unknown packing strategy {strategy!r}; choose one of {STRATEGIES}")
    planner = _PLANNERS[strategy]
    lengths = np.asarray(lengths, dtype=np.int64)
    if not shard_size or lengths.size <= shard_size:
        return planner(lengths, max_length, seed=seed, **options)
    orders, sizes, info = [], [], {"shards": []}
    for i, start in enumerate(range(0, lengths.size, shard_size)):
        part = planner(lengths[start : start + shard_size], max_length, seed=seed + i, **options)
        orders.append(part.order + start)
        sizes.append(np.diff(part.offsets))
        info["shards"].append(part.info)
    sz = np.concatenate(sizes)
    offsets = np.zeros(sz.size + 1, dtype=np.int64)
    np.cumsum(sz, out=offsets[1:])
    return BinPlan(np.concatenate(orders), offsets, int(max_length), strategy, info)


def pack_dataset(
    dataset,
    max_length: int,
    *,
    strategy: str = DEFAULT_STRATEGY,
    seed: int = 0,
    truncation: str = "drop",
    shuffle: bool = True,
    shard_size: int | None = None,
    num_proc: int | None = None,
    **strategy_options,
):
    """Pack a prepared dataset into rows of at most ``max_length`` tokens.

    Args:
        dataset: a :class:`datasets.Dataset` with ``input_ids`` and ``labels`` (lists of ints,
            same length; labels unshifted, ``-100`` = not trained) and optionally
            ``source_index`` (carried into the packed rows; the input row number otherwise).
            Tree rows (columns ``parent``, ``position_ids`` and optionally ``linear_length``,
            see docs/trees.md) are packed as one unit each.
        max_length: ``L``, the packed row length.
        strategy: one of :data:`STRATEGIES` (default ``mbs``).
        seed: makes the result deterministic: which equal-length sequences share a row and
            the order of the rows.
        truncation: for sequences longer than ``L``: ``drop`` (reason ``too_long``),
            ``truncate`` (first ``L`` tokens) or ``turns`` (cut after the last trained span
            that ends within ``L``, so no assistant turn is cut); a cut sequence without
            trained tokens left is dropped (``no_trained_token_after_truncation``). A tree
            longer than ``L`` is split into sub-trees of at most ``L`` tokens (each repeats
            the context its branches need) and only its sequences that do not fit are cut by
            the same rule (:func:`sftdata.masking.tree_fit.fit_tree`); paths cut are counted
            (``tree_paths_dropped``), split rows too (``split_rows``).
        shuffle: shuffle the packed rows (seeded); ``False`` keeps the planner's order
            (longest sequences first, which correlates row content with position).
        shard_size: plan shards of this many sequences independently (default: global).
        num_proc: threads for building the Arrow rows.
        **strategy_options: passed to the planner.

    Returns:
        ``(packed, report)``: a :class:`datasets.Dataset` with the columns of
        :data:`PACKED_SCHEMA` (``input_ids``, ``labels``, ``position_ids``, ``seq_lengths``:
        ``list<int32>``; ``source_index``: ``list<int64>``; ``num_trained_tokens``,
        ``length``: ``int32``; with tree rows also ``parent``: ``list<int32>`` and
        ``linear_length``: ``int64``, see :data:`TREE_PACKED_SCHEMA`), and a :class:`PackReport`.
    """
    import datasets
    from datasets.table import InMemoryTable

    _check_input(dataset, max_length, strategy, truncation)
    L = int(max_length)
    if getattr(dataset, "_indices", None) is not None:
        dataset = dataset.flatten_indices()
    table = dataset.data.table
    report = PackReport(strategy=strategy, max_length=L, seed=seed, truncation=truncation)

    t0 = time.perf_counter()
    rows_in = int(table.num_rows)
    shortest = _shortest(table)
    table, fit = fit_long_trees(table, L, truncation)
    scan = scan_rows(table, L, truncation)
    kept = np.flatnonzero(scan.keep > 0)
    lengths = scan.keep[kept]
    plan = plan_bins(lengths, L, strategy=strategy, seed=seed, shard_size=shard_size, **strategy_options)
    if shuffle and plan.num_bins > 1:
        plan = plan.permuted(np.random.default_rng(seed).permutation(plan.num_bins))
    t1 = time.perf_counter()

    out = _build(table, scan, kept, plan, num_proc)
    # an explicit fingerprint: otherwise datasets hashes (pickles) the whole table
    fingerprint = _fingerprint(dataset, L, strategy, seed, truncation, shuffle, shard_size, strategy_options)
    packed = datasets.Dataset(InMemoryTable(out), fingerprint=fingerprint)
    t2 = time.perf_counter()

    _account(report, scan, fit, plan, kept, rows_in, shortest)
    report.plan_seconds = round(t1 - t0, 4)
    report.build_seconds = round(t2 - t1, 4)
    report.check()
    return packed, report


def _build(table, scan, kept: np.ndarray, plan: BinPlan, num_proc: int | None):
    """The packed Arrow table of the ``kept`` rows of ``table`` placed by ``plan``
    (:func:`~sftdata.packing._packed.build_packed_table`); ``source_index`` is the input row
    number when the input has no such column."""
    if "source_index" in table.column_names:
        source = np.asarray(table.column("source_index").combine_chunks().to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        source = np.arange(table.num_rows, dtype=np.int64)
    trees = scan.is_tree is not None
    cols = ["input_ids", "labels"] + (["parent", "position_ids"] if trees else [])
    return build_packed_table(
        table.select(cols), kept, scan.keep[kept], scan.trained_kept[kept], source[kept], plan,
        num_threads=num_proc, is_tree=scan.is_tree[kept] if trees else None,
        linear_kept=scan.linear_kept[kept] if trees else None,
    )


def _check_input(dataset, max_length: int, strategy: str, truncation: str) -> None:
    """Raise :class:`~sftdata.errors.ConfigError` for what :func:`pack_dataset` cannot pack: a
    ``DatasetDict``, ``max_length < 1``, an unknown strategy or truncation, missing
    ``input_ids``/``labels``, or an already packed input."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        raise ConfigError("pack_dataset takes a datasets.Dataset; pack each split of a DatasetDict")
    if int(max_length) < 1:
        raise ConfigError(f"max_length must be >= 1, got {max_length}")
    if strategy not in _PLANNERS:
        raise ConfigError(f"unknown packing strategy {strategy!r}; choose one of {STRATEGIES}")
    missing = [c for c in ("input_ids", "labels") if c not in dataset.column_names]
    if missing:
        raise ConfigError(f"dataset lacks columns {missing}; expected `sftdata prepare` output")
    if "seq_lengths" in dataset.column_names:
        raise ConfigError("the input is already packed (it has a `seq_lengths` column): pack the `sftdata prepare` "
                          "output instead, with the --max-length you want")
    check_truncation(truncation)


def _account(report: PackReport, scan, fit, plan: BinPlan, kept: np.ndarray, rows_in: int, shortest: int) -> None:
    """Fill ``report``'s counts from the row scan, the tree fit and the plan (see :class:`PackReport`)."""
    L = report.max_length
    lengths = scan.keep[kept]
    dropped_rows = scan.reason != ""
    reasons, counts = np.unique(scan.reason[dropped_rows].astype(str), return_counts=True)
    report.dropped = {str(r): int(c) for r, c in zip(reasons, counts)}
    if fit.dropped:
        report.dropped[fit.dropped_reason] = report.dropped.get(fit.dropped_reason, 0) + fit.dropped
    # the sub-trees of fitted rows (fit.tokens_out tokens, all kept) stand in for fit.rows rows
    report.rows_in = rows_in
    report.shortest_row = shortest
    report.sequences_out = int(kept.size)
    report.bins = plan.num_bins
    report.tokens_in = int(scan.lengths.sum()) - fit.tokens_out + fit.tokens_in
    report.tokens_out = int(lengths.sum())
    report.tokens_dropped = int(scan.lengths[dropped_rows].sum()) + fit.tokens_dropped
    report.tokens_repeated = fit.tokens_out - fit.tokens_unique
    report.tokens_truncated = report.tokens_in + report.tokens_repeated - report.tokens_out - report.tokens_dropped
    report.trained_tokens_in = int(scan.trained.sum()) - fit.trained_kept + fit.trained_in
    report.trained_tokens_out = int(scan.trained_kept.sum())
    report.trained_tokens_dropped = int(scan.trained[dropped_rows].sum()) + fit.trained_dropped
    report.trained_tokens_truncated = (
        report.trained_tokens_in - report.trained_tokens_out - report.trained_tokens_dropped
    )
    report.trained_tokens_keepable = int(scan.keepable.sum()) - fit.trained_kept + fit.keepable
    report.truncated_rows = int(((scan.keep > 0) & (scan.keep < scan.lengths)).sum()) + fit.truncated
    report.split_rows = fit.split
    report.sequences_from_splits = fit.sequences_out - (fit.rows - fit.dropped)
    report.linear_tokens_out = int(scan.linear_kept.sum())
    if scan.is_tree is not None:
        report.tree_rows = int(scan.is_tree[: rows_in - fit.rows].sum()) + fit.rows  # the input's
        report.tree_paths_dropped = fit.paths_cut
    report.lower_bound = lower_bound_l1(report.tokens_out, L)
    report.lower_bound_l2 = lower_bound_l2(lengths, L)
    report.fill = report.tokens_out / (report.bins * L) if report.bins else 0.0
    report.strategy_info = dict(plan.info)


def _shortest(table) -> int:
    """Tokens of the shortest non-empty row (0 if none)."""
    import pyarrow.compute as pc

    n = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    n = n[n > 0]
    return int(n.min()) if n.size else 0


def _fingerprint(dataset, *params) -> str:
    from ..hashing import short_digest

    base = getattr(dataset, "_fingerprint", None) or f"{len(dataset)}-{dataset.column_names}"
    return short_digest(repr((base, "sftdata.pack", *params)))


def save_packed(packed, report: PackReport, out_dir: str | os.PathLike) -> Path:
    """Write ``packed`` with ``save_to_disk`` and ``report`` as ``pack_stats.json`` in ``out_dir``."""
    out = Path(out_dir)
    packed.save_to_disk(str(out))
    with open(out / PACK_STATS_FILE, "w", encoding="utf-8") as f:
        json.dump(report.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    return out


def unpack_row(row: dict) -> list[dict]:
    """Split one packed row back into its sequences.

    Returns a list of ``{"input_ids", "labels", "source_index"}`` dicts (lists of ints), in
    row order. A row of a tree dataset (with a ``parent`` column) also gives every sequence
    its ``parent`` (sequence-local) and ``position_ids``, both empty for a single path, as in
    prepared tree rows.
    """
    trees = row.get("parent") is not None
    parent = np.asarray(row["parent"], dtype=np.int64) if trees and len(row["parent"]) else None
    out, start = [], 0
    for n, src in zip(row["seq_lengths"], row["source_index"]):
        n = int(n)
        seq = {
            "input_ids": list(row["input_ids"][start : start + n]),
            "labels": list(row["labels"][start : start + n]),
            "source_index": int(src),
        }
        if trees and parent is None:
            seq["parent"], seq["position_ids"] = [], []
        elif parent is not None:
            p = parent[start : start + n]
            p = np.where(p >= 0, p - start, -1)
            path = bool((p == np.arange(n) - 1).all())
            seq["parent"] = [] if path else p.tolist()
            seq["position_ids"] = [] if path else [int(x) for x in row["position_ids"][start : start + n]]
        out.append(seq)
        start += n
    return out
