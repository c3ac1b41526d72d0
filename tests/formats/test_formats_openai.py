"""Tests of the OpenAI reader (sftdata.formats): tool calls and their arguments, legacy function
calls, reasoning fields, content parts, train/weight, tool schemas, field overrides, errors."""

from __future__ import annotations

import json

import pytest

from sftdata.errors import Reason, RowError
from sftdata.formats import detect_format, normalize, normalize_tools
from sftdata.schema import Conversation, Message, ToolCall

from formats_helpers import err


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


# ---------------------------------------------------------------------------- OpenAI


def test_openai_tool_calls_arguments_string_dict_and_repr():
    row = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                    {"id": "c2", "type": "function", "function": {"name": "b", "arguments": {"y": [1, 2]}}},
                    {"id": "c3", "type": "function", "function": {"name": "c", "arguments": "{'z': True, 'n': None}"}},
                    {"function": {"name": "d", "arguments": ""}},
                    {"function": {"name": "e"}},
                ],
            },
            {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "a"},
        ],
        "tools": [WEATHER],
    }
    conv = normalize(row)
    assert isinstance(conv, Conversation)
    calls = conv.messages[1].tool_calls
    assert [c.arguments for c in calls] == [{"x": 1}, {"y": [1, 2]}, {"z": True, "n": None}, {}, {}]
    assert [c.id for c in calls] == ["c1", "c2", "c3", None, None]
    assert conv.messages[1].content is None  # kept None beside tool calls
    assert conv.messages[2] == Message("tool", "ok", tool_call_id="c1", name="a")
    assert conv.tools == (WEATHER,)


def test_arguments_double_encoded_json():
    args = json.dumps(json.dumps({"q": "x"}))
    row = {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": args}}]}]}
    assert normalize(row).messages[0].tool_calls[0].arguments == {"q": "x"}


@pytest.mark.parametrize("arguments", ["[1, 2]", "42", '"just text"', "{not json", 7, ["a"]])
def test_bad_arguments_have_full_path(arguments):
    row = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}]},
        ]
    }
    e = err(row)
    assert e.reason is Reason.BAD_ARGUMENTS
    assert e.field == "messages[3].tool_calls[0].function.arguments"
    assert e.stage == "normalize"


def test_legacy_function_call_and_function_role():
    row = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"role": "function", "name": "get_weather", "content": "18C"},
            {"role": "assistant", "content": "18C."},
        ],
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    }
    conv = normalize(row)
    # the arguments text is kept as the model generated it (rendered verbatim by default)
    assert conv.messages[1].tool_calls == (ToolCall("get_weather", {"city": "Paris"}, arguments_text='{"city": "Paris"}'),)
    assert conv.messages[2] == Message("tool", "18C", name="get_weather")
    assert conv.tools == ({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},)


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning", "thinking"])
def test_reasoning_fields(key):
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", key: "because"}]}
    assert normalize(row).messages[1] == Message("assistant", "a", reasoning="because")


def test_inline_think_split():
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nstep 1\nstep 2\n</think>\n\nThe answer."}]}
    m = normalize(row).messages[1]
    assert (m.reasoning, m.content) == ("step 1\nstep 2", "The answer.")
    # only at the start; an unclosed block and an explicit reasoning field leave content alone
    for content, reasoning in [("Answer <think>x</think>", None), ("<think>unclosed", None)]:
        m = normalize({"messages": [{"role": "assistant", "content": content}]}).messages[0]
        assert (m.reasoning, m.content) == (reasoning, content)
    m = normalize({"messages": [{"role": "assistant", "content": "<think>a</think>b", "reasoning_content": "r"}]}).messages[0]
    assert (m.reasoning, m.content) == ("r", "<think>a</think>b")
    # user turns are never split
    assert normalize({"messages": [{"role": "user", "content": "<think>a</think>b"}]}).messages[0].content == "<think>a</think>b"


def test_content_parts_joined():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    assert detect_format(row) == "openai"
    assert normalize(row).messages[0].content == "a\nb"
    e = err({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages[0].content[0].type")


def test_train_and_weight():
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "weight": 0},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "b", "weight": 1},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "c", "train": False},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "d"},
        ]
    }
    assert [m.train for m in normalize(row).messages if m.role == "assistant"] == [False, True, False, None]
    assert err({"messages": [{"role": "assistant", "content": "a", "weight": 0.5}]}).field == "messages[0].weight"
    assert err({"messages": [{"role": "assistant", "content": "a", "train": "yes"}]}).field == "messages[0].train"
    assert err({"messages": [{"role": "assistant", "content": "a", "train": True, "weight": 0}]}).reason is Reason.BAD_TYPE


def test_tools_shapes():
    bare = {"name": "f", "description": "d", "parameters": {"type": "dict", "properties": {}}}
    wrapped = {"type": "function", "function": {"name": "g", "parameters": {"x": {"type": "str"}}}}
    responses = {"type": "function", "name": "h", "parameters": {}}
    tools = normalize_tools(json.dumps([bare, wrapped, responses]))
    assert tools == (
        {"type": "function", "function": bare},  # schema kept verbatim ("dict" stays)
        wrapped,
        {"type": "function", "function": {"name": "h", "parameters": {}}},
    )
    assert normalize_tools("[]") is None and normalize_tools(None) is None and normalize_tools([]) is None
    for bad, field in [("{oops", "tools"), ({"name": "f"}, "tools"), ([1], "tools[0]"), ([{"description": "x"}], "tools[0].name")]:
        with pytest.raises(RowError) as info:
            normalize_tools(bad)
        assert (info.value.reason, info.value.field) == (Reason.BAD_TOOLS, field)
    row = {"messages": [{"role": "user", "content": "q"}], "tools": json.dumps([bare])}
    assert normalize(row).tools == ({"type": "function", "function": bare},)


def test_traj_field_and_override():
    row = {"task_id": 1, "traj": [{"role": "system", "content": "s"}, {"content": "q", "role": "user"}]}
    assert detect_format(row) == "openai"
    assert normalize(row).messages[1] == Message("user", "q")
    e = err({"traj": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "[]"}}]}]}, messages_field="traj")
    assert e.field == "traj[1].tool_calls[0].function.arguments"
    row = {"dialog": [{"role": "user", "content": "q"}], "fns": [{"name": "f"}]}
    conv = normalize(row, "openai", messages_field="dialog", tools_field="fns")
    assert conv.tools == ({"type": "function", "function": {"name": "f"}},)
    assert err(row, "openai").reason is Reason.MISSING_FIELD


def test_unknown_role_wrong_type_missing():
    e = err({"messages": [{"role": "user", "content": "q"}, {"role": "assitant", "content": "a"}]})
    assert (e.reason, e.field) == (Reason.UNKNOWN_ROLE, "messages[1].role")
    assert "assitant" in str(e)
    e = err({"messages": [{"role": "user", "content": 5}]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages[0].content")
    e = err({"messages": [{"content": "q"}]})
    assert (e.reason, e.field) == (Reason.MISSING_FIELD, "messages[0].role")
    e = err({"messages": [{"role": "user"}]})
    assert (e.reason, e.field) == (Reason.MISSING_FIELD, "messages[0].content")
    e = err({"messages": "hello"})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages")
    e = err({"messages": [{"role": "user", "content": "q"}, "oops"]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages[1]")
    e = err({"messages": []})
    assert (e.reason, e.field) == (Reason.EMPTY_CONVERSATION, "messages")
    e = err({"messages": [{"role": "user", "content": "q", "tool_calls": [{"function": {"name": "f"}}]}]})
    assert (e.reason, e.field) == (Reason.BAD_TOOL_CALL, "messages[0].tool_calls")
    e = err({"messages": [{"role": "assistant", "tool_calls": [{"id": 3, "function": {"name": "f"}}]}]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages[0].tool_calls[0].id")
    e = err({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]})
    assert (e.reason, e.field) == (Reason.MISSING_FIELD, "messages[0].tool_calls[0].function.name")
    e = err({"messages": [{"role": "tool", "content": "x", "tool_call_id": 9}]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "messages[0].tool_call_id")


def test_role_aliases():
    row = {"messages": [{"role": "developer", "content": "s"}, {"role": "User", "content": "q"}]}
    assert [m.role for m in normalize(row).messages] == ["system", "user"]
