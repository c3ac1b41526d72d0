"""One collator input row -> flat ``int64`` numpy arrays (used by :mod:`sftdata.collate.collators`).

A row is a mapping with ``input_ids`` and optionally ``labels``, ``seq_lengths``,
``position_ids`` and ``parent`` (python lists, numpy arrays or torch tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .tree_collate import row_parent

__all__ = ["as_int64", "ids_and_labels", "round_up", "row_seq_lengths", "row_tree", "seq_lengths_from_position_ids"]


def as_int64(x: Any) -> np.ndarray:
    """A 1-D int64 numpy view/copy of a list, numpy array or tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)
    return np.asarray(x, dtype=np.int64).reshape(-1)


def round_up(n: int, multiple: int | None) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (``n`` itself when ``multiple`` is 0/None)."""
    if not multiple:
        return n
    return -(-n // multiple) * multiple


def seq_lengths_from_position_ids(position_ids) -> np.ndarray:
    """Sequence lengths of one packed row from its ``position_ids`` (a new sequence starts at each 0).

    Args:
        position_ids: ``(T,)`` ints, ``0, 1, ...`` restarting at 0 for each sequence.

    Returns:
        ``int64 (n_seqs,)``.
    """
    pos = as_int64(position_ids)
    if pos.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(pos == 0)
    if starts.size == 0 or starts[0] != 0:
        raise ValueError("position_ids of a packed row must start at 0")
    return np.diff(np.append(starts, pos.size))


def row_seq_lengths(row: Mapping, n_tokens: int, *, use_position_ids: bool = True) -> np.ndarray:
    """``int64 (n_seqs,)`` sequence lengths of a row: ``seq_lengths``, else ``position_ids``
    restarts, else one sequence.

    Raises:
        ValueError: the lengths do not add up to ``n_tokens`` or one is below 1.

    Empty ``position_ids`` (a prepared single-path row) mean one sequence. Tree rows get their
    units from :func:`sftdata.collate.tree_collate.unit_lengths` instead."""
    if row.get("seq_lengths") is not None:
        lens = as_int64(row["seq_lengths"])
    elif use_position_ids and row.get("position_ids") is not None and len(row["position_ids"]):
        lens = seq_lengths_from_position_ids(row["position_ids"])  # (empty: a tree row's single path)
    else:
        return np.array([n_tokens], dtype=np.int64) if n_tokens else np.zeros(0, dtype=np.int64)
    if int(lens.sum()) != n_tokens or (lens.size and lens.min() < 1):
        raise ValueError(f"seq_lengths {lens.tolist()} do not add up to the row's {n_tokens} tokens")
    return lens


def ids_and_labels(row: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, labels)`` of a row as ``int64 (n,)`` arrays (``labels`` missing: a copy of
    ``input_ids``, every token trained).

    Raises:
        ValueError: ``labels`` and ``input_ids`` differ in length.
    """
    ids = as_int64(row["input_ids"])
    labels = as_int64(row["labels"]) if row.get("labels") is not None else ids.copy()
    if labels.size != ids.size:
        raise ValueError(f"labels has {labels.size} entries but input_ids has {ids.size}")
    return ids, labels


def row_tree(row: Mapping, n: int, index: int) -> np.ndarray | None:
    """``int64 (n,)`` row-local ``parent`` of row ``index`` when it holds a tree, else None
    (:func:`sftdata.collate.tree_collate.row_parent`, which raises ``ValueError`` naming the row)."""
    par = row.get("parent")
    pos = row.get("position_ids")
    return row_parent(None if par is None else as_int64(par), None if pos is None else as_int64(pos), n, index)
