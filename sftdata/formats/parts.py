"""Typed content parts (LLaMA-Factory "v1" messages).

``{"messages": [{"role": ..., "content": [{"type": "text"|"reasoning"|"tool_call", "value": ...}]}],
"tools": "<JSON string>"}``. Parsed like OpenAI messages, then tool results are linked
to the calls they answer:

* A tool message whose text is a JSON (or python-repr) list of
  ``{"tool_call_id"?, "name", "content"}`` objects (LLaMA-Factory's encoding of parallel
  results) is split into one tool message per result; non-string ``content`` is
  re-serialised as JSON.
* Results are paired in order with the calls of the preceding assistant message. A call
  without an id gets the id of its result when the names agree (the source only has ids
  on the results). A result without a name/id takes them from its call.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping

from ..schema import Conversation, Message, ToolCall
from ._common import at, expect_list, parse_json_like
from ._fields import make_conversation, messages_key, row_tools
from ._messages import parse_message

_RESULT_KEYS = frozenset({"tool_call_id", "name", "content"})


def split_parallel_results(text: str | None) -> list[tuple[str | None, str | None, str]] | None:
    """Parse a packed parallel tool result: ``[{"tool_call_id"?, "name", "content"}, ...]``.

    Returns:
        ``[(tool_call_id, name, content_text), ...]``, or ``None`` when ``text`` is not
        such a list (it is then an ordinary tool result).
    """
    if not text or not text.lstrip().startswith("["):
        return None
    try:
        items = parse_json_like(text)
    except ValueError:
        return None
    if not isinstance(items, list) or not items:
        return None
    out = []
    for item in items:
        if not isinstance(item, dict) or "content" not in item or not set(item) <= _RESULT_KEYS:
            return None
        call_id, name, content = item.get("tool_call_id"), item.get("name"), item["content"]
        if name is None and call_id is None:
            return None
        if not isinstance(call_id, (str, type(None))) or not isinstance(name, (str, type(None))):
            return None
        if not isinstance(content, str):
            try:
                content = json.dumps(content, ensure_ascii=False)
            except (TypeError, ValueError):
                return None
        out.append((call_id, name, content))
    return out


def link_tool_results(messages: list[Message], *, split_packed: bool) -> list[Message]:
    """Pair tool messages with the preceding assistant's calls, in order.

    Args:
        messages: parsed messages.
        split_packed: also split packed parallel results (see :func:`split_parallel_results`).

    Returns:
        New list: tool messages get the ``name``/``tool_call_id`` of their call when they
        lack them; id-less calls get the id of a result with the same name.
    """
    out: list[Message] = []
    pending: list[tuple[int, int]] = []  # (index in out, index in its tool_calls)

    def take(result_id: str | None, result_name: str | None) -> tuple[str | None, str | None]:
        if not pending:
            return result_id, result_name
        pos = 0
        if result_id is not None:  # prefer the call this result names by id
            pos = next((p for p, (m, c) in enumerate(pending) if out[m].tool_calls[c].id == result_id), 0)
        m_idx, c_idx = pending.pop(pos)
        call: ToolCall = out[m_idx].tool_calls[c_idx]
        if result_name is not None and result_name != call.name:
            return result_id, result_name  # not this call: keep the result as given
        if call.id is None and result_id is not None:
            calls = list(out[m_idx].tool_calls)
            calls[c_idx] = replace(call, id=result_id)
            out[m_idx] = replace(out[m_idx], tool_calls=tuple(calls))
            call = calls[c_idx]
        return result_id if result_id is not None else call.id, result_name if result_name is not None else call.name

    for msg in messages:
        if msg.role == "assistant":
            out.append(msg)
            pending = [(len(out) - 1, k) for k in range(len(msg.tool_calls))]
        elif msg.role == "tool":
            packed = (
                split_parallel_results(msg.content)
                if split_packed and pending and msg.tool_call_id is None and msg.name is None
                else None
            )
            if packed:
                for result_id, result_name, text in packed:
                    call_id, name = take(result_id, result_name)
                    out.append(Message("tool", text, tool_call_id=call_id, name=name, train=msg.train))
            else:
                call_id, name = take(msg.tool_call_id, msg.name)
                out.append(replace(msg, tool_call_id=call_id, name=name))
        else:
            out.append(msg)
            pending = []
    return out


def normalize_parts(row: Mapping, *, messages_field: str | None = None, tools_field: str | None = None) -> Conversation:
    """Normalise a typed-content-parts row (LLaMA-Factory v1).

    Args:
        row: the input row.
        messages_field: key of the message list (default ``messages``).
        tools_field: key of the tool list (default ``tools``; a JSON string is accepted).

    Returns:
        The :class:`Conversation`, with parallel results split and calls/results linked.

    Raises:
        RowError: with the field path, e.g. ``messages[2].content[1].value.arguments``.
    """
    key = messages_key(row, "parts", messages_field)
    items: Any = expect_list(row[key], key)
    messages = []
    for i, item in enumerate(items):
        with at(f"{key}[{i}]"):
            messages.append(parse_message(item))
    tools = row_tools(row, tools_field)
    return make_conversation(link_tool_results(messages, split_packed=True), tools, key)
