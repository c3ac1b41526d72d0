"""Per-row results carry their own counters (issue 19, build item 3).

* every :class:`RowResult` holds the :class:`Counters` of its row; a batch's counters, a chunk's and
  ``stats.json``'s are the sum of the rows' counters (property test over random batches of good and
  bad rows, on the offline tokenizers of :mod:`sftdata.testing`);
* a row's counters do not depend on the batch it was encoded in;
* every input row is written or rejected: rows in = rows written + rows rejected;
* a rejected row counts only what it dropped; nothing resets an encoder's counters from outside;
* a chunk whose reported counters differ from its rows' sum raises :class:`InvariantError`.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sftdata.chunks import ChunkEncoder
from sftdata.counters import check_counter_sum
from sftdata.encoder import Counters, EncodedBatch, EncodeOptions, Encoder, RowResult, sum_counters
from sftdata.errors import Reason, RowError
from sftdata.formats import normalize
from sftdata.invariants import InvariantError
from sftdata.masking.encode import EncodeStats
from sftdata.masking.render import RenderStats
from sftdata.prepare import run_prepare
from sftdata.testing.strategies import conversations
from sftdata.testing.tokenizers import build_tokenizer

TOKENIZERS = {name: build_tokenizer(name) for name in ("qwen3", "chatml")}  # qwen3 rewrites history: tree rows

MALFORMED = "{\"messages\": ["  # a JSONL line that does not parse


def _row(conv) -> dict:
    return {"messages": conv.template_messages(), **({"tools": conv.template_tools()} if conv.tools else {})}


_words = st.lists(st.sampled_from("alpha beta gamma delta flight seat refund bag".split()), min_size=1, max_size=60).map(" ".join)
_bad_rows = st.one_of(
    st.just({"messages": [{"role": "wizard", "content": "x"}]}),  # unknown_role
    st.just({"messages": []}),  # empty_conversation
    st.just(MALFORMED),  # malformed_json
    st.just({"messages": [{"role": "user", "content": "only a question"}]}),  # no_trained_turn
)
_other_rows = st.one_of(
    _words.map(lambda t: {"text": t}),
    st.tuples(_words, _words).map(lambda pc: {"prompt": pc[0], "completion": pc[1]}),
)
ROWS = st.lists(
    st.one_of(
        conversations(min_turns=2, max_turns=3, special_token_text=False).map(_row),  # qwen3 rewrites their reasoning
        conversations(max_turns=2, special_token_text=True).map(_row),  # some rejected: control-token text
        _bad_rows, _other_rows,
    ),
    min_size=1, max_size=8,
)
OPTIONS = st.fixed_dictionaries({
    "turn_policy": st.sampled_from(["exact", "exact", "all", "last"]),  # exact on qwen3: tree rows
    "layout": st.sampled_from(["tree", "tree", "linear"]),
    "max_length": st.sampled_from([None, None, 48, 400]),
    "truncation": st.sampled_from(["drop", "turns"]),
})


def _as_input(row):
    """The row as :meth:`Encoder.encode_rows` gets it from the reader: a malformed line is its RowError."""
    return RowError(Reason.MALFORMED_JSON, "bad", stage="read") if row == MALFORMED else row


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=ROWS, options=OPTIONS, family=st.sampled_from(sorted(TOKENIZERS)))
def test_row_counters_sum_to_batch_and_stats_json(rows, options, family):
    tok = TOKENIZERS[family]
    enc = Encoder(tok, EncodeOptions(**options))
    batch = enc.encode_rows([_as_input(r) for r in rows], list(range(len(rows))))
    results = batch.results
    assert [r.source_index for r in results] == list(range(len(rows)))
    # the batch's counters are the sum of its rows'; the encoder's running sum is the same
    total = sum((r.counters for r in results), Counters())
    assert batch.counters == total == sum_counters(results) == enc.counters
    # a row's counters do not depend on the batch it is encoded in
    for row, res in zip(rows, results):
        alone = Encoder(tok, EncodeOptions(**options)).encode_rows([_as_input(row)], [res.source_index]).results[0]
        assert alone.counters == res.counters and (alone.error is None) == (res.error is None)
    # a rejected row counts only what it dropped (no rendering, no written paths or tokens)
    for res in results:
        if res.error is not None:
            assert res.counters.render == RenderStats()
            e = res.counters.encode
            assert EncodeStats(dropped_examples=e.dropped_examples, trained_tokens_over_length=e.trained_tokens_over_length,
                               trained_tokens_cut=e.trained_tokens_cut) == e
    summed, written, rejected = _check_stats_json(rows, options, tok, results, total)
    event(f"rejected rows: {'some' if rejected else 'none'}; written rows: {'some' if written else 'none'}")
    event(f"dropped examples counted: {bool(total.encode.dropped_examples)}; tree rows: {bool(summed['encode']['tree_rows'])}")


def _check_stats_json(rows, options, tok, results, total):
    """prepare on the same rows (a JSONL file, read, chunked and summed by the run): stats.json
    holds the sum of the rows' counters, and rows in = rows written + rows rejected."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rows.jsonl"
        src.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                       encoding="utf-8")
        run_prepare(str(src), tok, Path(tmp) / "out", progress=False, verbose=False, allow_empty=True, **options)
        stats = json.loads((Path(tmp) / "out" / "stats.json").read_text(encoding="utf-8"))
    summed = total.to_dict()
    dropped = summed["encode"].pop("dropped_examples")
    assert stats["render"] == summed["render"] and stats["encode"] == summed["encode"]
    assert stats["dropped_examples"] == dict(sorted(dropped.items()))
    written = [r for r in results if r.error is None]
    rejected = [r for r in results if r.error is not None]
    assert stats["rows_in"] == len(rows) == stats["rows_out"] + stats["rows_rejected"]
    assert (stats["rows_out"], stats["rows_rejected"]) == (len(written), len(rejected))
    assert stats["rejected_by_reason"] == dict(sorted(Counter(r.error.reason.value for r in rejected).items()))
    assert stats["examples_out"] == sum(len(r.rows) for r in written)
    assert stats["paths"] == summed["encode"]["paths"] and stats["tree_rows"] == summed["encode"]["tree_rows"]
    return summed, written, rejected


def _enc(**options) -> Encoder:
    return Encoder(TOKENIZERS["chatml"], EncodeOptions(**options))


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}


THINKING = {"messages": [  # qwen3 drops the reasoning of earlier turns: a tree row of 2 paths
    {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1", "reasoning": "r1"},
    {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2", "reasoning": "r2"},
]}


def test_tree_row_counters_sum_to_stats_json():
    rows = [THINKING, GOOD, MALFORMED, {"text": "alpha beta " * 200}, THINKING]
    options = {"turn_policy": "exact", "layout": "tree", "max_length": 300, "truncation": "drop"}
    results = Encoder(TOKENIZERS["qwen3"], EncodeOptions(**options)).encode_rows([_as_input(r) for r in rows], range(5)).results
    tree = results[0].counters.encode
    assert (tree.tree_rows, tree.paths, tree.branched_turns) == (1, 2, 1) and results[4].counters == results[0].counters
    assert results[3].counters == Counters(encode=EncodeStats(dropped_examples={"too_long": 1}))
    summed, written, rejected = _check_stats_json(rows, options, TOKENIZERS["qwen3"], results, sum_counters(results))
    assert (len(written), len(rejected), summed["encode"]["tree_rows"]) == (3, 2, 2)


def test_written_row_counts_its_rendering_and_encoding():
    [res] = _enc().encode_rows([GOOD], [7]).results
    assert res.error is None and res.source_index == 7
    assert res.counters.render.turns == 1 and res.counters.encode.paths == 1
    assert res.counters.encode.tokens_one_rendering == len(res.rows[0].input_ids)


def test_rejected_row_counts_only_what_it_dropped():
    long_text = {"text": "alpha beta gamma delta " * 40}
    [res] = _enc(max_length=16, truncation="drop").encode_rows([long_text], [3]).results
    assert res.error is not None and res.error.reason is Reason.TOO_LONG and res.rows == ()
    assert res.counters == Counters(encode=EncodeStats(dropped_examples={"too_long": 1}))
    [bad] = _enc().encode_rows([{"messages": [{"role": "wizard", "content": "x"}]}], [4]).results
    assert bad.error is not None and bad.counters == Counters()


def test_counters_are_a_value_that_adds():
    a = Counters(RenderStats(turns=2), EncodeStats(paths=1, dropped_examples={"too_long": 1}))
    b = Counters(RenderStats(turns=1), EncodeStats(dropped_examples={"too_long": 2, "x": 1}))
    assert sum([a, b], Counters()) == a + b == sum([a, b])
    assert (a + b).to_dict()["encode"]["dropped_examples"] == {"too_long": 3, "x": 1}
    assert a.render.turns == 2 and a.encode.dropped_examples == {"too_long": 1}  # operands unchanged
    assert EncodedBatch([RowResult(0, counters=a), RowResult(1, counters=b)]).counters == a + b
    assert EncodedBatch([]).counters == Counters()


def test_encoder_counters_are_not_reset_from_outside():
    enc = _enc()
    first = enc.encode_rows([GOOD], [0])
    with pytest.raises(AttributeError):
        enc.counters = Counters()  # type: ignore[misc]
    enc.encode(normalize(GOOD))  # encode() returns rows only: its counters are in the running sum
    assert enc.counters == first.counters + first.counters


def test_check_counter_sum_raises_on_a_mismatch():
    rows = [Counters(RenderStats(turns=1)), Counters(RenderStats(turns=2))]
    check_counter_sum({"render": {"turns": 3, "prompt_mismatch": 0}, "encode": {"dropped_examples": {}}}, rows)
    with pytest.raises(InvariantError, match=r"counters == sum of per-row counters .*'render': \(\{'turns': 4\}, \{'turns': 3\}\)"):
        check_counter_sum({"render": {"turns": 4}}, rows)


def test_chunk_whose_counters_are_not_its_rows_sum_raises(monkeypatch):
    """What a chunk reports must be the sum of its rows' counters: InvariantError (even under -O) otherwise."""
    chunker = ChunkEncoder(_enc())
    ok = chunker([(0, GOOD), (1, {"messages": []})])
    assert ok.part.counters["render"]["turns"] == 1 and ok.part.rows_in == 2 == ok.part.rows_out + ok.part.rows_rejected
    real = chunker.encoder.encode_rows

    def lying(rows, idx):  # a batch whose counters are not its rows' sum
        batch = real(rows, idx)
        return SimpleNamespace(results=batch.results, counters=batch.counters + Counters(RenderStats(turns=1)))

    monkeypatch.setattr(chunker.encoder, "encode_rows", lying)
    with pytest.raises(InvariantError, match=r"the chunk's counters == sum of per-row counters"):
        chunker([(0, GOOD)])
