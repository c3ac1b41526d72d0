"""Tests of the readers (sftdata.formats): quirks, error paths, round trips, real data."""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sftdata.errors import ConfigError, Reason, RowError
from sftdata.formats import FORMATS, detect_format, iter_examples, iter_inputs, iter_rows, normalize, normalize_tools
from sftdata.schema import Conversation, Message, TextExample, ToolCall

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


def err(row, fmt=None, **kw) -> RowError:
    with pytest.raises(RowError) as info:
        normalize(row, fmt, **kw)
    return info.value


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


# ---------------------------------------------------------------------------- reading


def test_malformed_json_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n\n[1, 2]\n{"text": "c"}\n', encoding="utf-8")
    items = list(iter_rows(path))
    assert [i for i, _ in items] == [0, 1, 2, 3]  # blank line is not a row; indices contiguous
    assert items[0][1] == {"text": "a"} and items[3][1] == {"text": "c"}
    bad = items[1][1]
    assert isinstance(bad, RowError)
    assert (bad.reason, bad.stage, bad.row) == (Reason.MALFORMED_JSON, "read", 1)
    assert f"{path}:2" in bad.message
    assert isinstance(items[2][1], RowError) and items[2][1].reason is Reason.BAD_TYPE and ":4:" in items[2][1].message
    out = list(iter_examples([path], start_index=10))
    assert [i for i, _ in out] == [10, 11, 12, 13]
    assert out[1][1].row == 11 and out[0][1] == TextExample((("a", True),))


def test_json_array_object_and_jsonl_named_json(tmp_path):
    rows = [{"text": "a"}, {"text": "b"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"version": 1, "data": rows}))
    (tmp_path / "c.json").write_text("\n".join(map(json.dumps, rows)))
    (tmp_path / "d.json").write_text('[{"text": "a"}, {"text": ')
    (tmp_path / "e.json").write_text(json.dumps({"messages": [], "tools": []}))
    with gzip.open(tmp_path / "f.jsonl.gz", "wt") as fh:
        fh.write("\n".join(map(json.dumps, rows)))
    for name in ("a.json", "b.json", "c.json", "f.jsonl.gz"):
        assert list(iter_rows(tmp_path / name)) == [(0, rows[0]), (1, rows[1])], name
    # the array is streamed: the items before a syntax error are rows, the error is the next one
    [(i0, first), (index, bad)] = list(iter_rows(tmp_path / "d.json"))
    assert (i0, first) == (0, rows[0]) and index == 1
    assert bad.reason is Reason.MALFORMED_JSON and "d.json:1" in bad.message and "could not be read" in bad.message
    # an object that is a row (it has row keys) is a one-conversation file: one row
    assert list(iter_rows(tmp_path / "e.json")) == [(0, {"messages": [], "tools": []})]
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "x.csv"))


def test_heterogeneous_arguments_survive_json_reading(tmp_path):
    """Arguments that differ between rows must not gain null-filled keys (the Arrow bug)."""
    path = tmp_path / "calls.jsonl"
    rows = [
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "sh", "arguments": {"cmd": "ls"}}}]}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "rd", "arguments": {"path": "/x"}}}]}]},
    ]
    path.write_text("\n".join(map(json.dumps, rows)))
    got = [ex.messages[0].tool_calls[0].arguments for _, ex in iter_examples(path)]
    assert got == [{"cmd": "ls"}, {"path": "/x"}]


def test_parquet_dataset_and_lists(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved_dict"))
    expected = list(enumerate(rows))
    assert list(iter_rows(tmp_path / "t.parquet")) == expected
    assert list(iter_rows(str(tmp_path / "saved"))) == expected
    assert list(iter_rows(tmp_path / "saved_dict")) == expected
    assert list(iter_rows(ds)) == expected
    assert list(iter_rows(rows)) == expected
    chained = list(iter_inputs([tmp_path / "t.parquet", ds, rows], start_index=5))
    assert [i for i, _ in chained] == list(range(5, 14))
    assert list(iter_inputs(rows)) == expected and list(iter_inputs(ds)) == expected
    assert [i for i, _ in iter_examples(str(tmp_path / "t.parquet"))] == [0, 1, 2]
    [(index, bad)] = list(iter_rows(["nope"]))
    assert index == 0
    assert bad.reason is Reason.BAD_TYPE and bad.stage == "read"
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ConfigError):
        list(iter_rows(tmp_path / "empty_dir"))
    with pytest.raises(ConfigError):
        list(iter_rows(datasets.DatasetDict({"train": ds, "test": ds})))


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


# ---------------------------------------------------------------------------- real data


def _data_files() -> list[Path]:
    if not SHARED.is_dir():
        return []
    files = sorted(p for p in SHARED.rglob("*") if p.suffix in (".json", ".jsonl"))
    # dataset_info.json (LLaMA-Factory column mappings) and the DERIVED tool list are not datasets
    return [p for p in files if p.name != "dataset_info.json" and ".DERIVED." not in p.name]


@pytest.mark.shared_data
def test_every_shared_row_normalizes_or_raises_row_error():
    files = _data_files()
    if not files:
        pytest.skip(f"{SHARED} is absent")
    report = {}
    for path in files:
        counts: collections.Counter = collections.Counter()
        n = 0
        for index, item in iter_rows(path):
            assert index == n
            n += 1
            if isinstance(item, RowError):
                counts[f"read:{item.reason.value}"] += 1
                continue
            try:
                normalize(item)
            except RowError as e:
                counts[e.reason.value] += 1
            else:
                counts["ok"] += 1
        report[str(path.relative_to(SHARED))] = dict(counts)
    for name, counts in report.items():
        print(f"{name}: {counts}")
    # every row of these files is valid input
    assert all(set(c) == {"ok"} for c in report.values()), report


def _load(rel: str) -> list[dict]:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return [row for _, row in iter_rows(path)]


@pytest.mark.shared_data
def test_shared_tau_bench_details():
    convs = [normalize(r, messages_field="traj") for r in _load("tau-bench/gpt-4o-airline.json")]
    calls = [c for conv in convs for m in conv.messages for c in m.tool_calls]
    assert len(calls) == 1164 and all(c.id and c.id.startswith("call_") for c in calls)
    none_content = sum(1 for conv in convs for m in conv.messages if m.tool_calls and m.content is None)
    assert none_content == 1074
    # each tool message answers the single call of the assistant message just before it
    pairs = [(conv.messages[i - 1], m) for conv in convs for i, m in enumerate(conv.messages) if m.role == "tool"]
    assert len(pairs) == 1164
    assert all(p.tool_calls[0].id == m.tool_call_id and p.tool_calls[0].name == m.name for p, m in pairs)
    # quirk kept as is: call ids are reused within 49 trajectories (73 repeats), so ids alone do not pair
    dup = [len(ids) - len(set(ids)) for ids in ([c.id for m in conv.messages for c in m.tool_calls] for conv in convs)]
    assert (sum(d > 0 for d in dup), sum(dup)) == (49, 73)


@pytest.mark.shared_data
def test_shared_llamafactory_details():
    parts = [normalize(r) for r in _load("llamafactory/reason_tool_use_demo_50.jsonl")]
    calls = [c for conv in parts for m in conv.messages for c in m.tool_calls]
    assert len(calls) == 68
    assert sum(1 for conv in parts for m in conv.messages if len(m.tool_calls) > 1) == 12
    assert sum(1 for conv in parts if conv.messages[-1].tool_calls) == 11
    # every tool result is linked to a call name; no packed JSON blob survives
    for conv in parts:
        for m in conv.messages:
            if m.role == "tool":
                assert m.name is not None and '"tool_call_id"' not in m.content
    zh = [normalize(r) for r in _load("llamafactory/glaive_toolcall_zh_demo.json")]
    unnamed = [i for i, conv in enumerate(zh) if any(m.role == "tool" and m.name is None for m in conv.messages)]
    assert unnamed == [197, 293]
    en = [normalize(r) for r in _load("llamafactory/glaive_toolcall_en_demo.json")]
    assert sum(len(m.tool_calls) for conv in en for m in conv.messages) == 211
    assert sum(1 for conv in en if conv.tools is None) == 109
