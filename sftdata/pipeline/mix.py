"""Mixing prepared datasets by ``weight`` or ``num_rows``, whole conversations at a time.

The unit is the **input row** (one conversation; under turn policy ``exact`` it may have become
several training rows, which stay together). For dataset *d* with *n* prepared conversations:

* ``num_rows: k`` takes *k* conversations;
* ``weight: w`` takes ``round(w × n)`` conversations (``0.5``: half, ``2``: every one twice);
* neither: all *n* once.

*k* ≤ *n* draws *k* distinct conversations; *k* > *n* takes every conversation ``k // n`` times and
draws ``k % n`` more, so upsampling repeats evenly. Draws are seeded by ``(seed, dataset index)``.
``source_index`` of the mix is the dataset's own plus the number of input rows of the datasets
before it (as ``sftdata prepare a b`` numbers rows across inputs), so every training row still
names its input row; ``mix_stats.json`` gives each dataset's range. The mixed rows are shuffled
(seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError


@dataclass
class MixPart:
    """One prepared dataset: ``dataset`` (``sftdata prepare`` output) and its ``rows_in`` input rows."""

    label: str
    dataset: Any  # datasets.Dataset
    rows_in: int
    weight: float | None = None
    num_rows: int | None = None


def conversations_to_take(n: int, weight: float | None, num_rows: int | None) -> int:
    """How many conversations a dataset of ``n`` contributes (see module doc)."""
    if num_rows is not None:
        return int(num_rows)
    if weight is not None:
        return int(round(weight * n))
    return n


def choose(conversations: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` conversation ids from ``conversations`` (distinct while ``k <= n``, evenly repeated beyond), sorted."""
    n = len(conversations)
    if k == 0 or n == 0:
        return conversations[:0]
    whole, rest = divmod(k, n)
    picked = [np.repeat(conversations, whole)] if whole else []
    picked.append(rng.choice(conversations, size=rest, replace=False))
    return np.sort(np.concatenate(picked))


def mix_datasets(parts: list[MixPart], seed: int = 0):
    """Mix prepared datasets into one.

    Returns:
        ``(dataset, report)``: a ``datasets.Dataset`` with the columns of the inputs
        (``input_ids``, ``labels``, ``length``, ``source_index``), and a dict for
        ``mix_stats.json`` (per dataset: label, ``source_index_offset``, ``rows_in``, conversations
        and rows available and taken, weight/num_rows; totals).

    Raises:
        ConfigError: a dataset would contribute no conversation (all its rows rejected, or a
            weight too small to take one): nothing is left out silently.
    """
    import datasets

    tables, report_parts = [], []
    offset = 0
    for i, part in enumerate(parts):
        ds = part.dataset
        if getattr(ds, "_indices", None) is not None:
            ds = ds.flatten_indices()
        table = ds.data.table
        src = np.asarray(table.column("source_index").to_numpy(), dtype=np.int64)
        conversations, first, counts = np.unique(src, return_index=True, return_counts=True)
        k = conversations_to_take(len(conversations), part.weight, part.num_rows)
        if k == 0 or len(conversations) == 0:
            how = f"weight {part.weight}" if part.weight is not None else f"num_rows {part.num_rows}"
            raise ConfigError(
                f"dataset {part.label!r} would contribute no conversation ({len(conversations)} prepared of "
                f"{part.rows_in} input rows, {how if part.weight or part.num_rows else 'all'}): "
                "check its rejects.jsonl or raise its weight"
            )
        chosen = choose(conversations, k, np.random.default_rng([seed, i]))
        order = np.argsort(src, kind="stable")  # rows grouped by conversation, in row order
        starts = np.searchsorted(src[order], chosen)
        pos = np.searchsorted(conversations, chosen)
        rows = (
            np.concatenate([order[s : s + counts[p]] for s, p in zip(starts, pos)])
            if len(chosen) else np.zeros(0, dtype=np.int64)
        )
        taken = table.take(pa.array(rows, type=pa.int64()))
        col = taken.schema.get_field_index("source_index")
        shifted = pa.array(np.asarray(taken.column(col).to_numpy(), dtype=np.int64) + offset, type=pa.int64())
        tables.append(taken.set_column(col, "source_index", shifted))
        report_parts.append({
            "label": part.label, "source_index_offset": offset, "rows_in": part.rows_in,
            "weight": part.weight, "num_rows": part.num_rows,
            "conversations_available": int(len(conversations)), "conversations_taken": int(len(chosen)),
            "conversations_repeated": int(len(chosen) - len(np.unique(chosen))),
            "rows_available": int(table.num_rows), "rows_taken": int(len(rows)),
        })
        offset += part.rows_in
    if not tables:
        raise ConfigError("nothing to mix: no dataset given")
    mixed = pa.concat_tables(tables)
    mixed = mixed.take(pa.array(np.random.default_rng(seed).permutation(mixed.num_rows)))
    report = {
        "seed": seed, "datasets": report_parts, "rows": int(mixed.num_rows),
        "conversations": int(sum(p["conversations_taken"] for p in report_parts)),
    }
    return datasets.Dataset(mixed.combine_chunks()), report
