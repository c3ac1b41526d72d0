"""ShareGPT format: ``{"conversations": [{"from": ..., "value": ...}], "tools": "<JSON>", "system"?}``.

Roles (``from``, case-insensitive): ``system``; ``human``/``user``; ``gpt``/``assistant``
(and ``chatgpt``/``bing``/``bard`` from the original ShareGPT dumps); ``function_call``;
``observation``/``tool``.

Decisions (see ``docs/formats.md``):

* A ``function_call`` turn becomes ``tool_calls`` on an assistant message. When it comes
  right after an assistant turn (``gpt`` or another ``function_call``) it is merged into
  that message (text + call, or parallel calls), as in OpenAI's format; otherwise it
  starts a new assistant message with ``content=None``.
* An ``observation`` turn becomes a ``tool`` message and takes ``name`` (and ``id``, if
  any) from the next unanswered call of the preceding assistant message. With no such call
  (e.g. glaive ZH rows that write the call inline in a ``gpt`` turn) it is kept as a tool
  message without name/id, and the ``gpt`` text is kept as text: nothing is guessed.
* A top-level ``system`` string (LLaMA-Factory's ``system`` column) becomes the first
  message unless the conversation already starts with a system turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import Reason, RowError
from ..schema import Conversation, Message
from ._arguments import parse_call_value
from ._common import at, expect_list, expect_str, parse_train, split_inline_think, type_name
from ._fields import make_conversation, messages_key, row_tools
from .parts import link_tool_results

#: Accepted ``from`` values (case-insensitive) and the role they map to.
FROM_MAP = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "function_call": "function_call",
    "observation": "tool",
    "tool": "tool",
}


def _turn(item: Any, messages: list[Message]) -> None:
    if not isinstance(item, Mapping):
        raise RowError(Reason.BAD_TYPE, f"a turn must be an object, got {type_name(item)}", field=None)
    source = item.get("from")
    if source is None:
        raise RowError(Reason.MISSING_FIELD, "turn has no 'from'", field="from")
    if not isinstance(source, str):
        raise RowError(Reason.BAD_TYPE, f"'from' must be a string, got {type_name(source)}", field="from")
    role = FROM_MAP.get(source.lower())
    if role is None:
        raise RowError(Reason.UNKNOWN_ROLE, f"unknown 'from' value {source!r}; expected one of {sorted(FROM_MAP)}", field="from")
    if "value" not in item:
        raise RowError(Reason.MISSING_FIELD, "turn has no 'value'", field="value")
    value = item["value"]
    train = parse_train(item)
    if role == "function_call":
        if value is None:
            raise RowError(Reason.MISSING_FIELD, "function_call turn has a null value", field="value")
        with at("value"):
            calls = tuple(parse_call_value(value))
        prev = messages[-1] if messages else None
        if prev is not None and prev.role == "assistant" and (train is None or train == prev.train):
            messages[-1] = replace(prev, tool_calls=prev.tool_calls + calls)
        else:
            messages.append(Message("assistant", None, tool_calls=calls, train=train))
        return
    if value is not None:
        expect_str(value, "value", what="a string or null")
    if role == "assistant" and value is not None:
        reasoning, content = split_inline_think(value)
        messages.append(Message("assistant", content, reasoning=reasoning, train=train))
    else:
        messages.append(Message(role, value, train=train))


def normalize_sharegpt(row: Mapping, *, messages_field: str | None = None, tools_field: str | None = None) -> Conversation:
    """Normalise a ShareGPT row.

    Args:
        row: the input row.
        messages_field: key of the turn list (default ``conversations``, else ``messages``).
        tools_field: key of the tool list (default ``tools``; a JSON string is accepted).

    Returns:
        The :class:`Conversation`.

    Raises:
        RowError: with the field path, e.g. ``conversations[2].from`` (unknown role),
            ``conversations[3].value.arguments`` (bad arguments in a ``function_call``).
    """
    key = messages_key(row, "sharegpt", messages_field)
    items = expect_list(row[key], key)
    messages: list[Message] = []
    system = row.get("system")
    if system is not None:
        expect_str(system, "system")
    for i, item in enumerate(items):
        with at(f"{key}[{i}]"):
            _turn(item, messages)
    if system and not (messages and messages[0].role == "system"):
        messages.insert(0, Message("system", system))
    tools = row_tools(row, tools_field)
    return make_conversation(link_tool_results(messages, split_packed=False), tools, key)
