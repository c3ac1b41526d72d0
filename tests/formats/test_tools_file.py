"""One tools-file reader (issue 19): ``sftdata prepare --tools-file``, ``prepare(tools_file=...)`` and a
pipeline config's ``tools_file:`` accept the same forms (a list, ``{"tools": [...]}``, a keyed mapping
with a key field) and refuse the same ones."""

from __future__ import annotations

import gzip
import json

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata import prepare
from sftdata.cli import main as cli_main
from sftdata.errors import ConfigError
from sftdata.pipeline import load_config
from sftdata.tools_file import load_tools_file, read_tools_file

TOOLS = [{"name": "get_weather", "description": "weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
ROW = {"messages": [{"role": "user", "content": "rain in Oslo?"}, {"role": "assistant", "content": "yes"}]}


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    return path


def _write(tmp_path, name, value):
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return path


def test_cli_accepts_wrapped_tools_object(tmp_path, rows):
    """Example (the bug): the command line refused ``{"tools": [...]}``, which the pipeline accepted."""
    wrapped = _write(tmp_path, "wrapped.json", {"tools": TOOLS})
    plain = _write(tmp_path, "plain.json", TOOLS)
    for name, tools in (("a", wrapped), ("b", plain)):
        assert cli_main(["prepare", str(rows), "-o", str(tmp_path / name), "--tools-file", str(tools), "--no-progress"]) == 0
    a = datasets.load_from_disk(str(tmp_path / "a"))
    b = datasets.load_from_disk(str(tmp_path / "b"))
    assert a["input_ids"] == b["input_ids"]
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["content_fingerprint"] == \
        json.loads((tmp_path / "b" / "stats.json").read_text())["content_fingerprint"]
    assert a["input_ids"] != prepare(rows)["input_ids"]  # the tools reached the rendering


def test_pipeline_and_prepare_read_the_same_forms(tmp_path, rows):
    wrapped = _write(tmp_path, "wrapped.json", {"tools": TOOLS, "version": 2})  # metadata beside the list
    assert read_tools_file(wrapped) == TOOLS
    cfg = load_config({"output_dir": str(tmp_path / "out"), "datasets": [{"path": str(rows), "tools_file": str(wrapped)}]})
    assert cfg.datasets[0].tools_file == str(wrapped)
    assert prepare(rows, tools_file=wrapped).sftdata_stats["rows_out"] == 1
    gz = tmp_path / "tools.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(TOOLS).encode()))
    assert read_tools_file(gz) == TOOLS  # gzipped, in both
    load_config({"output_dir": str(tmp_path / "out"), "datasets": [{"path": str(rows), "tools_file": str(gz)}]})


@pytest.mark.parametrize("value, message", [
    ({"shop": TOOLS, "bank": TOOLS}, "--tools-key"),  # a mapping needs a key field
    ({"tools": TOOLS, "other": TOOLS}, "--tools-key"),  # two lists: not a wrapped list
    ("tools", "expected a JSON list"),
    ([{"description": "no name"}], "bad.json"),
])
def test_refused_the_same_everywhere(tmp_path, rows, value, message):
    bad = _write(tmp_path, "bad.json", value)
    with pytest.raises(ConfigError, match=message):
        prepare(rows, tools_file=bad)
    with pytest.raises(ConfigError, match=message):
        load_config({"output_dir": str(tmp_path / "out"), "datasets": [{"path": str(rows), "tools_file": str(bad)}]})
    assert cli_main(["prepare", str(rows), "-o", str(tmp_path / "o"), "--tools-file", str(bad), "--no-progress"]) == 2


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_tools_file(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_tools_file(tmp_path / "x.json")


_names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
_tool_lists = st.lists(_names.map(lambda n: {"name": n, "parameters": {"type": "object", "properties": {}}}), max_size=4)


@settings(max_examples=40)
@given(tools=_tool_lists, wrap=st.booleans(), key=st.one_of(st.none(), _names))
def test_a_list_reads_the_same_wrapped_or_not(tmp_path_factory, tools, wrap, key):
    """Property: ``{"tools": L}`` reads as ``L``; a keyed mapping gives each key its list."""
    d = tmp_path_factory.mktemp("t")
    if key is None:
        path = _write(d, "t.json", {"tools": tools} if wrap else tools)
        assert read_tools_file(path) == tools
        assert load_tools_file(path).tools == load_tools_file(_write(d, "u.json", tools)).tools
    else:
        path = _write(d, "t.json", {key: tools, "zz" + key: tools[:1]})
        spec = load_tools_file(path, key_field="env")
        assert set(spec.by_key) == {key, "zz" + key}
        assert spec.attach({"env": key})["tools"] == ([dict(t) for t in spec.by_key[key]] or None)
