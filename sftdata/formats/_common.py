"""Small helpers shared by the readers: field access, type checks, error paths."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import Reason, RowError


@contextmanager
def at(prefix: str | None) -> Iterator[None]:
    """Prefix the ``field`` of any :class:`RowError` raised inside the block with ``prefix``."""
    try:
        yield
    except RowError as e:
        if e.field and e.field.startswith("[") and prefix:
            # an index path ("[1].name") joins without a dot: "value[1].name"
            raise RowError(e.reason, e.message, field=prefix + e.field, row=e.row, stage=e.stage) from None
        raise e.with_context(field_prefix=prefix) from None


def join(prefix: str | None, name: str | None) -> str | None:
    """Join two field path pieces with a dot (either may be empty; ``[i]`` joins without one)."""
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def type_name(value: Any) -> str:
    """A JSON-ish name for the type of ``value`` (for error messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def present(row: Mapping, key: str) -> bool:
    """True when ``key`` is in ``row`` with a non-null value (Arrow fills absent keys with null)."""
    return row.get(key) is not None


def require(row: Mapping, key: str, field: str | None = None) -> Any:
    """``row[key]``; ``missing_field`` when the key is absent or null."""
    value = row.get(key)
    if value is None:
        raise RowError(Reason.MISSING_FIELD, f"missing required field {key!r}", field=field or key)
    return value


def expect_str(value: Any, field: str | None, *, what: str = "a string") -> str:
    """``value`` if it is a string, else ``bad_type``."""
    if not isinstance(value, str):
        raise RowError(Reason.BAD_TYPE, f"expected {what}, got {type_name(value)}", field=field)
    return value


def expect_opt_str(value: Any, field: str | None) -> str | None:
    """``value`` if it is a string or null, else ``bad_type``."""
    if value is None:
        return None
    return expect_str(value, field, what="a string or null")


def expect_list(value: Any, field: str | None) -> list | tuple:
    """``value`` if it is a list (JSON array), else ``bad_type``."""
    if not isinstance(value, (list, tuple)):
        raise RowError(Reason.BAD_TYPE, f"expected an array, got {type_name(value)}", field=field)
    return value


def expect_mapping(value: Any, field: str | None, *, what: str = "an object") -> Mapping:
    """``value`` if it is a mapping (JSON object), else ``bad_type``."""
    if not isinstance(value, Mapping):
        raise RowError(Reason.BAD_TYPE, f"expected {what}, got {type_name(value)}", field=field)
    return value


def parse_json_like(text: str) -> Any:
    """Parse ``text`` as JSON, falling back to a Python literal (``"{'a': 1}"``).

    Raises:
        ValueError: neither parser accepts the text.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as json_error:
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"not valid JSON ({json_error.msg} at column {json_error.colno})") from None


def snippet(text: str, limit: int = 80) -> str:
    """``text`` shortened for an error message."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(text)


def to_jsonable(value: Any, field: str | None, reason: Reason) -> Any:
    """``value`` converted to plain JSON types (tuples → lists); ``reason`` error if impossible."""
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as e:
        raise RowError(reason, f"value is not representable as JSON: {e}", field=field) from None


def parse_train(item: Mapping) -> bool | None:
    """The per-message training flag from ``train`` (bool) or ``weight`` (0/1, OpenAI fine-tuning).

    Raises:
        RowError: ``bad_type`` for a non-boolean ``train``, a ``weight`` other than 0/1,
            or ``train`` and ``weight`` that disagree.
    """
    train = item.get("train")
    if train is not None and not isinstance(train, bool):
        raise RowError(Reason.BAD_TYPE, f"train must be a boolean or null, got {type_name(train)}", field="train")
    weight = item.get("weight")
    if weight is None:
        return train
    if not isinstance(weight, (int, float)) or weight not in (0, 1):
        raise RowError(Reason.BAD_TYPE, f"weight must be 0 or 1, got {weight!r}", field="weight")
    from_weight = bool(weight)
    if train is not None and train != from_weight:
        raise RowError(Reason.BAD_TYPE, f"train={train} contradicts weight={weight!r}", field="weight")
    return from_weight


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def split_inline_think(content: str) -> tuple[str | None, str]:
    """Split a ``<think>…</think>`` block at the start of ``content``.

    Returns ``(reasoning, rest)``: ``reasoning`` has leading/trailing newlines stripped
    and ``rest`` leading newlines stripped (as Qwen3/DeepSeek-R1 templates do). When
    ``content`` does not start (after whitespace) with ``<think>``, or the block is not
    closed, returns ``(None, content)`` unchanged.
    """
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return None, content
    end = stripped.find(THINK_CLOSE)
    if end < 0:
        return None, content
    reasoning = stripped[len(THINK_OPEN) : end].strip("\n")
    rest = stripped[end + len(THINK_CLOSE) :].lstrip("\n")
    return reasoning, rest
