"""Tests of the other readers (sftdata.formats): typed parts, prompt/completion, Alpaca, text, and
format detection."""

from __future__ import annotations

import json

import pytest

from sftdata.errors import ConfigError, Reason
from sftdata.formats import FORMATS, detect_format, normalize
from sftdata.schema import Message, TextExample, ToolCall

from formats_helpers import err


# ---------------------------------------------------------------------------- typed parts


def test_parts_parallel_results_split_and_ids_linked():
    blob = json.dumps(
        [
            {"tool_call_id": "call_A", "name": "area", "content": "{'area': 7.0}"},
            {"tool_call_id": "call_B", "name": "area", "content": {"area": 28.3}},
        ]
    )
    row = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "value": "sys"}]},
            {"role": "user", "content": [{"type": "text", "value": "areas?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "reasoning", "value": "two calls"},
                    {"type": "tool_call", "value": json.dumps({"name": "area", "arguments": {"r": 1.5}})},
                    {"type": "tool_call", "value": json.dumps({"name": "area", "arguments": {"r": 3}})},
                ],
            },
            {"role": "tool", "content": [{"type": "text", "value": blob}]},
            {"role": "assistant", "content": [{"type": "reasoning", "value": "r"}, {"type": "text", "value": "7 and 28"}]},
        ],
        "tools": json.dumps([{"type": "function", "function": {"name": "area", "parameters": {"type": "dict", "properties": {}}}}]),
    }
    assert detect_format(row) == "parts"
    conv = normalize(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    call_msg = conv.messages[2]
    assert (call_msg.content, call_msg.reasoning) == (None, "two calls")
    assert call_msg.tool_calls == (ToolCall("area", {"r": 1.5}, id="call_A"), ToolCall("area", {"r": 3}, id="call_B"))
    assert conv.messages[3] == Message("tool", "{'area': 7.0}", tool_call_id="call_A", name="area")
    assert conv.messages[4] == Message("tool", '{"area": 28.3}', tool_call_id="call_B", name="area")
    assert conv.messages[5] == Message("assistant", "7 and 28", reasoning="r")
    assert conv.tools[0]["function"]["parameters"]["type"] == "dict"


def test_parts_single_result_not_split_and_named():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "q"}]},
            {"role": "assistant", "content": [{"type": "tool_call", "value": '{"name": "f", "arguments": {}}'}]},
            {"role": "tool", "content": [{"type": "text", "value": '[{"title": "Inception", "rating": 8.8}]'}]},
            {"role": "assistant", "content": [{"type": "text", "value": "ok"}]},
        ]
    }
    conv = normalize(row)
    assert conv.messages[2] == Message("tool", '[{"title": "Inception", "rating": 8.8}]', name="f")


def test_parts_errors():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "value": "q"}]}, {"role": "assistant", "content": [{"type": "tool_call", "value": '{"name": "f", "arguments": "[1]"}'}]}]}
    e = err(row)
    assert (e.reason, e.field) == (Reason.BAD_ARGUMENTS, "messages[1].content[0].value.arguments")
    row = {"messages": [{"role": "user", "content": [{"type": "video", "value": "q"}]}]}
    assert err(row, "parts").field == "messages[0].content[0].type"
    row = {"messages": [{"role": "user", "content": [{"type": "reasoning", "value": "q"}]}]}
    assert (err(row).reason, err(row).field) == (Reason.BAD_TYPE, "messages[0].reasoning")


# ---------------------------------------------------------------------------- other formats


def test_prompt_completion():
    ex = normalize({"prompt": "2+2=", "completion": "4"})
    assert ex == TextExample((("2+2=", False), ("4", True)))
    row = {
        "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}],
        "completion": [{"role": "assistant", "content": "a2"}],
    }
    assert detect_format(row) == "prompt_completion"
    conv = normalize(row)
    assert [m.train for m in conv.messages] == [None, False, None, None]
    e = err({"prompt": "q", "completion": [{"role": "assistant", "content": "a"}]})
    assert e.reason is Reason.BAD_TYPE
    e = err({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "bot", "content": "a"}]})
    assert (e.reason, e.field) == (Reason.UNKNOWN_ROLE, "completion[0].role")


def test_alpaca():
    conv = normalize({"instruction": "Sum", "input": "1 2", "output": "3", "system": "math"})
    assert conv.messages == (Message("system", "math"), Message("user", "Sum\n\n1 2"), Message("assistant", "3"))
    conv = normalize({"instruction": "Hi", "input": "", "output": "Hello", "history": [["a", "b"]]})
    assert conv.messages == (Message("user", "a"), Message("assistant", "b"), Message("user", "Hi"), Message("assistant", "Hello"))
    e = err({"instruction": "Hi", "output": "x", "history": [["a", 1]]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "history[0][1]")
    e = err({"instruction": "Hi", "output": 3})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "output")
    assert err({"instruction": "Hi", "input": "x"}, "alpaca").reason is Reason.MISSING_FIELD


def test_text():
    assert normalize({"text": "hello"}) == TextExample((("hello", True),))
    assert err({"text": 3}).field == "text"
    assert err({"text": ""}).reason is Reason.EMPTY_CONVERSATION


def test_detect_unknown_and_priority():
    e = err({"question": "q", "answer": "a"})
    assert e.reason is Reason.UNKNOWN_FORMAT and e.field is None
    assert "answer" in e.message and "question" in e.message
    # null keys (as Arrow fills them) are ignored
    assert detect_format({"messages": None, "text": "t"}) == "text"
    assert detect_format({"messages": [{"role": "user", "content": "q"}], "text": "t"}) == "openai"
    assert detect_format({"messages": [{"from": "human", "value": "q"}]}) == "sharegpt"
    with pytest.raises(ConfigError):
        normalize({"text": "x"}, "csv")
    assert set(FORMATS) == {"openai", "sharegpt", "parts", "prompt_completion", "alpaca", "text", "swe_agent", "mini_swe_agent", "toolbench"}
