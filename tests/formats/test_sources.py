"""Inputs given as ``datasets.load_dataset`` specs (local only: no network here) and ``tools_file``."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftdata.cli import main as sftdata_main
from sftdata.errors import ConfigError, RowError
from sftdata.formats import iter_inputs
from sftdata.formats.hub import LoadDatasetSource, resolve_source
from sftdata.pipeline.runner import WithTools
from sftdata.prepare import prepare


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(start, start + n)]


@pytest.fixture
def parquet_dir(tmp_path):
    """A Hub-style dataset dir: data/train-*.parquet and data/test-*.parquet (not a save_to_disk dir)."""
    d = tmp_path / "hub_like"
    (d / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(_rows(3)), d / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(_rows(2, 3)), d / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(_rows(2, 100)), d / "data" / "test-00000-of-00001.parquet")
    return d


def _contents(source) -> list[str]:
    return [row["messages"][0]["content"] for _, row in _items(source)]


def _items(source):
    return list(iter_inputs(source if isinstance(source, list) else [source]))


def test_local_dir_of_data_files_is_streamed_by_split(parquet_dir):
    with pytest.raises(ConfigError, match=r"has splits \['test', 'train'\]: choose one with split"):
        list(resolve_source(parquet_dir))
    source = resolve_source(parquet_dir, split="train")
    assert isinstance(source, LoadDatasetSource)
    assert isinstance(source.load(), datasets.IterableDataset)  # streamed: the dataset streams
    assert _contents(source) == [f"q{i}" for i in range(5)]
    assert _contents(resolve_source(parquet_dir, split="test")) == ["q100", "q101"]
    # row slicing needs a downloaded dataset: no streaming then
    sliced = resolve_source(parquet_dir, split="train[:2]")
    assert isinstance(sliced.load(), datasets.Dataset) and _contents(sliced) == ["q0", "q1"]


def test_builder_with_a_parquet_glob(parquet_dir):
    source = resolve_source("parquet", data_files=str(parquet_dir / "data" / "train-*.parquet"), split="train")
    assert _contents(source) == [f"q{i}" for i in range(5)]
    with pytest.raises(ConfigError, match="name the builder and pass the glob as data_files"):
        resolve_source(str(parquet_dir / "data" / "*.parquet"), split="train")


def test_globs_of_files_sftdata_reads_itself(tmp_path):
    for k in range(3):
        (tmp_path / f"part{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(2, 10 * k)))
    source = resolve_source(str(tmp_path / "part*.jsonl"))
    assert source == [str(tmp_path / f"part{k}.jsonl") for k in range(3)]  # sorted paths, read by our reader
    assert _contents(source) == ["q0", "q1", "q10", "q11", "q20", "q21"]
    with pytest.raises(ConfigError, match="matches no file"):
        resolve_source(str(tmp_path / "nothing*.jsonl"))


def test_csv_and_save_to_disk_splits(tmp_path):
    (tmp_path / "a.csv").write_text("prompt,completion\nHi,Hello\nBye,Later\n")
    source = resolve_source(tmp_path / "a.csv")
    assert isinstance(source, LoadDatasetSource) and source.path == "csv"
    assert [r for _, r in _items(source)] == [{"prompt": "Hi", "completion": "Hello"},
                                                   {"prompt": "Bye", "completion": "Later"}]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows(2)),
                               "test": datasets.Dataset.from_list(_rows(1, 7))})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert resolve_source(tmp_path / "dd", split="test") == str(tmp_path / "dd" / "test")
    assert _contents(resolve_source(tmp_path / "dd", split="test")) == ["q7"]


def test_bad_specs_are_config_errors(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps(_rows(1)[0]) + "\n")
    with pytest.raises(ConfigError, match="split applies to datasets.load_dataset inputs"):
        resolve_source(tmp_path / "x.jsonl", split="train")
    with pytest.raises(ConfigError, match="input not found"):
        resolve_source(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="input not found"):
        resolve_source("./missing_dir")
    script = tmp_path / "my_dataset.py"
    script.write_text("import datasets\n")
    source = resolve_source(script)
    assert isinstance(source, LoadDatasetSource)
    if int(datasets.__version__.split(".")[0]) >= 4:  # datasets 4 dropped loading scripts
        with pytest.raises(ConfigError, match=r"cannot read load_dataset\(.*my_dataset.py"):
            list(source)


def test_hub_ids_go_to_load_dataset_with_their_arguments(monkeypatch):
    """No network here: the call is captured. A Hub id streams; a builder that cannot stream falls back."""
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        if kwargs["streaming"] and path == "org/no-stream":
            raise NotImplementedError("this builder does not stream")
        return datasets.Dataset.from_list(_rows(2))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = resolve_source("org/name", name="cfg", split="train", revision="abc123", load_kwargs={"token": False})
    assert isinstance(source, LoadDatasetSource) and _contents(source) == ["q0", "q1"]
    assert calls[-1] == ("org/name", {"name": "cfg", "split": "train", "revision": "abc123", "token": False,
                                      "streaming": True})
    assert _contents(resolve_source("org/no-stream", split="train")) == ["q0", "q1"]
    assert [c[1]["streaming"] for c in calls[-2:]] == [True, False]
    with pytest.raises(ConfigError, match="does not stream"):  # an explicit streaming=True is not overridden
        list(resolve_source("org/no-stream", split="train", streaming=True))


def test_prepare_cli_reads_a_load_dataset_dir(parquet_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert sftdata_main(["prepare", str(parquet_dir), "--split", "train", "--output", str(out), "--no-progress"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows_in"] == stats["rows_out"] == 5
    assert sftdata_main(["prepare", str(parquet_dir), "--output", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "choose one with split" in capsys.readouterr().err


def test_tools_file_rows(tmp_path):
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {}}}]
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps(_rows(1)[0]) + "\n" + "{not json\n"
        + json.dumps({**_rows(1, 5)[0], "tools": [{"name": "own", "parameters": {}}]}) + "\n"
        + json.dumps({**_rows(1, 6)[0], "functions": [{"name": "legacy", "parameters": {}}]}) + "\n"
    )
    items = _items(WithTools(str(path), tools, None))
    assert [i for i, _ in items] == [0, 1, 2, 3]
    assert items[0][1]["tools"] == tools
    assert isinstance(items[1][1], RowError) and items[1][1].row == 1 and items[1][1].reason == "malformed_json"
    assert items[2][1]["tools"][0]["name"] == "own"  # a row's own tools win
    assert "tools" not in items[3][1]  # legacy `functions` counts as the row's tools
    assert _items(WithTools(str(path), tools, "schemas"))[2][1]["schemas"] == tools
    ds = prepare(WithTools(str(path), tools, None))
    assert ds.sftdata_stats["rows_in"] == 4 and ds.sftdata_stats["rejected_by_reason"] == {"malformed_json": 1}
