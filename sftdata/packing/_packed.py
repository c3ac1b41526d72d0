"""Building packed rows (Arrow in, Arrow out).

A packed row is the concatenation of the kept prefixes of its sequences. Columns:

==================== ================ ==============================================
``input_ids``        ``list<int32>``  tokens, sequence after sequence
``labels``           ``list<int32>``  unshifted labels, unchanged (``-100`` = untrained)
``position_ids``     ``list<int32>``  ``0, 1, ...`` restarting at every sequence
``seq_lengths``      ``list<int32>``  length of each sequence, in row order
``source_index``     ``list<int64>``  each sequence's ``source_index`` (or input row)
``num_trained_tokens`` ``int32``      trained tokens (labels ``!= -100`` not at a
                                      sequence's first position)
``length``           ``int32``        ``sum(seq_lengths)``
==================== ================ ==============================================

When the input holds prefix-tree rows (a ``parent`` column, see docs/trees.md), each tree is
one sequence of ``seq_lengths`` and two columns are added (:data:`TREE_PACKED_SCHEMA`):

==================== ================ ==============================================
``parent``           ``list<int32>``  row-local parent of every token, ``-1`` at every
                                      sequence start (and root); **empty** for a row
                                      without a tree (its sequences are plain chains)
``linear_length``    ``int64``        tokens the row's examples take as linear rows
==================== ================ ==============================================

``position_ids`` of a tree are its depths (a linear sequence's ramp is its depth too), so
``position_ids`` alone still describe the row when a trainer drops the other columns.

Gathering tokens is one ``memcpy`` per sequence (``np.concatenate`` of zero-copy views of the
source rows' kept prefixes, about 3x faster than an Arrow ``take``); ``position_ids`` are
slices of one ramp.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from ._plan import BinPlan
from ._tree import tree_columns

PACKED_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("seq_lengths", pa.list_(pa.int32())),
        ("source_index", pa.list_(pa.int64())),
        ("num_trained_tokens", pa.int32()),
        ("length", pa.int32()),
    ]
)

#: packed rows of an input with tree rows: two more columns (see the module docstring)
TREE_PACKED_SCHEMA = PACKED_SCHEMA.append(pa.field("parent", pa.list_(pa.int32()))).append(
    pa.field("linear_length", pa.int64())
)


def position_ids_for(seq_lengths: np.ndarray) -> np.ndarray:
    """``int32 (sum(seq_lengths),)``: ``0..len-1`` for every sequence, concatenated."""
    seq_lengths = np.asarray(seq_lengths, dtype=np.int64)
    if seq_lengths.size == 0:
        return np.zeros(0, dtype=np.int32)
    ramp = np.arange(int(seq_lengths.max()), dtype=np.int32)
    return np.concatenate([ramp[:k] for k in seq_lengths.tolist()])


class _ListColumn:
    """Zero-copy numpy views of a list column's chunks, to gather row prefixes fast."""

    def __init__(self, col: pa.ChunkedArray | pa.Array) -> None:
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        self.values, starts, which = [], [], []
        for i, ch in enumerate(chunks):
            if ch.null_count:
                raise ValueError("list columns to pack must not contain nulls")
            off = np.asarray(ch.offsets, dtype=np.int64)
            self.values.append(np.asarray(ch.values))  # offsets index the whole child buffer
            starts.append(off[:-1])
            which.append(np.full(len(ch), i, dtype=np.int64))
        self.start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.chunk = np.concatenate(which) if which else np.zeros(0, np.int64)

    def gather(self, rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """``int32``: the first ``keep[i]`` values of row ``rows[i]``, concatenated (memcpy per row)."""
        starts = self.start[rows].tolist()
        if len(self.values) == 1:
            v = self.values[0]
            parts = [v[s : s + k] for s, k in zip(starts, keep.tolist())]
        else:
            vs = self.values
            parts = [vs[c][s : s + k] for c, s, k in zip(self.chunk[rows].tolist(), starts, keep.tolist())]
        out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        if out.dtype != np.int32:
            if out.size and (out.max() > np.iinfo(np.int32).max or out.min() < np.iinfo(np.int32).min):
                raise ValueError("token ids or labels do not fit in int32")
            out = out.astype(np.int32)
        return out


def _list(values: np.ndarray, offsets: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=typ))


def _build_chunk(ids_col: _ListColumn, lab_col: _ListColumn, rows: np.ndarray, keep: np.ndarray,
                 trained: np.ndarray, source: np.ndarray, bin_sizes: np.ndarray, tree=None) -> pa.RecordBatch:
    """Packed rows for consecutive bins holding source ``rows`` (in order), ``bin_sizes`` per bin.

    ``tree``: ``(par_col, pos_col, is_tree, linear_kept)`` per item when the input has tree rows.
    """
    ids = ids_col.gather(rows, keep)
    lab = lab_col.gather(rows, keep)
    pos = position_ids_for(keep)
    item_off = np.zeros(bin_sizes.size + 1, dtype=np.int64)
    np.cumsum(bin_sizes, out=item_off[1:])
    bin_len = np.add.reduceat(keep, item_off[:-1]) if keep.size else np.zeros(0, np.int64)
    bin_trained = np.add.reduceat(trained, item_off[:-1]) if keep.size else np.zeros(0, np.int64)
    tok_off = np.zeros(bin_sizes.size + 1, dtype=np.int64)
    np.cumsum(bin_len, out=tok_off[1:])
    if tok_off[-1] >= 2**31:
        raise ValueError("a build chunk exceeds 2**31 tokens; lower chunk_tokens")
    arrays = [
        None,  # position_ids, below
        _list(keep.astype(np.int32), item_off, pa.int32()),
        _list(source.astype(np.int64), item_off, pa.int64()),
        pa.array(bin_trained.astype(np.int32), type=pa.int32()),
        pa.array(bin_len.astype(np.int32), type=pa.int32()),
    ]
    schema = PACKED_SCHEMA
    if tree is not None:
        par_col, pos_col, is_tree, linear_kept = tree
        kt = np.where(is_tree, keep, 0)
        par_values, par_offsets, pos = tree_columns(
            par_col.gather(rows, kt), pos_col.gather(rows, kt), is_tree, keep, item_off, bin_len, pos
        )
        bin_linear = np.add.reduceat(linear_kept, item_off[:-1]) if keep.size else np.zeros(0, np.int64)
        arrays += [_list(par_values, par_offsets, pa.int32()), pa.array(bin_linear.astype(np.int64), type=pa.int64())]
        schema = TREE_PACKED_SCHEMA
    arrays[0] = _list(pos, tok_off, pa.int32())
    return pa.RecordBatch.from_arrays(
        [_list(ids, tok_off, pa.int32()), _list(lab, tok_off, pa.int32()), *arrays], schema=schema
    )


def build_packed_table(table: pa.Table, rows: np.ndarray, keep: np.ndarray, trained: np.ndarray,
                       source: np.ndarray, plan: BinPlan, *, chunk_tokens: int = 1 << 22,
                       num_threads: int | None = None, is_tree: np.ndarray | None = None,
                       linear_kept: np.ndarray | None = None) -> pa.Table:
    """Materialise ``plan`` into an Arrow table with :data:`PACKED_SCHEMA`.

    Args:
        table: the input rows (``input_ids``, ``labels``).
        rows, keep, trained, source: per planned item: its row in ``table``, the tokens kept,
            its trained tokens among them and its ``source_index``.
        plan: bins over the planned items.
        chunk_tokens: tokens per built record batch (bounds peak memory).
        num_threads: build record batches in parallel threads (numpy/Arrow release the GIL).
        is_tree, linear_kept: per planned item, when the input has tree rows (``table`` then
            also has ``parent`` and ``position_ids``): the output gets :data:`TREE_PACKED_SCHEMA`.
    """
    ids_col = _ListColumn(table.column("input_ids"))
    lab_col = _ListColumn(table.column("labels"))
    trees = is_tree is not None
    if trees:
        par_col, pos_col = _ListColumn(table.column("parent")), _ListColumn(table.column("position_ids"))
    sizes = np.diff(plan.offsets)
    bin_tokens = plan.bin_lengths(keep)
    cum = np.cumsum(bin_tokens)
    bounds = [0]
    while bounds[-1] < plan.num_bins:
        base = cum[bounds[-1] - 1] if bounds[-1] else 0
        nxt = int(np.searchsorted(cum, base + chunk_tokens, side="right"))
        bounds.append(max(nxt, bounds[-1] + 1))
    jobs = []
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        items = plan.order[plan.offsets[b0] : plan.offsets[b1]]
        tree = (par_col, pos_col, is_tree[items], linear_kept[items]) if trees else None
        jobs.append((ids_col, lab_col, rows[items], keep[items], trained[items], source[items], sizes[b0:b1], tree))
    if num_threads and num_threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=num_threads) as ex:
            batches = list(ex.map(lambda j: _build_chunk(*j), jobs))
    else:
        batches = [_build_chunk(*j) for j in jobs]
    return pa.Table.from_batches(batches, schema=TREE_PACKED_SCHEMA if trees else PACKED_SCHEMA)
