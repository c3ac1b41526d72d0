"""The role/content message parser shared by the ``openai``, ``parts`` and conversational
``prompt_completion`` readers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Reason, RowError
from ..schema import Message, ToolCall
from ._arguments import parse_call_value, parse_tool_call
from ._common import (
    at,
    expect_list,
    expect_opt_str,
    expect_str,
    parse_json_like,
    parse_train,
    snippet,
    split_inline_think,
    type_name,
)

#: Accepted ``role`` values (case-insensitive) and their canonical role.
ROLE_MAP = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system role
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",  # legacy OpenAI function result
}

#: Keys holding assistant reasoning, in order of preference.
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")

#: Content part types understood (``text`` parts may use ``text`` or ``value``).
PART_TYPES = ("text", "reasoning", "tool_call")


def parse_content(value: Any, field: str = "content") -> tuple[str | None, str | None, list[ToolCall]]:
    """Parse a message ``content``: ``null``, a string, or a list of parts.

    Parts are OpenAI ``{"type": "text", "text": …}`` or LLaMA-Factory v1
    ``{"type": "text"|"reasoning"|"tool_call", "value": …}`` (plain strings in the list
    count as text). Several text parts are joined with ``"\\n"``, as are reasoning parts.

    Returns:
        ``(text or None, reasoning or None, tool calls from tool_call parts)``.

    Raises:
        RowError: ``bad_type`` for other content types or unsupported part types
            (e.g. ``image_url``), with the path (``content[1].type``).
    """
    if value is None or isinstance(value, str):
        return value, None, []
    if not isinstance(value, (list, tuple)):
        raise RowError(Reason.BAD_TYPE, f"content must be a string, null or a list of parts, got {type_name(value)}", field=field)
    texts: list[str] = []
    reasonings: list[str] = []
    calls: list[ToolCall] = []
    for k, part in enumerate(value):
        path = f"{field}[{k}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise RowError(Reason.BAD_TYPE, f"a content part must be an object, got {type_name(part)}", field=path)
        kind = part.get("type")
        if kind is None:
            raise RowError(Reason.MISSING_FIELD, "content part has no type", field=f"{path}.type")
        if kind == "text":
            key = "text" if part.get("text") is not None else "value"
            texts.append(expect_str(part.get(key), f"{path}.{key}"))
        elif kind == "reasoning":
            key = next((k2 for k2 in ("value", "reasoning", "text") if part.get(k2) is not None), "value")
            reasonings.append(expect_str(part.get(key), f"{path}.{key}"))
        elif kind == "tool_call":
            raw = part.get("value")
            if raw is None:
                raise RowError(Reason.MISSING_FIELD, "tool_call part has no value", field=f"{path}.value")
            with at(f"{path}.value"):
                calls.extend(parse_call_value(raw))
        else:
            raise RowError(
                Reason.BAD_TYPE,
                f"unsupported content part type {kind!r} (supported: {', '.join(PART_TYPES)})",
                field=f"{path}.type",
            )
    text = "\n".join(texts) if texts else None
    reasoning = "\n".join(reasonings) if reasonings else None
    return text, reasoning, calls


def parse_tool_calls(value: Any, field: str = "tool_calls") -> list[ToolCall]:
    """An OpenAI ``tool_calls`` list (``null`` → none; a JSON string holding the list is accepted).

    Raises:
        RowError: ``bad_type`` for a non-list; per-call errors with ``tool_calls[j]…`` paths.
    """
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = parse_json_like(value)
        except ValueError as e:
            raise RowError(Reason.BAD_TOOL_CALL, f"unparsable tool_calls {snippet(value)}: {e}", field=field) from None
        if value is None:
            return []
    expect_list(value, field)
    calls = []
    for j, item in enumerate(value):
        with at(f"{field}[{j}]"):
            calls.append(parse_tool_call(item))
    return calls


def parse_role(item: Mapping) -> str:
    """The canonical role of a message dict (see :data:`ROLE_MAP`)."""
    raw = item.get("role")
    if raw is None:
        raise RowError(Reason.MISSING_FIELD, "message has no role", field="role")
    if not isinstance(raw, str):
        raise RowError(Reason.BAD_TYPE, f"role must be a string, got {type_name(raw)}", field="role")
    role = ROLE_MAP.get(raw.lower())
    if role is None:
        raise RowError(
            Reason.UNKNOWN_ROLE,
            f"unknown role {raw!r}; expected one of {sorted(ROLE_MAP)}",
            field="role",
        )
    return role


def parse_message(item: Any) -> Message:
    """One OpenAI-style message dict to a :class:`Message` (error fields relative to it).

    Handles: ``content`` as string/null/parts; ``tool_calls`` (arguments as JSON string,
    dict or python-repr); legacy ``function_call``; ``role: "function"`` → ``tool`` (keeping
    ``name``); reasoning in ``reasoning_content``/``reasoning``/``thinking``, in
    ``reasoning`` parts, or as a leading ``<think>…</think>`` block in assistant content;
    ``train``/``weight``.

    Raises:
        RowError: ``bad_type``, ``missing_field``, ``unknown_role``, ``bad_tool_call``,
            ``bad_arguments`` with a path relative to the message.
    """
    if not isinstance(item, Mapping):
        raise RowError(Reason.BAD_TYPE, f"a message must be an object, got {type_name(item)}", field=None)
    role = parse_role(item)
    if "content" not in item and role != "assistant":
        raise RowError(Reason.MISSING_FIELD, f"{role} message has no content", field="content")
    content, part_reasoning, part_calls = parse_content(item.get("content"), "content")

    reasoning = None
    for key in REASONING_KEYS:
        if item.get(key) is not None:
            reasoning = expect_str(item[key], key)
            break
    if part_reasoning is not None:
        if reasoning is not None:
            raise RowError(Reason.BAD_TYPE, "reasoning given both as a field and as content parts", field="content")
        reasoning = part_reasoning
    if role != "assistant" and reasoning == "":
        reasoning = None  # an empty reasoning field on a user/tool turn carries nothing

    calls = parse_tool_calls(item.get("tool_calls"), "tool_calls") + part_calls
    legacy = item.get("function_call")
    if legacy is not None:
        if calls:
            raise RowError(Reason.BAD_TOOL_CALL, "message has both tool_calls and a legacy function_call", field="function_call")
        with at("function_call"):
            calls = parse_call_value(legacy)

    if role == "assistant" and reasoning is None and isinstance(content, str):
        reasoning, content = split_inline_think(content)

    if role == "assistant" and content is None and reasoning is None and not calls and "content" not in item:
        raise RowError(Reason.MISSING_FIELD, "assistant message has no content, reasoning or tool calls", field="content")

    return Message(
        role,
        content,
        reasoning=reasoning,
        tool_calls=tuple(calls),
        tool_call_id=expect_opt_str(item.get("tool_call_id"), "tool_call_id"),
        name=expect_opt_str(item.get("name"), "name"),
        train=parse_train(item),
    )


def parse_messages(value: Any, field: str) -> list[Message]:
    """A list of message dicts; errors carry ``{field}[i]…`` paths.

    Raises:
        RowError: ``bad_type`` if ``value`` is not a list, or any :func:`parse_message` error.
    """
    expect_list(value, field)
    out = []
    for i, item in enumerate(value):
        with at(f"{field}[{i}]"):
            out.append(parse_message(item))
    return out
