"""Per-row lengths, trained-token counts and the over-length policy, read from Arrow.

Everything is vectorised over Arrow record batches (flat numpy views of the list columns),
so scanning a memory-mapped dataset costs one pass over its ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, Reason
from ..masking.tree_arrays import count_trained, trained_mask
from ..masking.tree_fit import fit_tree

#: over-length policies: ``drop`` the row; ``truncate`` to the first ``L`` tokens; ``turns``:
#: cut at the end of the last trained span that fits (never inside an assistant turn)
TRUNCATION = ("drop", "truncate", "turns")


def check_truncation(truncation: str) -> None:
    """The one check of a packing ``truncation`` value.

    Raises:
        ConfigError: it is not one of :data:`TRUNCATION`.
    """
    if truncation not in TRUNCATION:
        raise ConfigError(f"truncation must be one of {TRUNCATION}, got {truncation!r}")


@dataclass
class RowScan:
    """Per-row facts (``int64`` arrays indexed by input row).

    Attributes:
        lengths: tokens per row.
        trained: trained tokens per row (:func:`sftdata.masking.tree_arrays.count_trained`: labels
            ``!= IGNORE_INDEX`` at positions ``>= 1``; in a tree row, at tokens with a parent).
        keep: tokens kept per row (``0``: dropped).
        trained_kept: trained tokens among the kept ones.
        reason: per-row drop reason (``""`` if kept), an object array.
        is_tree: rows holding a prefix tree (``parent`` non-empty); all False without ``parent``.
        linear_kept: tokens the kept part takes in the linear layout (``keep`` for linear rows).
        keepable: trained tokens at a position ``< L`` of their own sequence (what any rule
            could keep).

    Tree rows longer than ``L`` must have gone through :func:`fit_long_trees` first.
    """

    lengths: np.ndarray
    trained: np.ndarray
    keep: np.ndarray
    trained_kept: np.ndarray
    reason: np.ndarray
    is_tree: np.ndarray | None = None
    linear_kept: np.ndarray | None = None
    keepable: np.ndarray | None = None


@dataclass
class TreeFit:
    """What :func:`fit_long_trees` did to the tree rows longer than ``L`` (plain ints).

    Attributes:
        rows: tree rows longer than ``L`` (each fitted by :func:`sftdata.masking.tree_fit.fit_tree`).
        split: rows cut into several sub-trees; truncated: rows that lost some trained
            tokens; dropped: rows with nothing left (``dropped_reason``).
        sequences_out: sub-trees written for them.
        tokens_in, trained_in, keepable: their tokens, trained tokens, and trained tokens at
            depth ``< L``.
        tokens_out: tokens of the sub-trees; tokens_unique: distinct input tokens among them
            (``tokens_out - tokens_unique`` is context repeated by splits).
        trained_kept: trained tokens kept; trained_dropped: trained tokens of dropped rows.
        tokens_dropped: tokens of dropped rows.
        paths_cut: root-to-leaf paths whose leaf is not kept.
    """

    rows: int = 0
    split: int = 0
    truncated: int = 0
    dropped: int = 0
    dropped_reason: str = ""
    sequences_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_unique: int = 0
    tokens_dropped: int = 0
    trained_in: int = 0
    trained_kept: int = 0
    trained_dropped: int = 0
    keepable: int = 0
    paths_cut: int = 0


def fit_long_trees(table: pa.Table, max_length: int, truncation: str) -> tuple[pa.Table, TreeFit]:
    """Replace every tree row longer than ``max_length`` by the sub-trees that fit.

    Each such row goes through :func:`sftdata.masking.tree_fit.fit_tree` (``truncation`` is its rule):
    it is split into sub-trees of at most ``max_length`` tokens that repeat the context their
    branches need, sequences that do not fit are cut turn-wise (``turns``), at ``L``
    (``truncate``) or dropped (``drop``), and it is dropped only when no trained token is left.
    The sub-trees keep the row's ``source_index`` and are appended after the untouched rows.

    Returns:
        ``(table, fit)``: a table of the same columns where every tree row fits, and the counts.
    """
    fit = TreeFit(dropped_reason=Reason.TOO_LONG.value if truncation == "drop"
                  else Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value)
    if "parent" not in table.column_names or table.num_rows == 0:
        return table, fit
    import pyarrow.compute as pc

    L = int(max_length)
    ln = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    pl = pc.list_value_length(table.column("parent")).to_numpy(zero_copy_only=False)
    long_rows = np.flatnonzero((ln > L) & (pl > 0))
    if long_rows.size == 0:
        return table, fit
    part = table.take(pa.array(long_rows)).to_pydict()
    new: dict[str, list] = {c: [] for c in table.column_names}
    for k in range(long_rows.size):
        res = fit_tree(part["input_ids"][k], part["labels"][k], part["parent"][k], L, truncation)
        fit.rows += 1
        fit.tokens_in += len(part["input_ids"][k])
        fit.trained_in += res.trained_in
        fit.keepable += res.keepable
        fit.trained_kept += res.trained_kept
        fit.paths_cut += res.leaves_cut
        if res.dropped:
            fit.dropped += 1
            fit.tokens_dropped += len(part["input_ids"][k])
            fit.trained_dropped += res.trained_in
            continue
        fit.split += res.split
        fit.truncated += res.trained_kept < res.trained_in
        fit.sequences_out += len(res.rows)
        fit.tokens_out += res.tokens_out
        fit.tokens_unique += res.tokens_unique
        for r in res.rows:
            cols = {"input_ids": r.input_ids, "labels": r.labels, "parent": r.parent, "position_ids": r.position_ids,
                    "length": len(r.input_ids), "linear_length": r.linear_length}
            for c in table.column_names:
                new[c].append(cols[c] if c in cols else part[c][k])
    rest = np.setdiff1d(np.arange(table.num_rows), long_rows)
    kept = table.take(pa.array(rest))
    if not fit.sequences_out:
        return kept, fit
    added = pa.table(new, schema=table.schema)
    return pa.concat_tables([kept, added]), fit


def _flat(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)`` of a list column, offsets relative to ``values``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    offsets = np.asarray(col.offsets, dtype=np.int64)
    values = np.asarray(col.values)
    return values[offsets[0] : offsets[-1]], offsets - offsets[0]


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


def _tree_chunk(part: pa.Table, lab: np.ndarray, off: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the tree columns of a chunk of rows (first row ``start``) and read them.

    Returns:
        ``(is_tree, trained, linear_length)``, ``(rows,)`` each: rows holding a tree, trained
        tokens per row (:func:`sftdata.masking.tree_arrays.count_trained`), tokens of the row in the
        linear layout (the row's length for a linear row).

    Raises:
        ConfigError: naming the row: ``parent``/``position_ids`` of another length than
            ``input_ids``, or a ``parent`` entry that is not a tree row's.
    """
    ln = np.diff(off)
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
    rows_of = np.repeat(np.arange(ln.size), plen)
    at = np.arange(par.size) - np.repeat(par_off[:-1], plen)  # index in its row
    bad_par = (par >= at) | (par < -1) | ((at == 0) & (par != -1))
    if bad_par.any():
        j = int(np.argmax(bad_par))
        raise ConfigError(
            f"row {int(rows_of[j]) + start}: parent[{int(at[j])}] = {int(par[j])} is not a tree row's parent "
            "(-1 at the first token, an earlier index elsewhere; docs/trees.md): re-run `sftdata prepare`"
        )
    trained = count_trained(lab, off, par, par_off)
    if "linear_length" in part.column_names:
        ll = np.asarray(part.column("linear_length").to_numpy(zero_copy_only=False), dtype=np.int64)
        return tree, trained, np.where(tree, ll, ln)
    from ..masking.tree import linear_length

    return tree, trained, np.asarray([linear_length(par[par_off[i] : par_off[i + 1]], int(ln[i])) for i in range(ln.size)],
                                     dtype=np.int64)


def _over_length(lab: np.ndarray, off: np.ndarray, trained: np.ndarray, L: int,
                 truncation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The over-length policy on a chunk of linear rows (see :func:`scan_rows`).

    Returns:
        ``(keep, trained_kept, reason, keepable)``, ``(rows,)`` each, before dropped rows are
        zeroed: tokens kept, trained tokens among them, drop reason (``""`` kept), trained
        tokens at a position ``< L``.
    """
    ln = np.diff(off)
    k = ln.copy()
    tk = trained.copy()
    keepable = trained.copy()
    rs = np.full(ln.size, "", dtype=object)
    rs[ln == 0] = "empty"
    long_rows = np.flatnonzero(ln > L)
    for i in long_rows.tolist():
        o = int(off[i])
        m = trained_mask(lab[o : o + L + 1])  # one past L: does a trained span go on?
        keepable[i] = int(np.count_nonzero(m[:L]))
        if truncation == "drop":
            rs[i] = Reason.TOO_LONG.value
            continue
        if truncation == "truncate":
            k[i] = L
        else:  # turns: cut after the last trained span that ends within L
            ends = np.flatnonzero(m[:L] & ~m[1 : L + 1])
            k[i] = int(ends[-1]) + 1 if ends.size else 0
        tk[i] = int(np.count_nonzero(m[: k[i]]))
        if tk[i] == 0:
            rs[i] = Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value
    return k, tk, rs, keepable


def scan_rows(table: pa.Table, max_length: int, truncation: str, *, chunk_tokens: int = 1 << 22) -> RowScan:
    """Scan ``table`` (columns ``input_ids``, ``labels``) and apply the over-length policy.

    Rows longer than ``max_length`` are dropped (``too_long``) under ``drop``; cut to their
    first ``max_length`` tokens under ``truncate``; cut after the last trained span that ends
    within ``max_length`` under ``turns``. A cut row left without trained tokens is dropped
    (``no_trained_token_after_truncation``); an empty row is dropped (``empty``).

    Tree rows (a ``parent`` column with a non-empty entry) are one unit each and must fit
    (:func:`fit_long_trees` splits the others); ``position_ids`` (their depths) and, if
    present, ``linear_length`` are read too.

    Raises:
        ValueError: a tree row longer than ``max_length``.
    """
    check_truncation(truncation)
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
    keepable = np.zeros(n, dtype=np.int64)
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
        sl = slice(start, start + ln.size)
        if trees:
            tree, tr, linear_kept[sl] = _tree_chunk(part, lab, off, start)
            is_tree[sl] = tree
        else:
            tree = np.zeros(ln.size, dtype=bool)
            tr = count_trained(lab, off)
        lengths[sl], trained[sl] = ln, tr
        if trees and (ln[tree] > L).any():
            bad = int(np.flatnonzero(tree & (ln > L))[0]) + start
            raise ValueError(f"row {bad}: a tree row longer than {L} tokens: call fit_long_trees first")
        k, tk, rs, keepable[sl] = _over_length(lab, off, tr, L, truncation)
        dropped = rs != ""
        k[dropped] = 0
        tk[dropped] = 0
        linear_kept[sl] = np.where(dropped, 0, np.where(tree, linear_kept[sl], k))
        keep[sl], trained_kept[sl], reason[sl] = k, tk, rs
    if not trees:
        return RowScan(lengths, trained, keep, trained_kept, reason, linear_kept=linear_kept, keepable=keepable)
    return RowScan(lengths, trained, keep, trained_kept, reason, is_tree, linear_kept, keepable)
