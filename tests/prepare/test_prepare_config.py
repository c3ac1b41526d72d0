"""One config per stage, the ``prepare`` keywords written once, per-row results as values (issue 19).

* ``sftdata prepare``'s flags give every keyword of ``prepare`` with the same defaults, and
  ``inspect.signature(prepare)`` lists them: the signature is written once (the dataclass fields);
* :class:`EncodeOptions` builds one frozen, validated config per stage, with the same one-line errors;
* :class:`Counters` add as values; every input row becomes exactly one :class:`RowResult`, and a
  chunk's rows in = rows out + rows rejected holds (a break raises InvariantError, it is not an ``assert``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata import prepare
from sftdata.chunks import ChunkEncoder, reject_line
from sftdata.cli import build_parser
from sftdata.commands.prepare import NO_FLAG, prepare_keywords
from sftdata.masking.encode import LAYOUTS as ENCODE_LAYOUTS
from sftdata.masking.encode import EncodeStats
from sftdata.encoder import Counters, EncodedBatch, Encoder, RowResult
from sftdata.errors import ConfigError, Reason, RowError
from sftdata.invariants import InvariantError
from sftdata.options import (LAYOUTS, OPTION_NAMES, SPECIAL_TOKEN_MODES, TOOL_ARGUMENTS, TRUNCATIONS, TURN_POLICIES,
                             EncodeConfig, EncodeOptions, ReadConfig, RenderConfig)
from sftdata.prepare import run_prepare
from sftdata.prepare_config import PREPARE_KEYWORDS, RUN_NAMES, PrepareConfig
from sftdata.masking.render import RenderStats, TurnPolicy
from sftdata.output.stats import add_counters

#: Keywords whose CLI default differs from the library's on purpose.
CLI_DEFAULTS = {"progress": True}  # the command line shows a bar unless --no-progress


def _cli_args(*flags: str):
    return build_parser().parse_args(["prepare", "in.jsonl", "-o", "out", *flags])


def test_cli_flags_give_every_prepare_keyword_with_its_default():
    got = prepare_keywords(_cli_args())
    assert set(got) == set(PREPARE_KEYWORDS) - set(NO_FLAG)
    sig = inspect.signature(prepare).parameters
    for name, value in got.items():
        assert value == CLI_DEFAULTS.get(name, sig[name].default), name


def test_cli_flags_reach_their_keywords():
    got = prepare_keywords(_cli_args("--train-roles", "assistant, tool", "--no-train-reasoning", "--keep-trailing",
                                     "--template-kwargs", "enable_thinking=false", "--end-of-turn", "<a>,<b>",
                                     "--max-length", "64", "--truncation", "turns", "--num-proc", "2", "--no-progress"))
    assert got["train_roles"] == ("assistant", "tool") and got["train_reasoning"] is False
    assert got["trim_trailing"] is False and got["template_kwargs"] == {"enable_thinking": False}
    assert got["stop_tokens"] == ("<a>", "<b>") and got["progress"] is False
    assert (got["max_length"], got["truncation"], got["num_proc"]) == (64, "turns", 2)
    assert prepare_keywords(_cli_args("--stop-tokens", "<x>", "--end-of-turn", "<a>"))["stop_tokens"] == ("<x>",)


def test_cli_choices_are_the_configs():
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["prepare"]._actions}
    assert tuple(actions["turn_policy"].choices) == TURN_POLICIES == tuple(p.value for p in TurnPolicy)
    assert tuple(actions["layout"].choices) == LAYOUTS == tuple(ENCODE_LAYOUTS)
    assert tuple(actions["truncation"].choices) == TRUNCATIONS
    assert tuple(actions["special_tokens_in_content"].choices) == SPECIAL_TOKEN_MODES
    assert tuple(actions["tool_arguments"].choices) == TOOL_ARGUMENTS


def test_signature_is_the_fields():
    sig = inspect.signature(prepare).parameters
    assert list(sig)[:4] == ["inputs", "tokenizer", "output", "options"]
    assert tuple(sig)[4:] == PREPARE_KEYWORDS == RUN_NAMES + OPTION_NAMES
    assert sig["max_length"].default is None and sig["num_proc"].default == 1 and sig["turn_policy"].default == "exact"
    assert "config" in inspect.signature(run_prepare).parameters


def test_keyword_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown options \['turn_polcy'\]"):
        run_prepare([], turn_polcy="all")
    with pytest.raises(ConfigError, match="pass either options= or option keyword arguments"):
        run_prepare([], options=EncodeOptions(), max_length=3)
    with pytest.raises(ConfigError, match="pass either config= or run keyword arguments"):
        run_prepare([], config=PrepareConfig(), num_proc=2)
    with pytest.raises(ConfigError, match="on_error must be 'skip' or 'raise', got 'x'"):
        run_prepare([], on_error="x")
    with pytest.raises(ConfigError, match="--tools-key needs --tools-file"):
        run_prepare([], tools_key="env")
    with pytest.raises(ConfigError, match="resume needs an output directory"):
        run_prepare([], resume=True)


# ------------------------------------------------------------------ stage configs
@pytest.mark.parametrize("kw, message", [
    ({"turn_policy": "x"}, "turn_policy must be one of ['exact', 'all', 'last'], got 'x'"),
    ({"truncation": "x"}, "truncation must be 'drop' or 'turns', got 'x'"),
    ({"special_tokens_in_content": "x"}, "special_tokens_in_content must be 'reject', 'text' or 'allow', got 'x'"),
    ({"max_length": 0}, "max_length must be positive, got 0"),
    ({"layout": "x"}, "layout must be one of ['tree', 'linear'], got 'x'"),
    ({"tool_arguments": "x"}, "tool_arguments must be 'auto', 'dict' or 'json', got 'x'"),
    ({"clock": "x"}, "clock must be an ISO 8601 date or datetime such as 2026-01-31T09:00:00, got 'x'"),
])
def test_one_line_errors(kw, message):
    with pytest.raises(ConfigError) as e:
        EncodeOptions(**kw)
    assert str(e.value) == message and "\n" not in str(e.value)


_options = st.fixed_dictionaries({}, optional={
    "turn_policy": st.sampled_from(TURN_POLICIES), "layout": st.sampled_from(LAYOUTS),
    "truncation": st.sampled_from(TRUNCATIONS), "max_length": st.one_of(st.none(), st.integers(1, 10**6)),
    "special_tokens_in_content": st.sampled_from(SPECIAL_TOKEN_MODES), "tool_arguments": st.sampled_from(TOOL_ARGUMENTS),
    "train_reasoning": st.booleans(), "trim_trailing": st.booleans(),
    "stop_tokens": st.one_of(st.none(), st.tuples(st.sampled_from(["<a>", "<b>"]))),
    "end_of_turn": st.one_of(st.none(), st.tuples(st.sampled_from(["<b>", "<c>"]))),
    "format": st.sampled_from([None, "openai", "sharegpt"]), "messages_field": st.sampled_from([None, "traj"]),
    "render_timeout": st.one_of(st.none(), st.floats(0.5, 100)), "max_messages": st.one_of(st.none(), st.integers(1, 10)),
    "clock": st.sampled_from([None, "2026-01-31", "2026-01-31T09:00:00"]),
})


@settings(max_examples=60)
@given(kw=_options)
def test_options_are_three_stage_configs(kw):
    """Property: the stage configs hold exactly the flat values; rebuilt from them, the options are equal."""
    o = EncodeOptions(**kw)
    assert isinstance(o.read, ReadConfig) and isinstance(o.render, RenderConfig) and isinstance(o.encode, EncodeConfig)
    for stage in (o.read, o.render, o.encode):
        for f in dataclasses.fields(stage):
            assert getattr(stage, f.name) == getattr(o, f.name), f.name
    assert o.end_of_turn is None  # merged into stop_tokens, once
    if kw.get("end_of_turn"):
        assert set(kw["end_of_turn"]) <= set(o.stop_tokens)
    assert EncodeOptions.from_stages(o.read, o.render, o.encode) == o
    assert EncodeOptions(**o.to_dict()) == o  # the dict stats.json records builds the same options
    assert list(o.to_dict()) == list(OPTION_NAMES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.render.turn_policy = "all"  # type: ignore[misc]


# ------------------------------------------------------------------ counters and row results
_stats = st.builds(lambda a, b, d: (a, b, d), st.integers(0, 5), st.integers(0, 5),
                   st.dictionaries(st.sampled_from(["too_long", "x"]), st.integers(0, 3), max_size=2))


def _counters(t):
    a, b, d = t
    return Counters(RenderStats(turns=a, prompt_mismatch=b), EncodeStats(paths=b, dropped_examples=dict(d)))


@given(x=_stats, y=_stats, z=_stats)
def test_counters_add_as_values(x, y, z):
    a, b, c = _counters(x), _counters(y), _counters(z)
    before = (a.to_dict(), b.to_dict())
    total = a + b
    assert (a.to_dict(), b.to_dict()) == before  # operands unchanged
    assert total.to_dict() == add_counters(add_counters({}, a), b)
    assert (a + b) + c == a + (b + c) and a + b == b + a
    assert a + Counters() == a


ROWS = [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"messages": [{"role": "wizard", "content": "x"}]},
    RowError(Reason.MALFORMED_JSON, "bad", stage="read"),
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "r"},
                  {"role": "assistant", "content": "b"}]},
    {"messages": []},
]


def test_encode_rows_gives_one_result_per_row():
    enc = Encoder_default()
    batch = enc.encode_rows(ROWS, [10, 11, 12, 13, 14])
    assert isinstance(batch, EncodedBatch) and [r.source_index for r in batch.results] == [10, 11, 12, 13, 14]
    for res in batch.results:
        assert (res.error is None) == bool(res.rows)
        if res.error is not None:
            assert res.error.row == res.source_index and res.error.stage is not None
    assert [r.error.reason.value for r in batch.results if r.error] == ["unknown_role", "malformed_json", "empty_conversation"]
    assert enc.counters == batch.counters  # the encoder's running sum of what it returned
    again = enc.encode_rows(ROWS, [10, 11, 12, 13, 14])
    assert enc.counters == batch.counters + again.counters


def Encoder_default():
    from sftdata.masking.tokenizer import load_tokenizer

    return Encoder(load_tokenizer(None))


def test_reject_lines_are_the_rejects_jsonl_format():
    err = RowError(Reason.TOO_LONG, "long", field="messages", row=3, stage="truncate", length=9)
    assert list(json.loads(reject_line(err, {"a": 1}))) == ["row", "stage", "reason", "field", "message", "length", "original"]
    assert json.loads(reject_line(err, "raw text"))["original"] == "raw text"


def test_chunk_accounting_raises(monkeypatch):
    """A result that is neither written nor rejected breaks rows in = out + rejected: InvariantError, even under -O."""
    chunker = ChunkEncoder(Encoder_default())
    items = [(0, ROWS[0]), (1, ROWS[1])]
    ok = chunker(items)
    assert ok.part.rows_in == 2 == ok.part.rows_out + ok.part.rows_rejected
    assert isinstance(ok.first_reject, RowError) and ok.first_reject.row == 1
    monkeypatch.setattr(chunker.encoder, "encode_rows", lambda rows, idx: EncodedBatch([RowResult(i) for i in idx]))
    with pytest.raises(InvariantError, match=r"rows_in == rows_out \+ rows_rejected \(2 in, 0 out, 0 rejected\)"):
        chunker(items)
