"""Tool-call arguments and tool-call objects: strings, dicts and python-repr, to a dict."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import Reason, RowError
from ..schema import ToolCall
from ._common import at, expect_opt_str, join, parse_json_like, snippet, to_jsonable, type_name


def parse_arguments(value: Any, field: str | None = "arguments") -> dict:
    """Normalise tool-call arguments to a JSON object (a ``dict``).

    Accepts a dict, a JSON string (``'{"a": 1}'``), a python-repr string (``"{'a': 1}"``,
    parsed with :func:`ast.literal_eval` as a fallback), a JSON string holding a JSON
    string of an object (double encoded), and ``null``/``""``/missing (→ ``{}``).

    Args:
        value: the raw ``arguments`` value.
        field: the field path used in errors.

    Returns:
        A dict of plain JSON values.

    Raises:
        RowError: ``bad_arguments`` when the value is unparsable or is not an object
            (e.g. ``"[1, 2]"``, ``"42"``).
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return to_jsonable(dict(value), field, Reason.BAD_ARGUMENTS)
    if not isinstance(value, str):
        raise RowError(
            Reason.BAD_ARGUMENTS,
            f"arguments must be a JSON object or a string holding one, got {type_name(value)}",
            field=field,
        )
    parsed: Any = value
    for _ in range(2):  # a second round for double-encoded JSON ("\"{\\\"a\\\": 1}\"")
        if not parsed.strip():
            return {}
        try:
            parsed = parse_json_like(parsed)
        except ValueError as e:
            raise RowError(Reason.BAD_ARGUMENTS, f"unparsable arguments {snippet(value)}: {e}", field=field) from None
        if not isinstance(parsed, str):
            break
    if not isinstance(parsed, Mapping):
        raise RowError(
            Reason.BAD_ARGUMENTS,
            f"arguments must be a JSON object, got {type_name(parsed)}: {snippet(value)}",
            field=field,
        )
    return to_jsonable(dict(parsed), field, Reason.BAD_ARGUMENTS)


def parse_tool_call(value: Any) -> ToolCall:
    """One tool call object to a :class:`ToolCall`. Error fields are relative to the call.

    Accepts the OpenAI shape ``{"id", "type": "function", "function": {"name", "arguments"}}``
    and the flat shape ``{"name", "arguments", "id"?}`` (ShareGPT ``function_call``
    values, LLaMA-Factory ``tool_call`` parts).

    Raises:
        RowError: ``bad_tool_call`` (not an object, ``type`` other than ``function``,
            empty name), ``missing_field`` (no ``function``/``name``), ``bad_type``
            (name/id not strings), ``bad_arguments`` (see :func:`parse_arguments`).
    """
    if not isinstance(value, Mapping):
        raise RowError(Reason.BAD_TOOL_CALL, f"a tool call must be an object, got {type_name(value)}", field=None)
    kind = value.get("type")
    if kind is not None and kind != "function":
        raise RowError(Reason.BAD_TOOL_CALL, f"unsupported tool call type {kind!r} (only 'function')", field="type")
    fn = value.get("function")
    if fn is None:
        if value.get("name") is None:
            raise RowError(Reason.MISSING_FIELD, "tool call has neither 'function' nor 'name'", field="function")
        fn, base = value, None
    else:
        base = "function"
        if not isinstance(fn, Mapping):
            raise RowError(Reason.BAD_TYPE, f"expected an object, got {type_name(fn)}", field="function")
    name = fn.get("name")
    if name is None:
        raise RowError(Reason.MISSING_FIELD, "tool call has no name", field=join(base, "name"))
    if not isinstance(name, str):
        raise RowError(Reason.BAD_TYPE, f"tool call name must be a string, got {type_name(name)}", field=join(base, "name"))
    if not name.strip():
        raise RowError(Reason.BAD_TOOL_CALL, "tool call name is empty", field=join(base, "name"))
    raw = fn.get("arguments")
    arguments = parse_arguments(raw, join(base, "arguments"))
    call_id = expect_opt_str(value.get("id"), "id")
    return ToolCall(name, arguments, call_id, arguments_text(raw))


def arguments_text(raw: Any) -> str | None:
    """The source's arguments text when it is a JSON object written as a string (what the
    model generated, in the OpenAI format), else ``None``. Python-repr and double-encoded
    strings are not JSON objects and give ``None`` (their parsed dict is rendered instead)."""
    if not isinstance(raw, str):
        return None
    try:
        return raw if isinstance(json.loads(raw), dict) else None
    except ValueError:
        return None


def parse_call_value(value: Any) -> list[ToolCall]:
    """A serialised call (``'{"name": …, "arguments": …}'``), an object, or a list of them.

    Used for ShareGPT ``function_call`` values and typed ``tool_call`` parts. Error fields
    are relative to the value (``arguments``, ``[1].name``).

    Raises:
        RowError: ``bad_tool_call`` when the string does not parse or is not an object
            or a list of objects; otherwise as :func:`parse_tool_call`.
    """
    if isinstance(value, str):
        try:
            parsed = parse_json_like(value)
        except ValueError as e:
            raise RowError(Reason.BAD_TOOL_CALL, f"unparsable tool call {snippet(value)}: {e}", field=None) from None
    else:
        parsed = value
    if isinstance(parsed, (list, tuple)):
        calls = []
        for k, item in enumerate(parsed):
            with at(f"[{k}]"):
                calls.append(parse_tool_call(item))
        if not calls:
            raise RowError(Reason.BAD_TOOL_CALL, "empty list of tool calls", field=None)
        return calls
    if not isinstance(parsed, Mapping):
        raise RowError(Reason.BAD_TOOL_CALL, f"a tool call must be an object, got {type_name(parsed)}", field=None)
    return [parse_tool_call(parsed)]
