"""Hypothesis strategies for tools: function names, OpenAI-style schemas, call arguments and
tool calls (re-exported by :mod:`sftdata.testing.strategies`, which builds conversations from
them). Needs ``hypothesis`` (the ``sftdata[test]`` extra)."""

from __future__ import annotations

import functools
from typing import Any, Iterable

from hypothesis import strategies as st

from ..schema import ToolCall
from .text_strategies import json_values, texts

__all__ = ["arguments", "tool_calls", "tool_names", "tool_schemas"]

_LOWER_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
_ID_CHARS = st.from_regex(r"[A-Za-z0-9]{4,12}", fullmatch=True)
_TOOL_NAMES = st.sampled_from(
    ("get_weather", "search", "run_python", "read_file", "calculator", "lookup_user", "send_email", "f")
) | st.from_regex(r"[a-z][a-z0-9_]{0,23}", fullmatch=True)


def tool_names() -> st.SearchStrategy[str]:
    """Function names: identifiers like ``get_weather`` (letters, digits, underscores; 1-24 chars)."""
    return _TOOL_NAMES


def arguments(
    param_names: Iterable[str] = (), *, text: st.SearchStrategy[str] | None = None, max_size: int = 4
) -> st.SearchStrategy[dict[str, Any]]:
    """Tool-call arguments: a ``dict`` (possibly empty) of JSON-able values.

    Keys are drawn from ``param_names`` when given (the schema's properties), plus arbitrary
    identifier keys otherwise.
    """
    return _arguments(tuple(param_names), text, max_size)


@functools.lru_cache(maxsize=1024)
def _arguments(names: tuple[str, ...], text: st.SearchStrategy[str] | None, max_size: int):
    key = st.sampled_from(names) if names else _LOWER_IDENT
    return st.dictionaries(key, json_values(text=text), max_size=max_size)


@st.composite
def tool_schemas(
    draw, *, min_size: int = 1, max_size: int = 3, text: st.SearchStrategy[str] | None = None
) -> tuple[dict, ...]:
    """A tuple of OpenAI-style function schemas with distinct names.

    Each is ``{"type": "function", "function": {"name", "description", "parameters": {"type":
    "object", "properties": {...}, "required": [...]}}}``.
    """
    text = text if text is not None else texts(max_pieces=6, unicode=False)
    names = draw(st.lists(tool_names(), min_size=min_size, max_size=max_size, unique=True))
    out = []
    for name in names:
        props = draw(
            st.dictionaries(
                _LOWER_IDENT,
                st.fixed_dictionaries(
                    {"type": st.sampled_from(("string", "integer", "number", "boolean", "array", "object"))},
                    optional={"description": text},
                ),
                max_size=4,
            )
        )
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
        out.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": draw(text),
                    "parameters": {"type": "object", "properties": props, "required": required},
                },
            }
        )
    return tuple(out)


def _schema_params(schema: dict) -> tuple[str, ...]:
    return tuple(schema.get("function", {}).get("parameters", {}).get("properties", {}))


@st.composite
def tool_calls(
    draw,
    schemas: tuple[dict, ...] | None = None,
    *,
    min_size: int = 1,
    max_size: int = 3,
    ids: bool = True,
    id_prefix: str = "call_",
    id_start: int = 0,
    text: st.SearchStrategy[str] | None = None,
    id_length: int | None = None,
) -> tuple[ToolCall, ...]:
    """Tool calls (a tuple of :class:`ToolCall`) for functions of ``schemas``.

    Args:
        schemas: the available tool schemas (default: drawn with :func:`tool_schemas`).
        min_size, max_size: number of calls (``> 1`` = parallel calls; a name may repeat).
        ids: give each call an id (``id_prefix`` + random alphanumerics + ``id_start`` + its
            index, so ids are unique within the tuple); else ``id=None``.
        id_start: offset of the numeric suffix (to keep ids unique across messages).
        text: the strategy for string argument values.
        id_length: when set, every id is exactly this many ASCII letters and digits (as
            Mistral's templates demand, e.g. 9): random characters followed by the call's
            number (``id_start`` + index) in base 36, so ids stay unique; ``id_prefix`` is unused.
    """
    schemas = schemas if schemas is not None else draw(tool_schemas())
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    calls = []
    for i in range(n):
        schema = draw(st.sampled_from(schemas))
        args = draw(arguments(_schema_params(schema), text=text))
        call_id = None
        if ids and id_length is not None:
            call_id = _fixed_length_id(draw, id_length, id_start + i)
        elif ids:
            call_id = id_prefix + draw(_ID_CHARS) + f"_{id_start + i}"
        calls.append(ToolCall(schema["function"]["name"], args, id=call_id))
    return tuple(calls)


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _fixed_length_id(draw, length: int, number: int) -> str:
    """``length`` ASCII letters/digits: random characters, then ``number`` in base 36 (unique per number)."""
    if length < 1:
        raise ValueError(f"id_length must be >= 1, got {length}")
    digits, rest = "", number
    while True:
        rest, r = divmod(rest, 36)
        digits = _BASE36[r] + digits
        if rest == 0:
            break
    digits = digits.rjust(min(3, length), "0")
    if len(digits) > length:
        raise ValueError(f"call number {number} does not fit in {length}-character ids")
    head = draw(st.text(_ID_ALPHABET, min_size=length - len(digits), max_size=length - len(digits)))
    return head + digits
