"""Tool (function) schema lists: JSON strings, bare schemas, wrapped schemas → one shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Reason, RowError
from ._common import parse_json_like, snippet, to_jsonable, type_name


def normalize_tools(value: Any, field: str = "tools") -> tuple[dict, ...] | None:
    """Normalise a tool list to ``({"type": "function", "function": {...}}, ...)``.

    ``value`` may be ``null``, a list, or a JSON (or python-repr) string holding a list;
    list items may themselves be JSON strings. Each item may be wrapped
    (``{"type": "function", "function": {...}}``, other keys kept), bare
    (``{"name", "description", "parameters"}``) or Responses-API style
    (``{"type": "function", "name", ...}``); bare and Responses-API items are wrapped.
    The function schema itself (``parameters``, including non-standard ``"type": "dict"``
    or bare property maps) is kept exactly as given: templates receive it verbatim.

    Args:
        value: the raw ``tools`` value.
        field: the field path used in errors.

    Returns:
        A tuple of tool dicts, or ``None`` when there are no tools (``null``, ``""``, ``[]``).

    Raises:
        RowError: ``bad_tools`` with the field path (``tools[2].function.name``) for an
            unparsable string, a non-list, an item that is not an object, or a tool
            without a string name.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = parse_json_like(value)
        except ValueError as e:
            raise RowError(Reason.BAD_TOOLS, f"unparsable tools {snippet(value)}: {e}", field=field) from None
        if value is None:
            return None
    if not isinstance(value, (list, tuple)):
        raise RowError(Reason.BAD_TOOLS, f"tools must be an array, got {type_name(value)}", field=field)
    out = []
    for i, item in enumerate(value):
        path = f"{field}[{i}]"
        if isinstance(item, str):
            try:
                item = parse_json_like(item)
            except ValueError as e:
                raise RowError(Reason.BAD_TOOLS, f"unparsable tool {snippet(item)}: {e}", field=path) from None
        if not isinstance(item, Mapping):
            raise RowError(Reason.BAD_TOOLS, f"a tool must be an object, got {type_name(item)}", field=path)
        kind = item.get("type")
        if kind is not None and kind != "function":
            raise RowError(Reason.BAD_TOOLS, f"unsupported tool type {kind!r} (only 'function')", field=f"{path}.type")
        fn = item.get("function")
        if fn is not None:
            if not isinstance(fn, Mapping):
                raise RowError(Reason.BAD_TOOLS, f"function must be an object, got {type_name(fn)}", field=f"{path}.function")
            tool = dict(item)
            tool.setdefault("type", "function")
            tool = {"type": tool.pop("type"), **tool}
            name_path = f"{path}.function.name"
        else:
            fn = {k: v for k, v in item.items() if k != "type"}
            tool = {"type": "function", "function": fn}
            name_path = f"{path}.name"
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RowError(Reason.BAD_TOOLS, f"a tool needs a non-empty string name, got {name!r}", field=name_path)
        out.append(to_jsonable(tool, path, Reason.BAD_TOOLS))
    return tuple(out) or None
