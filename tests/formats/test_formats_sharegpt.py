"""Tests of the ShareGPT reader (sftdata.formats): glaive shape, function calls after a gpt turn,
parallel calls, inline calls kept as text, errors."""

from __future__ import annotations

import json

from sftdata.errors import Reason
from sftdata.formats import detect_format, normalize
from sftdata.schema import Message, ToolCall

from formats_helpers import err


# ---------------------------------------------------------------------------- ShareGPT


def fc(name, arguments):
    return {"from": "function_call", "value": json.dumps({"name": name, "arguments": arguments})}


def test_sharegpt_glaive_shape():
    row = {
        "conversations": [
            {"from": "human", "value": "find a recipe"},
            fc("search_recipes", {"ingredients": ["rice"]}),
            {"from": "observation", "value": '{"recipes": []}'},
            {"from": "gpt", "value": "none found"},
        ],
        "tools": json.dumps([{"name": "search_recipes", "parameters": {"type": "object"}}]),
    }
    assert detect_format(row) == "sharegpt"
    conv = normalize(row)
    assert conv.messages == (
        Message("user", "find a recipe"),
        Message("assistant", None, tool_calls=(ToolCall("search_recipes", {"ingredients": ["rice"]}),)),
        Message("tool", '{"recipes": []}', name="search_recipes"),
        Message("assistant", "none found"),
    )
    assert conv.tools == ({"type": "function", "function": {"name": "search_recipes", "parameters": {"type": "object"}}},)


def test_sharegpt_function_call_after_gpt_merges_and_parallel_calls():
    row = {
        "system": "be brief",
        "conversations": [
            {"from": "user", "value": "two things"},
            {"from": "gpt", "value": "Let me check."},
            fc("a", {"x": 1}),
            {"from": "function_call", "value": {"name": "b", "arguments": "{'y': 2}"}},
            {"from": "observation", "value": "A"},
            {"from": "tool", "value": "B"},
            {"from": "assistant", "value": "done"},
        ],
    }
    conv = normalize(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    call_msg = conv.messages[2]
    assert call_msg.content == "Let me check."
    assert call_msg.tool_calls == (ToolCall("a", {"x": 1}), ToolCall("b", {"y": 2}))
    assert [m.name for m in conv.messages[3:5]] == ["a", "b"]
    # a function_call value may also be a list of calls
    row2 = {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": json.dumps([{"name": "a"}, {"name": "b", "arguments": {}}])}]}
    assert [c.name for c in normalize(row2).messages[1].tool_calls] == ["a", "b"]


def test_sharegpt_inline_call_then_observation_kept_as_text():
    row = {
        "conversations": [
            {"from": "human", "value": "折扣?"},
            {"from": "gpt", "value": '好的。\nAI 计算折扣: {"原价": 200}'},
            {"from": "observation", "value": '{"discounted_price": 160}'},
            {"from": "gpt", "value": "160"},
        ]
    }
    conv = normalize(row)
    assert conv.messages[1] == Message("assistant", '好的。\nAI 计算折扣: {"原价": 200}')
    assert conv.messages[2] == Message("tool", '{"discounted_price": 160}')


def test_sharegpt_errors():
    e = err({"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}, {"from": "gpt", "value": "b"}]})
    assert (e.reason, e.field) == (Reason.UNKNOWN_ROLE, "conversations[1].from")
    e = err({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q"}, {"from": "function_call", "value": '{"name": "f", "arguments": "[1]"}'}]})
    assert (e.reason, e.field) == (Reason.BAD_ARGUMENTS, "conversations[2].value.arguments")
    e = err({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "not a call"}]})
    assert (e.reason, e.field) == (Reason.BAD_TOOL_CALL, "conversations[1].value")
    e = err({"conversations": [{"from": "human"}]})
    assert (e.reason, e.field) == (Reason.MISSING_FIELD, "conversations[0].value")
    e = err({"conversations": [{"from": "human", "value": ["x"]}]})
    assert (e.reason, e.field) == (Reason.BAD_TYPE, "conversations[0].value")
    e = err({"conversations": [{"from": "human", "value": "q"}], "tools": "{bad"})
    assert (e.reason, e.field) == (Reason.BAD_TOOLS, "tools")
