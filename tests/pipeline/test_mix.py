"""Mixing prepared datasets by weight / num_rows, whole conversations at a time."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.errors import ConfigError
from sftdata.pipeline.mix import MixPart, conversations_to_take, mix_datasets


def _prepared(label: str, examples_per_row: list[int]) -> datasets.Dataset:
    """A fake `sftdata prepare` output: input row r (rejected when 0) gave examples_per_row[r] rows."""
    rows = [(r, k) for r, n in enumerate(examples_per_row) for k in range(n)]
    rows = rows[1::2] + rows[::2]  # rows of one conversation need not be adjacent
    ids = [[len(label), r, k] for r, k in rows]
    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")), "labels": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"), "source_index": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict({
        "input_ids": ids, "labels": ids, "length": [3] * len(ids), "source_index": [r for r, _ in rows],
    }, features=features)


_PART = st.tuples(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.sampled_from([None, 0.5, 1.0, 2.0, 2.5]),
    st.none() | st.integers(1, 30),
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(_PART, min_size=1, max_size=3), seed=st.integers(0, 3))
def test_mix_takes_whole_conversations_evenly(parts, seed):
    mix_parts = []
    for i, (per_row, weight, num_rows) in enumerate(parts):
        if weight is not None and num_rows is not None:
            num_rows = None
        mix_parts.append(MixPart(f"d{i}", _prepared(f"d{i}", per_row), len(per_row), weight, num_rows))
    takes = [conversations_to_take(sum(1 for n in p[0] if n), m.weight, m.num_rows) * any(p[0])
             for p, m in zip(parts, mix_parts)]
    if 0 in takes:  # all rows of a dataset rejected, or a weight too small: an error, never a silent gap
        with pytest.raises(ConfigError, match=f"dataset 'd{takes.index(0)}' would contribute no conversation"):
            mix_datasets(mix_parts, seed)
        return
    mixed, report = mix_datasets(mix_parts, seed)
    src = mixed["source_index"]
    offset = 0
    for part, rep in zip(mix_parts, report["datasets"]):
        per_row = [sum(1 for s in part.dataset["source_index"] if s == r) for r in range(part.rows_in)]
        convs = [r for r, n in enumerate(per_row) if n]
        k = conversations_to_take(len(convs), part.weight, part.num_rows)
        assert rep["source_index_offset"] == offset and rep["conversations_taken"] == k
        rows_of = Counter(s - offset for s in src if offset <= s < offset + part.rows_in)
        copies = {r: rows_of[r] // per_row[r] for r in convs}
        assert all(rows_of[r] == copies[r] * per_row[r] for r in convs)  # a conversation comes whole
        assert sum(copies.values()) == k
        assert max(copies.values()) - min(copies.values()) <= 1  # evenly repeated
        assert set(rows_of) <= set(convs)
        offset += part.rows_in
    assert len(src) == report["rows"] == sum(r["rows_taken"] for r in report["datasets"])
    again, _ = mix_datasets(mix_parts, seed)
    assert again["input_ids"] == mixed["input_ids"]  # deterministic for a seed


def test_examples_of_a_conversation_stay_identical():
    ds = _prepared("a", [2, 1, 3])
    mixed, _ = mix_datasets([MixPart("a", ds, 3, num_rows=3)], 0)
    assert sorted(map(tuple, mixed["input_ids"])) == sorted(map(tuple, ds["input_ids"]))
    assert np.all(np.asarray(mixed["length"]) == 3)
