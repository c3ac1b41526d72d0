"""The hypothesis strategies produce valid, varied conversations."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.schema import Conversation
from sftdata.testing.strategies import (
    SPECIAL_STRINGS,
    assert_well_formed,
    conversations,
    json_values,
    messages,
    texts,
    tool_calls,
    tool_schemas,
)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def all_text(conv: Conversation) -> list[str]:
    out = []
    for m in conv.messages:
        out += [m.content or "", m.reasoning or ""]
        out += [json.dumps(c.arguments, ensure_ascii=False) for c in m.tool_calls]
    return out


@FAST
@given(conversations())
def test_default_conversations_are_well_formed(conv):
    assert_well_formed(conv)
    ids = [c.id for m in conv.messages for c in m.tool_calls]
    assert len(ids) == len(set(ids)) and None not in ids
    if conv.tools:
        names = {t["function"]["name"] for t in conv.tools}
        assert all(c.name in names for m in conv.messages for c in m.tool_calls)
    assert not any(s in t for t in all_text(conv) for s in SPECIAL_STRINGS)
    # JSON / Arrow round trip: everything is JSON-able
    assert Conversation.from_row(json.loads(json.dumps(conv.to_row()))) == conv


@FAST
@given(st.sampled_from(["assistant", "user", "tool"]).flatmap(lambda e: st.tuples(st.just(e), conversations(ends_with=e))))
def test_ends_with(pair):
    ends_with, conv = pair
    assert_well_formed(conv)
    assert conv.messages[-1].role == ends_with


@FAST
@given(conversations(tools=False, reasoning=False, system=False))
def test_restricted_conversations(conv):
    assert_well_formed(conv)
    assert conv.tools is None
    roles = [m.role for m in conv.messages]
    assert "tool" not in roles and "system" not in roles
    assert all(m.reasoning is None and not m.tool_calls for m in conv.messages)
    # strict user/assistant alternation starting with user
    assert all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles))


@FAST
@given(conversations(parallel_calls=False, call_content=False, none_content=False, whitespace="stripped", unicode=False))
def test_option_flags(conv):
    assert_well_formed(conv)
    for m in conv.messages:
        assert len(m.tool_calls) <= 1
        if m.tool_calls:
            assert m.content == ""
        for t in (m.content, m.reasoning):
            if t:
                assert t == t.strip()
                assert t.isascii()


def collect(strategy, n: int = 30) -> list:
    """Draw ``n`` examples (derandomized, no shrinking unlike ``hypothesis.find``), each checked for well-formedness."""
    seen = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(conv):
        assert_well_formed(conv)
        seen.append(conv)

    draw()
    return seen


def test_special_token_text_and_inline_think():
    convs = collect(conversations(special_token_text=True, special_strings=("<|im_end|>",)))
    assert any("<|im_end|>" in t for c in convs for t in all_text(c))
    convs = collect(conversations(inline_think=True, tools=False))
    assert any((m.content or "").startswith("<think>\n") for c in convs for m in c.messages)


def test_long_and_parallel_examples_exist():
    convs = collect(conversations(long=True), n=5)
    assert max(len(c.messages) for c in convs) >= 15
    assert max(len(m.content or "") for c in convs for m in c.messages) >= 500
    convs = collect(conversations(), n=20)
    assert any(len(m.tool_calls) >= 2 for c in convs for m in c.messages)
    assert any(m.reasoning for c in convs for m in c.messages)
    assert any(m.content == "" for c in convs for m in c.messages)
    assert any(not t.isascii() for c in convs for t in all_text(c))
    assert any(t != t.strip() for c in convs for t in all_text(c))


@FAST
@given(texts(unicode=True), json_values(), tool_schemas(), messages("assistant", reasoning=True))
def test_building_blocks(text, value, schemas, msg):
    assert isinstance(text, str)
    json.dumps(value)
    assert len({s["function"]["name"] for s in schemas}) == len(schemas)
    assert msg.role == "assistant"


@FAST
@given(tool_schemas().flatmap(lambda s: tool_calls(s, max_size=4)))
def test_tool_calls_block(calls):
    assert 1 <= len(calls) <= 4
    assert len({c.id for c in calls}) == len(calls)
    assert all(isinstance(c.arguments, dict) for c in calls)


@FAST
@given(st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(st.just(n), conversations(call_id_length=n, ends_with="tool", max_turns=3, max_parallel=4))
))
def test_fixed_length_call_ids(pair):
    """``call_id_length`` gives ids of exactly that many ASCII letters/digits, unique in the conversation."""
    n, conv = pair
    assert_well_formed(conv)
    ids = [c.id for m in conv.messages for c in m.tool_calls]
    assert ids and all(len(i) == n and i.isascii() and i.isalnum() for i in ids)
    assert len(set(ids)) == len(ids)


def test_fixed_length_call_ids_bounds():
    from sftdata.testing.tool_strategies import _fixed_length_id

    draw = lambda strategy: ""  # noqa: E731 - the random head is not needed here
    assert _fixed_length_id(draw, 3, 35) == "00z"
    with pytest.raises(ValueError):
        _fixed_length_id(draw, 0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        _fixed_length_id(draw, 1, 36)


def test_bad_arguments():
    with pytest.raises(ValueError):
        conversations(ends_with="tool", tools=False)
    with pytest.raises(ValueError):
        conversations(ends_with="nope")
    with pytest.raises(ValueError):
        conversations(min_turns=3, max_turns=2)
