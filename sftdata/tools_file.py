"""Tool schemas stored apart from the rows: the one reader of a tools file, for every entry point.

``prepare(..., tools_file=FILE)``, ``sftdata prepare --tools-file FILE`` and a pipeline config's
``tools_file:`` all read the file with :func:`read_tools_file`, so they accept the same forms:

* a JSON list of tool schemas, given to every row;
* ``{"tools": [...]}``, the same list wrapped in an object (without a key field; other keys
  are allowed when none holds a list);
* an object mapping a key to such a list, chosen per row by the value of the row field
  ``key_field`` (``--tools-key``; ``prepare`` only).

The file may be gzipped; it is parsed strictly (UTF-8 JSON), and every list is checked with
:func:`sftdata.formats.normalize_tools` before any row is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, Reason, RowError


def read_tools_file(path: str | Path, key_field: str | None = None) -> list | dict[str, list]:
    """Read and check a tools file, returning the tool lists as the file gives them.

    Args:
        path: the JSON file (``.gz`` read transparently).
        key_field: the row field that chooses a list from a mapping (``--tools-key``), or
            ``None`` for one list for every row.

    Returns:
        Without ``key_field``: the list of tool schemas (a list of JSON values, as parsed;
        ``{"tools": [...]}`` gives its list). With ``key_field``: a dict from key (``str``) to
        such a list.

    Raises:
        ConfigError: a missing or unreadable file, invalid JSON, an invalid schema (with its
            path inside the file), a mapping without ``key_field``, a list with one, or any
            other JSON value.
    """
    from .formats import normalize_tools
    from .formats import read_text_file

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"tools file {p} does not exist")
    try:
        data = json.loads(read_text_file(p))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"tools file {p}: not valid JSON ({e})") from None
    if not key_field and isinstance(data, dict) and _wrapped_list(data):
        data = data["tools"]  # {"tools": [...]}: one list, wrapped

    def check(value: Any, where: str) -> None:
        try:
            normalize_tools(value, where)
        except RowError as e:
            raise ConfigError(f"tools file {p}: {e.message} at {e.field}") from None

    if isinstance(data, list):
        if key_field:
            raise ConfigError(f"tools file {p} is one list of tools: --tools-key {key_field} has nothing to choose from")
        check(data, "tools")
        return data
    if isinstance(data, dict):
        if not key_field:
            raise ConfigError(f"tools file {p} maps keys {sorted(data)[:5]} to tool lists: pass --tools-key FIELD (the row field holding the key)")
        for k, v in data.items():
            check(v, str(k))
        return {str(k): v for k, v in data.items()}
    raise ConfigError(f"tools file {p}: expected a JSON list of tool schemas, {{\"tools\": [...]}}, or an object of such lists")


def _wrapped_list(data: dict) -> bool:
    """``{"tools": [...]}`` (other keys allowed when none of them holds a list: metadata, not
    another tool list that a key field would choose)."""
    return isinstance(data.get("tools"), list) and not any(isinstance(v, list) for k, v in data.items() if k != "tools")


@dataclass(frozen=True)
class ToolsSpec:
    """Tool schemas stored apart from the rows (``--tools-file``), attached to every row.

    Attributes:
        tools: the one tool list for every row (``None`` when ``by_key`` is used).
        by_key: tool lists chosen by the value of the row field ``key_field``.
        key_field: the row field whose value picks the list in ``by_key``.
        target: the row key the tools are written to (``tools`` or ``--tools-field``).
        origin: the file, for messages.
    """

    tools: tuple | None = None
    by_key: Mapping[str, tuple] | None = None
    key_field: str | None = None
    target: str = "tools"
    origin: str = ""

    def attach(self, row: dict) -> dict:
        """``row`` with the tools set (a new dict; ``row`` is not changed).

        Raises:
            RowError: ``bad_tools`` when the row has tools of its own, or its key has no
                entry in the file; ``missing_field`` when the key field is absent.
        """
        own = row.get(self.target)
        if own not in (None, "", [], "[]"):
            raise RowError(Reason.BAD_TOOLS, f"the row has its own tools and {self.origin} gives tools too: keep one", field=self.target, stage="read")
        if self.by_key is None:
            tools = self.tools
        else:
            key = row.get(self.key_field)
            if key is None:
                raise RowError(Reason.MISSING_FIELD, f"no {self.key_field!r} field to choose the tools of {self.origin}", field=self.key_field, stage="read")
            tools = self.by_key.get(str(key))
            if tools is None:
                raise RowError(
                    Reason.BAD_TOOLS, f"{self.origin} has no tools for {self.key_field}={key!r} (keys: {sorted(self.by_key)[:10]})", field=self.key_field, stage="read"
                )
        out = dict(row)
        out[self.target] = [dict(t) for t in tools] if tools else None
        return out


def load_tools_file(path: str | Path, key_field: str | None = None, tools_field: str | None = None) -> ToolsSpec:
    """Read ``--tools-file`` (:func:`read_tools_file`) into a :class:`ToolsSpec` of normalised tools.

    Args:
        path: the JSON file.
        key_field: for a mapping, the row field whose value selects the list.
        tools_field: the row key to write the tools to (default ``tools``).

    Raises:
        ConfigError: as :func:`read_tools_file`.
    """
    from .formats import normalize_tools

    data = read_tools_file(path, key_field)
    target, origin = tools_field or "tools", str(Path(path))
    if isinstance(data, list):
        return ToolsSpec(tools=normalize_tools(data, "tools") or (), target=target, origin=origin)
    by_key = {k: normalize_tools(v, k) or () for k, v in data.items()}
    return ToolsSpec(by_key=by_key, key_field=key_field, target=target, origin=origin)
