"""Per-row lengths, trained-token counts and the over-length policy, read from Arrow.

Everything is vectorised over Arrow record batches (flat numpy views of the list columns),
so scanning a memory-mapped dataset costs one pass over its ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, Reason
from ._tree import cut_tree, trained_roots

#: over-length policies: ``drop`` the row; ``truncate`` to the first ``L`` tokens; ``turns``:
#: cut at the end of the last trained span that fits (never inside an assistant turn)
TRUNCATION = ("drop", "truncate", "turns")
IGNORE = -100


@dataclass
class RowScan:
    """Per-row facts (``int64`` arrays indexed by input row).

    Attributes:
        lengths: tokens per row.
        trained: trained tokens per row (labels ``!= -100`` at positions ``>= 1``).
        keep: tokens kept per row (``0``: dropped).
        trained_kept: trained tokens among the kept ones.
        reason: per-row drop reason (``""`` if kept), an object array.
        is_tree: rows holding a prefix tree (``parent`` non-empty); all False without ``parent``.
        linear_kept: tokens the kept part takes in the linear layout (``keep`` for linear rows).
        paths_dropped: root-to-leaf paths of tree rows whose leaf was cut by truncation.

    For tree rows, a trained token is a label ``!= -100`` with a parent (roots predict nothing).
    """

    lengths: np.ndarray
    trained: np.ndarray
    keep: np.ndarray
    trained_kept: np.ndarray
    reason: np.ndarray
    is_tree: np.ndarray | None = None
    linear_kept: np.ndarray | None = None
    paths_dropped: np.ndarray | None = None


def _flat(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)`` of a list column, offsets relative to ``values``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    offsets = np.asarray(col.offsets, dtype=np.int64)
    values = np.asarray(col.values)
    return values[offsets[0] : offsets[-1]], offsets - offsets[0]


def _segment_counts(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Trained flags per row, position 0 of every row excluded (one cumulative sum)."""
    cs = np.zeros(mask.size + 1, dtype=np.int32 if mask.size < 2**31 else np.int64)
    np.cumsum(mask, out=cs[1:])
    counts = cs[offsets[1:]].astype(np.int64) - cs[offsets[:-1]]
    nonempty = offsets[:-1] < offsets[1:]
    counts[nonempty] -= mask[offsets[:-1][nonempty]]
    return counts


def _row_chunks(table: pa.Table, chunk_tokens: int) -> list[tuple[int, int]]:
    """Row ranges holding about ``chunk_tokens`` tokens each (small temporaries stay in the heap)."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(table.column("labels")).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)
    cum = np.cumsum(lengths)
    bounds = [0]
    while bounds[-1] < table.num_rows:
        base = cum[bounds[-1] - 1] if bounds[-1] else 0
        nxt = int(np.searchsorted(cum, base + chunk_tokens, side="right"))
        bounds.append(max(nxt, bounds[-1] + 1))
    return list(zip(bounds[:-1], bounds[1:]))


def scan_rows(table: pa.Table, max_length: int, truncation: str, *, chunk_tokens: int = 1 << 22) -> RowScan:
    """Scan ``table`` (columns ``input_ids``, ``labels``) and apply the over-length policy.

    Rows longer than ``max_length`` are dropped (``too_long``) under ``drop``; cut to their
    first ``max_length`` tokens under ``truncate``; cut after the last trained span that ends
    within ``max_length`` under ``turns``. A cut row left without trained tokens is dropped
    (``no_trained_token_after_truncation``); an empty row is dropped (``empty``).

    Tree rows (a ``parent`` column with a non-empty entry) are one unit each and keep a DFS
    prefix when cut (see :mod:`sftdata.packing._tree`); ``position_ids`` (their depths) and,
    if present, ``linear_length`` are read too.
    """
    if truncation not in TRUNCATION:
        raise ConfigError(f"truncation must be one of {TRUNCATION}, got {truncation!r}")
    L = int(max_length)
    n = table.num_rows
    lengths = np.zeros(n, dtype=np.int64)
    trained = np.zeros(n, dtype=np.int64)
    keep = np.zeros(n, dtype=np.int64)
    trained_kept = np.zeros(n, dtype=np.int64)
    reason = np.full(n, "", dtype=object)
    trees = "parent" in table.column_names
    is_tree = np.zeros(n, dtype=bool)
    linear_kept = np.zeros(n, dtype=np.int64)
    paths_dropped = np.zeros(n, dtype=np.int64)
    if trees and "position_ids" not in table.column_names:
        raise ConfigError("tree rows (a `parent` column) need their `position_ids` (depths) column")
    for start, stop in _row_chunks(table, chunk_tokens):
        part = table.slice(start, stop - start)
        ids, id_off = _flat(part.column("input_ids"))
        lab, off = _flat(part.column("labels"))
        if not np.array_equal(id_off, off):
            bad = int(np.flatnonzero(np.diff(id_off) != np.diff(off))[0]) + start
            raise ConfigError(f"row {bad}: input_ids and labels have different lengths")
        ln = np.diff(off)
        mask = lab != IGNORE
        tr = _segment_counts(mask, off)
        sl = slice(start, start + ln.size)
        if trees:
            par, par_off = _flat(part.column("parent"))
            plen = np.diff(par_off)
            tree = plen > 0
            pos_len = np.diff(_flat(part.column("position_ids"))[1])
            bad = np.flatnonzero(tree & ((plen != ln) | (pos_len != ln)))
            if bad.size:
                raise ConfigError(
                    f"row {int(bad[0]) + start}: a tree row needs parent and position_ids of the length of input_ids "
                    f"({int(ln[bad[0]])}), got {int(plen[bad[0]])} and {int(pos_len[bad[0]])}"
                )
            tr -= trained_roots(mask, off, par, par_off)
            is_tree[sl] = tree
            if "linear_length" in table.column_names:
                ll = np.asarray(part.column("linear_length").to_numpy(zero_copy_only=False), dtype=np.int64)
                linear_kept[sl] = np.where(tree, ll, ln)
            else:
                from ..tree import linear_length

                linear_kept[sl] = [linear_length(par[par_off[i] : par_off[i + 1]], int(ln[i])) for i in range(ln.size)]
        else:
            tree = np.zeros(ln.size, dtype=bool)
        lengths[sl], trained[sl] = ln, tr
        k = ln.copy()
        tk = tr.copy()
        rs = np.full(ln.size, "", dtype=object)
        rs[ln == 0] = "empty"
        long_rows = np.flatnonzero(ln > L)
        if long_rows.size:
            if truncation == "drop":
                rs[long_rows] = Reason.TOO_LONG.value
            else:
                for i in long_rows.tolist():
                    o = int(off[i])
                    if trees and tree[i]:  # a DFS prefix: whole branches, or after a trained span
                        p = par[par_off[i] : par_off[i + 1]].astype(np.int64)
                        k[i], tk[i], linear_kept[start + i], paths_dropped[start + i] = cut_tree(
                            p, mask[o : o + int(ln[i])], L, truncation
                        )
                        continue
                    m = mask[o : o + L + 1].copy()  # one past L: does a trained span go on?
                    m[0] = False
                    if truncation == "truncate":
                        k[i] = L
                    else:  # turns: cut after the last trained span that ends within L
                        ends = np.flatnonzero(m[:L] & ~m[1 : L + 1])
                        k[i] = int(ends[-1]) + 1 if ends.size else 0
                    tk[i] = int(np.count_nonzero(m[: k[i]]))
            cut = long_rows[(rs[long_rows] == "") & (tk[long_rows] == 0)]
            rs[cut] = Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value
        dropped = rs != ""
        k[dropped] = 0
        tk[dropped] = 0
        linear_kept[sl] = np.where(dropped, 0, np.where(tree, linear_kept[sl], k))
        keep[sl], trained_kept[sl], reason[sl] = k, tk, rs
    if not trees:
        return RowScan(lengths, trained, keep, trained_kept, reason, linear_kept=linear_kept)
    return RowScan(lengths, trained, keep, trained_kept, reason, is_tree, linear_kept, paths_dropped)
