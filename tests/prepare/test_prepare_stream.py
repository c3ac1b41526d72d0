"""The streaming ``prepare``: same rows however it is split (processes, files, shards),
stats accumulated correctly, output checked against its stats, and the encoder running
unchanged inside ``datasets.map`` / Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata import Encoder, prepare
from sftdata.cli import main as cli_main
from sftdata.errors import ConfigError
from sftdata.output.merge import merge, merge_slices, shard_of
from sftdata.output.stats import TIMING_KEYS, ContentHasher, StatsPart, content_fingerprint
from sftdata.output.load import load_output
from sftdata.testing.tokenizers import build_tokenizer

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "traces.jsonl"


@pytest.fixture(scope="module")
def chatml():
    return build_tokenizer("chatml")


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = "alpha beta gamma delta flight seat refund bag window aisle".split()
    out = []
    for i in range(n):
        msgs = []
        for t in range(int(rng.integers(1, 4))):
            msgs.append({"role": "user", "content": f"q{i}.{t} " + " ".join(rng.choice(words, int(rng.integers(1, 12))))})
            msgs.append({"role": "assistant", "content": f"a{i}.{t} " + " ".join(rng.choice(words, int(rng.integers(1, 12))))})
        if i % 7 == 3:
            msgs[1]["role"] = "assitant"  # rejected: unknown_role
        out.append({"messages": msgs})
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _data(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in TIMING_KEYS + ("data", "job", "sharding")}


@pytest.fixture(scope="module")
def reference(chatml, tmp_path_factory):
    """One unsharded, single-process run over 150 rows (with rejects), small output files."""
    d = tmp_path_factory.mktemp("ref")
    src = _jsonl(d / "in.jsonl", _rows(150))
    ds = prepare(src, chatml, d / "out", shard_size=20_000)
    return src, ds, json.loads((d / "out" / "stats.json").read_text())


def test_output_is_the_same_however_it_is_split(chatml, reference, tmp_path):
    src, ref, ref_stats = reference
    assert len(ref_stats["data"]["files"]) == 3  # one committed file per 64-row chunk here
    assert ref_stats["rows_in"] == ref_stats["rows_out"] + ref_stats["rows_rejected"] and ref_stats["rows_rejected"] > 0
    one_file = prepare(src, chatml, tmp_path / "one")
    two_proc = prepare(src, chatml, tmp_path / "two", num_proc=2, shard_size=50_000)
    in_memory = prepare(src, chatml)
    for other in (one_file, two_proc, in_memory):
        assert other["input_ids"] == ref["input_ids"] and other["labels"] == ref["labels"]
        assert _data(other.sftdata_stats) == _data(ref_stats)
    assert (tmp_path / "two" / "rejects.jsonl").read_text() == (Path(src).parent / "out" / "rejects.jsonl").read_text()


@pytest.mark.parametrize("num_shards,block", [(2, 16), (3, 5), (4, 64)])
def test_shards_merged_equal_the_unsharded_output(chatml, reference, tmp_path, num_shards, block):
    src, ref, ref_stats = reference
    dirs = []
    for i in reversed(range(num_shards)):
        d = tmp_path / f"shard-{i}"
        prepare(src, chatml, d, num_shards=num_shards, shard_index=i, shard_block=block, shard_size=30_000)
        dirs.append(d)
    parts = [json.loads((d / "stats.json").read_text()) for d in dirs]
    assert sum(p["rows_in"] for p in parts) == ref_stats["rows_in"]
    stats = merge(dirs, tmp_path / "merged")
    merged = load_output(tmp_path / "merged", verify="full")
    assert merged["input_ids"] == ref["input_ids"] and merged["labels"] == ref["labels"] and merged["source_index"] == ref["source_index"]
    assert stats["content_fingerprint"] == ref_stats["content_fingerprint"]
    assert _data(stats) == _data(ref_stats)
    assert (tmp_path / "merged" / "rejects.jsonl").read_text() == (Path(src).parent / "out" / "rejects.jsonl").read_text()


def test_merge_refuses_incomplete_or_foreign_shards(chatml, reference, tmp_path, capsys):
    src, _, _ = reference
    for i in range(2):
        prepare(src, chatml, tmp_path / f"s{i}", num_shards=2, shard_index=i, shard_block=8)
    with pytest.raises(ConfigError, match=r"shards \[1\] of 2 are missing"):
        merge([tmp_path / "s0"], tmp_path / "m")
    prepare(src, chatml, tmp_path / "other", num_shards=2, shard_index=1, shard_block=8, turn_policy="all")
    with pytest.raises(ConfigError, match="another job.*options"):
        merge([tmp_path / "s0", tmp_path / "other"], tmp_path / "m")
    assert cli_main(["merge", str(tmp_path / "s0"), str(tmp_path / "s0"), "-o", str(tmp_path / "m")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert cli_main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "-o", str(tmp_path / "m")]) == 0


def test_loading_refuses_data_that_does_not_match_its_stats(chatml, reference, tmp_path):
    src, _, _ = reference
    out = tmp_path / "out"
    prepare(src, chatml, out, shard_size=20_000)
    load_output(out, verify="full")
    stats = json.loads((out / "stats.json").read_text())
    # a record batch cut off the end of the last file: fewer rows, a valid Arrow stream
    last = out / stats["data"]["files"][-1]["file"]
    with pa.memory_map(str(last)) as mm:
        batches = list(pa.ipc.open_stream(mm))
    with pa.OSFile(str(last) + ".cut", "wb") as f, pa.ipc.new_stream(f, batches[0].schema) as w:
        for b in batches[:-1]:
            w.write_batch(b)
    os.replace(str(last) + ".cut", last)
    with pytest.raises(ConfigError, match="does not match"):
        load_output(out)
    with pytest.raises(ConfigError, match="does not match|not a complete"):
        from sftdata_train.data import load_sft_dataset

        load_sft_dataset(out)
    # same size, other content: only the full check sees it
    out2 = tmp_path / "out2"
    prepare(src, chatml, out2)
    f = out2 / "data-00000.arrow"
    raw = bytearray(f.read_bytes())
    raw[-200] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="fingerprint"):
        load_output(out2, verify="full")


def test_generator_source_is_read_lazily(chatml):
    consumed = []

    def gen():
        for i, row in enumerate(_rows(70)):
            consumed.append(i)
            yield row

    ds = prepare(gen(), chatml)
    assert ds.sftdata_stats["rows_in"] == 70 and consumed == list(range(70))
    import datasets

    iterable = datasets.Dataset.from_list([{"raw_row": json.dumps(r)} for r in _rows(70)]).to_iterable_dataset()
    again = prepare((json.loads(x["raw_row"]) for x in iterable), chatml)
    assert again["input_ids"] == ds["input_ids"]
    direct = prepare(datasets.Dataset.from_list(_rows(10)).to_iterable_dataset(), chatml)
    assert direct.sftdata_stats["rows_in"] == 10


def test_prepare_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from sftdata.cli import main\n"
        f"rc = main(['prepare', {str(EXAMPLES)!r}, '-o', {str(tmp_path / 'o')!r}, '--no-progress'])\n"
        "assert rc == 0, rc\n"
        "print(sorted(m for m in ('torch', 'datasets') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_encoder_in_datasets_map_num_proc(chatml):
    """Regression: workers died unpickling the compiled template once the parent had used it."""
    import datasets

    enc = Encoder(chatml)
    rows = [{"raw": json.dumps(r), "source_index": i} for i, r in enumerate(_rows(24))]
    ds = datasets.Dataset.from_list(rows)
    single = enc.map_batch(ds[:])  # the parent uses (and compiles) the templates first
    mapped = ds.map(enc.map_batch, batched=True, batch_size=8, num_proc=2, remove_columns=ds.column_names)
    assert mapped["input_ids"] == single["input_ids"] and mapped["reject"] == single["reject"]


def test_encoder_in_ray_map_batches(chatml):
    ray = pytest.importorskip("ray")
    enc = Encoder(chatml)
    rows = [{"raw": json.dumps(r), "source_index": i} for i, r in enumerate(_rows(12))]
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)
    try:
        out = ray.data.from_items(rows).map_batches(lambda b: enc.map_batch({k: list(v) for k, v in b.items()}), batch_format="numpy").take_all()
    finally:
        ray.shutdown()
    single = enc.map_batch({"raw": [r["raw"] for r in rows], "source_index": [r["source_index"] for r in rows]})
    assert [list(r["input_ids"]) for r in out] == single["input_ids"]


# ---------------------------------------------------------------------------- invariants


_lists = st.lists(st.lists(st.integers(-100, 50_000), max_size=12), min_size=0, max_size=30)


@given(_lists, st.lists(st.integers(1, 10), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_fingerprint_does_not_depend_on_batch_boundaries(ids, cuts):
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("length", pa.int32()), ("source_index", pa.int64())])
    table = pa.table({"input_ids": ids, "length": [len(x) for x in ids], "source_index": list(range(len(ids)))}, schema=schema)
    h = ContentHasher(schema)
    start, k = 0, 0
    while start < table.num_rows:
        n = cuts[k % len(cuts)]
        h.update(table.slice(start, n))
        start, k = start + n, k + 1
    assert h.hexdigest() == content_fingerprint(table)
    if ids and ids[0]:  # any change of a value changes the fingerprint
        changed = [list(x) for x in ids]
        changed[0][0] += 1
        other = pa.table({"input_ids": changed, "length": [len(x) for x in ids], "source_index": list(range(len(ids)))}, schema=schema)
        assert content_fingerprint(other) != content_fingerprint(table)


@given(st.lists(st.integers(1, 40_000), min_size=1, max_size=60), st.integers(1, 5))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_stats_parts_add_up_to_the_whole(lengths, n_parts):
    def part_of(ls):
        p = StatsPart(rows_in=len(ls), rows_out=len(ls))
        arr = np.asarray(ls, dtype=np.int64)
        labels = np.concatenate([np.where(np.arange(n) % 3 == 0, -100, 1) for n in ls]) if ls else np.zeros(0)
        p.add_examples(arr, labels, ["conversation"] * len(ls), [n % 2 == 0 for n in ls])
        return p

    whole = part_of(lengths)
    total = StatsPart()
    bounds = sorted({0, len(lengths), *np.linspace(0, len(lengths), n_parts + 1).astype(int).tolist()})
    for a, b in zip(bounds, bounds[1:]):
        total += part_of(lengths[a:b])
    assert total.to_dict() == whole.to_dict()
    assert StatsPart.from_dict(total.to_dict()).to_dict() == whole.to_dict()


@given(
    st.lists(st.integers(0, 3), min_size=0, max_size=120),  # examples per input row (0 = rejected)
    st.integers(1, 6),
    st.integers(1, 20),
)
@settings(max_examples=200, deadline=None)
def test_sharding_partitions_rows_and_merge_restores_order(examples_per_row, num_shards, block):
    unsharded = [i for i, k in enumerate(examples_per_row) for _ in range(k)]
    shards = [[i for i in unsharded if shard_of(i, num_shards, block) == s] for s in range(num_shards)]
    assert sorted(sum(shards, [])) == unsharded  # disjoint, complete
    sources = [np.asarray(s, dtype=np.int64) for s in shards]
    merged = [shards[s][i] for s, a, b in merge_slices(sources, block) for i in range(a, b)]
    assert merged == unsharded


def test_tools_stored_as_arrow_structs_lose_the_null_filled_keys(chatml, tmp_path):
    """Regression: tool schemas read from a parquet file / Dataset had Arrow's null-filled
    keys ("enum": null on tools without enum) and rendered more tokens than the JSON rows."""
    import datasets
    import pyarrow.parquet as pq

    t1 = {"type": "function", "function": {"name": "pick", "description": "d", "parameters": {"type": "object", "properties": {"c": {"type": "string", "enum": ["a", "b"]}}}}}
    t2 = {"type": "function", "function": {"name": "go", "description": "e", "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}}
    rows = [{**_chat_row(i), "tools": [t1] if i % 2 else [t2]} for i in range(6)]
    ds = datasets.Dataset.from_list(rows)
    assert ds[0]["tools"][0]["function"]["parameters"]["properties"]["c"]["enum"] is None  # Arrow added it
    pq.write_table(ds.data.table, tmp_path / "rows.parquet")
    expected = prepare(rows, chatml)
    for source in (ds, tmp_path / "rows.parquet"):
        got = prepare(source, chatml)
        assert got["input_ids"] == expected["input_ids"] and got["labels"] == expected["labels"]


def test_tool_call_arguments_stored_as_arrow_structs_are_warned_about(chatml, tmp_path):
    """Arguments cannot be repaired like tool schemas (a null may be real): a parquet file or
    Dataset that stores them as structs gets a warning naming the field and the fix; JSON-text
    arguments get none."""
    import datasets
    import pyarrow.parquet as pq

    from sftdata.formats.reader import ArrowArgumentsWarning, struct_argument_fields

    def row(i: int, args) -> dict:
        call = {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": args}}
        return {"messages": [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": "ok"},
            {"role": "assistant", "content": f"a{i}"},
        ]}

    as_struct = datasets.Dataset.from_list([row(0, {"a": 1}), row(1, {"b": "x"})])
    assert as_struct[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"a": 1, "b": None}  # Arrow's fill
    assert struct_argument_fields(as_struct.data.schema) == ["messages[].tool_calls[].function.arguments"]
    pq.write_table(as_struct.data.table, tmp_path / "struct.parquet")
    for source in (as_struct, tmp_path / "struct.parquet"):
        with pytest.warns(ArrowArgumentsWarning, match=r"messages\[\]\.tool_calls\[\]\.function\.arguments.*JSON text"):
            prepare(source, chatml)

    as_text = datasets.Dataset.from_list([row(0, '{"a": 1}'), row(1, '{"b": "x"}')])
    assert struct_argument_fields(as_text.data.schema) == []
    pq.write_table(as_text.data.table, tmp_path / "text.parquet")
    import warnings

    for source in (as_text, tmp_path / "text.parquet"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ArrowArgumentsWarning)
            assert prepare(source, chatml).num_rows == 2


def test_cli_prints_data_warnings_as_one_line(tmp_path, capsys):
    """``sftdata prepare`` shows sftdata's data warnings as ``warning: ...`` (not Python's
    file/line/source format) and restores the warnings hook afterwards."""
    import warnings

    import datasets

    call = {"id": "c0", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "c0", "content": "ok"}, {"role": "assistant", "content": "a"}]}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "s.parquet"))
    hook = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli_main(["prepare", str(tmp_path / "s.parquet"), "--output", str(tmp_path / "out")]) == 0
    assert warnings.showwarning is hook
    err = capsys.readouterr().err
    line = next(x for x in err.replace("\r", "\n").split("\n") if "ArrowArgumentsWarning" in x or "Arrow struct" in x)
    assert line[line.index("sftdata: warning: "):].startswith("sftdata: warning: " + str(tmp_path / "s.parquet") + ": tool-call arguments are stored as an Arrow struct")
    assert "ArrowArgumentsWarning" not in err and "reader.py" not in err


def _chat_row(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}


@given(st.lists(st.one_of(st.none(), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=30)), max_size=20),
       st.sampled_from(["int32", "int64"]))
@settings(max_examples=200, deadline=None)
def test_column_array_equals_pa_array(values, width):
    """The fast list<int> builder gives exactly ``pa.array`` (nulls and empty lists included)."""
    from sftdata.output.columns import column_array

    t = pa.list_(pa.int32() if width == "int32" else pa.int64())
    got = column_array(values, t)
    assert got.type == t and got.equals(pa.array(values, type=t))
    assert column_array([v for v in values if v is not None], t).equals(pa.array([v for v in values if v is not None], type=t))
    assert column_array([1, 2], pa.int64()).equals(pa.array([1, 2], type=pa.int64()))  # not a list: pa.array
    with pytest.raises(OverflowError):
        column_array([[2**31]], pa.list_(pa.int32()))
