"""Tests of reading input files (sftdata.formats): malformed JSON lines, JSON arrays and objects,
gzip, Parquet, saved datasets, lists, chained inputs."""

from __future__ import annotations

import gzip
import json

import pytest

from sftdata.errors import ConfigError, Reason, RowError
from sftdata.formats import iter_examples, iter_inputs, iter_rows
from sftdata.schema import TextExample


# ---------------------------------------------------------------------------- reading


def test_malformed_json_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n\n[1, 2]\n{"text": "c"}\n', encoding="utf-8")
    items = list(iter_rows(path))
    assert [i for i, _ in items] == [0, 1, 2, 3]  # blank line is not a row; indices contiguous
    assert items[0][1] == {"text": "a"} and items[3][1] == {"text": "c"}
    bad = items[1][1]
    assert isinstance(bad, RowError)
    assert (bad.reason, bad.stage, bad.row) == (Reason.MALFORMED_JSON, "read", 1)
    assert f"{path}:2" in bad.message
    assert isinstance(items[2][1], RowError) and items[2][1].reason is Reason.BAD_TYPE and ":4:" in items[2][1].message
    out = list(iter_examples([path], start_index=10))
    assert [i for i, _ in out] == [10, 11, 12, 13]
    assert out[1][1].row == 11 and out[0][1] == TextExample((("a", True),))


def test_json_array_object_and_jsonl_named_json(tmp_path):
    rows = [{"text": "a"}, {"text": "b"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"version": 1, "data": rows}))
    (tmp_path / "c.json").write_text("\n".join(map(json.dumps, rows)))
    (tmp_path / "d.json").write_text('[{"text": "a"}, {"text": ')
    (tmp_path / "e.json").write_text(json.dumps({"messages": [], "tools": []}))
    with gzip.open(tmp_path / "f.jsonl.gz", "wt") as fh:
        fh.write("\n".join(map(json.dumps, rows)))
    for name in ("a.json", "b.json", "c.json", "f.jsonl.gz"):
        assert list(iter_rows(tmp_path / name)) == [(0, rows[0]), (1, rows[1])], name
    # the array is streamed: the items before a syntax error are rows, the error is the next one
    [(i0, first), (index, bad)] = list(iter_rows(tmp_path / "d.json"))
    assert (i0, first) == (0, rows[0]) and index == 1
    assert bad.reason is Reason.MALFORMED_JSON and "d.json:1" in bad.message and "could not be read" in bad.message
    # an object that is a row (it has row keys) is a one-conversation file: one row
    assert list(iter_rows(tmp_path / "e.json")) == [(0, {"messages": [], "tools": []})]
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "x.csv"))


def test_heterogeneous_arguments_survive_json_reading(tmp_path):
    """Arguments that differ between rows must not gain null-filled keys (the Arrow bug)."""
    path = tmp_path / "calls.jsonl"
    rows = [
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "sh", "arguments": {"cmd": "ls"}}}]}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "rd", "arguments": {"path": "/x"}}}]}]},
    ]
    path.write_text("\n".join(map(json.dumps, rows)))
    got = [ex.messages[0].tool_calls[0].arguments for _, ex in iter_examples(path)]
    assert got == [{"cmd": "ls"}, {"path": "/x"}]


def test_parquet_dataset_and_lists(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved_dict"))
    expected = list(enumerate(rows))
    assert list(iter_rows(tmp_path / "t.parquet")) == expected
    assert list(iter_rows(str(tmp_path / "saved"))) == expected
    assert list(iter_rows(tmp_path / "saved_dict")) == expected
    assert list(iter_rows(ds)) == expected
    assert list(iter_rows(rows)) == expected
    chained = list(iter_inputs([tmp_path / "t.parquet", ds, rows], start_index=5))
    assert [i for i, _ in chained] == list(range(5, 14))
    assert list(iter_inputs(rows)) == expected and list(iter_inputs(ds)) == expected
    assert [i for i, _ in iter_examples(str(tmp_path / "t.parquet"))] == [0, 1, 2]
    [(index, bad)] = list(iter_rows(["nope"]))
    assert index == 0
    assert bad.reason is Reason.BAD_TYPE and bad.stage == "read"
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "empty_dir"))
    with pytest.raises(ConfigError):
        list(iter_rows(datasets.DatasetDict({"train": ds, "test": ds})))
