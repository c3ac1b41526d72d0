"""Property tests of the readers (sftdata.formats): OpenAI round trips, to_row/from_row, and fuzzed
rows that raise only RowError."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sftdata.errors import RowError
from sftdata.formats import FORMATS, normalize
from sftdata.schema import Conversation, Message, ToolCall


# ---------------------------------------------------------------------------- properties

_json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)
_args = st.dictionaries(st.text(max_size=6), _json, max_size=4)
_name = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
_text = st.text(max_size=20)
_opt_text = st.none() | _text
_train = st.none() | st.booleans()


@st.composite
def _message(draw):
    role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
    if role == "assistant":
        calls = tuple(draw(st.lists(st.builds(ToolCall, _name, _args, st.none() | _name), max_size=2)))
        reasoning = draw(_opt_text)
        content = draw(_opt_text)
        if reasoning is None and content is not None:
            assume(not content.lstrip().startswith("<think>"))
        return Message("assistant", content, reasoning=reasoning, tool_calls=calls, train=draw(_train))
    if role == "tool":
        return Message("tool", draw(_opt_text), tool_call_id=draw(st.none() | _name), name=draw(st.none() | _name), train=draw(_train))
    return Message(role, draw(_opt_text), name=draw(st.none() | _name), train=draw(_train))


_tool_schema = st.builds(
    lambda n, d: {"type": "function", "function": {"name": n, "description": d, "parameters": {"type": "object", "properties": {}}}},
    _name,
    _text,
)
_conversation = st.builds(
    lambda msgs, tools: Conversation(tuple(msgs), tuple(tools) or None),
    st.lists(_message(), min_size=1, max_size=6),
    st.lists(_tool_schema, max_size=2),
)


def _to_openai(conv: Conversation, draw) -> dict:
    messages = []
    for m in conv.messages:
        d = {"role": m.role, "content": m.content}
        if m.reasoning is not None:
            d[draw(st.sampled_from(["reasoning_content", "reasoning", "thinking"]))] = m.reasoning
        if m.tool_calls:
            d["tool_calls"] = []
            for c in m.tool_calls:
                style = draw(st.sampled_from(["json", "dict", "repr"]))
                args = {"json": json.dumps(dict(c.arguments)), "dict": dict(c.arguments), "repr": repr(dict(c.arguments))}[style]
                call = {"type": "function", "function": {"name": c.name, "arguments": args}}
                if c.id is not None:
                    call["id"] = c.id
                d["tool_calls"].append(call)
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            d["name"] = m.name
        if m.train is not None:
            if draw(st.booleans()):
                d["train"] = m.train
            else:
                d["weight"] = int(m.train)
        messages.append(d)
    row = {"messages": messages}
    if conv.tools:
        row["tools"] = json.dumps(list(conv.tools)) if draw(st.booleans()) else list(conv.tools)
    return row


def _json_object_text(args):
    """The arguments string when it is the JSON text of an object, else None."""
    if not isinstance(args, str):
        return None
    try:
        return args if isinstance(json.loads(args), dict) else None
    except ValueError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conv=_conversation, data=st.data())
def test_property_openai_round_trip(conv, data):
    row = _to_openai(conv, data.draw)
    row = json.loads(json.dumps(row))  # written out as JSON and read back
    # arguments given as JSON text keep that exact text (what the model generated)
    # (a Python repr such as {"'": None} starts like JSON but is not JSON: its dict is rendered)
    texts = iter(_json_object_text(c["function"]["arguments"]) for m in row["messages"] for c in m.get("tool_calls", []))
    expected = Conversation(
        tuple(dataclasses.replace(m, tool_calls=tuple(dataclasses.replace(c, arguments_text=next(texts)) for c in m.tool_calls)) for m in conv.messages),
        conv.tools,
    )
    assert normalize(row) == expected
    assert normalize(row, "openai") == expected


def test_openai_repr_arguments_that_look_like_json_are_not_kept_as_text():
    """A Python repr such as ``{"'": None}`` starts like JSON but is not: its dict is rendered and
    no ``arguments_text`` is kept (the case a property test once got wrong)."""
    call = {"type": "function", "function": {"name": "f", "arguments": repr({"'": None})}}
    conv = normalize({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]})
    tc = conv.messages[1].tool_calls[0]
    assert (dict(tc.arguments), tc.arguments_text) == ({"'": None}, None)
    call["function"]["arguments"] = '{"a": 1.10}'
    tc = normalize({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]}).messages[1].tool_calls[0]
    assert tc.arguments_text == '{"a": 1.10}'  # JSON text: kept verbatim


@settings(max_examples=150, deadline=None)
@given(conv=_conversation)
def test_property_to_row_from_row(conv):
    row = conv.to_row()
    assert Conversation.from_row(json.loads(json.dumps(row))) == conv


_fuzz_value = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "x", "user", "assistant", "tool", "gpt", "function_call", "{}", "[1]", "<think>a</think>b", '{"name": "f"}']),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["role", "content", "from", "value", "type", "text", "name", "arguments", "function", "tool_calls", "id", "weight", "train", "reasoning"]), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    row=st.dictionaries(st.sampled_from(["messages", "conversations", "traj", "tools", "prompt", "completion", "instruction", "input", "output", "text", "history", "system"]), _fuzz_value, max_size=4),
    fmt=st.sampled_from([None, *FORMATS]),
)
def test_property_fuzz_only_row_errors(row, fmt):
    try:
        normalize(row, fmt)
    except RowError as e:
        assert e.stage == "normalize"
