"""Strict JSON for input rows, and a streaming reader for top-level JSON arrays.

Python's :mod:`json` keeps the last value of a duplicated key (``{"role": "user", "role":
"assistant"}`` becomes an assistant turn) and accepts lone UTF-16 surrogate escapes
(``"\\ud800"``, common in logs cut in the middle of an emoji) that no tokenizer can encode.
:func:`parse_row` turns both into per-row errors with the field path:
``duplicate_key`` and ``invalid_unicode``.

:func:`iter_array_items` yields the text of each item of a top-level JSON array without
holding the file in memory (the items are parsed again, strictly, where they are encoded).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, NamedTuple, TextIO

from ..errors import Reason, RowError
from ._common import type_name

#: A ``\\uD800``-``\\uDFFF`` escape in JSON text (half of a surrogate pair, or a lone one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_SURROGATE_CHAR = re.compile("[\ud800-\udfff]")


class RawRow(NamedTuple):
    """One input row as JSON text, not parsed yet; ``where`` names it (``file:line``)."""

    text: str
    where: str


class _DupDict(dict):
    """A JSON object that had a duplicated key (``dup`` is the first such key)."""

    dup: str = ""


def loads_marking(text: str) -> tuple[Any, bool]:
    """``json.loads`` keeping track of duplicated keys: ``(value, saw_duplicate)``."""
    seen = [False]

    def hook(pairs: list) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            seen[0] = True
            d = _DupDict(d)
            keys: set = set()
            for k, _ in pairs:
                if k in keys:
                    d.dup = k
                    break
                keys.add(k)
        return d

    return json.loads(text, object_pairs_hook=hook), seen[0]


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _find(value: Any, path: str, dup: bool, surrogate: bool) -> tuple[Reason, str, str] | None:
    """The first duplicated key or lone surrogate in ``value``: ``(reason, path, detail)``."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, dict):
            if dup and isinstance(v, _DupDict):
                return Reason.DUPLICATE_KEY, _join(p, v.dup), v.dup
            for k, item in reversed(list(v.items())):
                if surrogate and isinstance(k, str) and _SURROGATE_CHAR.search(k):
                    return Reason.INVALID_UNICODE, _join(p, k), k
                stack.append((item, _join(p, k)))
        elif isinstance(v, list):
            stack.extend((item, _join(p, i)) for i, item in reversed(list(enumerate(v))))
        elif surrogate and isinstance(v, str) and _SURROGATE_CHAR.search(v):
            return Reason.INVALID_UNICODE, p, v
    return None


def row_problem(value: Any, *, dup: bool = True, surrogate: bool = True, where: str = "") -> RowError | None:
    """A ``duplicate_key`` / ``invalid_unicode`` error for the first problem in ``value``, or ``None``."""
    found = _find(value, "", dup, surrogate)
    if found is None:
        return None
    reason, path, detail = found
    prefix = f"{where}: " if where else ""
    if reason is Reason.DUPLICATE_KEY:
        msg = f"{prefix}key {detail!r} appears twice in one JSON object (a JSON reader would silently keep only the last value)"
    else:
        bad = _SURROGATE_CHAR.search(detail)
        pos = bad.start() if bad else 0
        msg = (
            f"{prefix}lone UTF-16 surrogate \\u{ord(detail[pos]):04x} at character {pos} "
            "(text cut inside a character, e.g. half an emoji); no tokenizer can encode it"
        )
    return RowError(reason, msg, field=path or None, stage="read")


def may_hold_surrogate(text: str) -> bool:
    """True when the JSON ``text`` may decode to a lone surrogate (an escape, or one in the text)."""
    return _SURROGATE_ESCAPE.search(text) is not None or has_lone_surrogate(text)


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` (a str) contains a surrogate code point (C-speed check)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_row(text: str, where: str) -> dict:
    """Parse one row's JSON text strictly.

    Args:
        text: the JSON text of the row.
        where: its location for messages (``data.jsonl:7``).

    Returns:
        The row (a dict).

    Raises:
        RowError: with ``stage="read"``: ``malformed_json`` (message gives the line and
            column), ``bad_type`` (not an object), ``duplicate_key`` or ``invalid_unicode``
            (with the field path).
    """
    try:
        value, dup = loads_marking(text)
    except RecursionError:
        raise RowError(Reason.MALFORMED_JSON, f"{where}: JSON nested too deeply", stage="read") from None
    except json.JSONDecodeError as e:
        shown = text.strip()
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        pos = f"line {e.lineno} column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
        raise RowError(Reason.MALFORMED_JSON, f"{where}: invalid JSON ({e.msg} at {pos}): {shown!r}", stage="read") from None
    if not isinstance(value, dict):
        raise RowError(Reason.BAD_TYPE, f"{where}: a row must be a JSON object, got {type_name(value)}", stage="read")
    surrogate = may_hold_surrogate(text)
    if dup or surrogate:
        err = row_problem(value, dup=dup, surrogate=surrogate, where=where)
        if err is not None:
            raise err
    if isinstance(value, _DupDict):  # only reachable if the walk found nothing (cannot happen)
        value = dict(value)
    return value


_WS = re.compile(r"[ \t\n\r]*")
_CHUNK = 1 << 20  # characters read at a time
_MAX_ITEM = 1 << 28  # characters buffered for one item before a syntax error is reported


class ArrayItem(NamedTuple):
    """One item of a top-level JSON array: its text, 0-based position and 1-based line."""

    text: str
    index: int
    line: int


class ArrayError(Exception):
    """The array cannot be read further (a syntax error); ``line``/``col`` locate it."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.line, self.col = line, col


class _ArrayReader:
    """A read buffer over ``fh`` with the line and column of every position (for errors)."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.buf = ""
        self.pos = 0
        self.line_base, self.col_base = 1, 1  # line and column of buf[0]
        self.eof = False

    def fill(self) -> bool:
        """Read one more chunk (dropping what lies before ``pos``); False at the end of the file."""
        if self.eof:
            return False
        chunk = self.fh.read(max(_CHUNK, len(self.buf)))
        if not chunk:
            self.eof = True
            return False
        self.line_base, self.col_base = self.locate(self.pos)
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def locate(self, p: int) -> tuple[int, int]:
        """``(line, column)`` (1-based) of buffer position ``p``."""
        newlines = self.buf.count("\n", 0, p)
        if not newlines:
            return self.line_base, self.col_base + p
        return self.line_base + newlines, p - self.buf.rfind("\n", 0, p)

    def skip_ws(self) -> str:
        """Skip whitespace, reading on as needed; the next character, or ``""`` at the end."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def where(self) -> tuple[int, int]:
        """``(line, column)`` of the current position."""
        return self.locate(self.pos)

    def item_end(self, decoder: json.JSONDecoder) -> int:
        """End (buffer position) of the JSON value starting at ``pos``, reading on as needed.

        Raises:
            ArrayError: the value is not valid JSON (or nested too deeply).
        """
        while True:
            try:
                _, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # the item may just be cut by the end of the buffer: read on (up to a bound)
                if len(self.buf) - self.pos < _MAX_ITEM and self.fill():
                    continue
                raise ArrayError(f"{e.msg}", *self.locate(e.pos)) from None
            except RecursionError:
                raise ArrayError("JSON nested too deeply", *self.where()) from None
            # a number or literal cut by the chunk boundary decodes too early: read on
            if end >= len(self.buf) and not self.eof and self.fill():
                continue
            return end


def iter_array_items(fh: TextIO, first_char_consumed: bool = False) -> Iterator[ArrayItem]:
    """Yield the items of the top-level JSON array read from ``fh``, one at a time.

    Memory holds one item (and one read chunk) at a time. The structure (``[``, ``,``,
    ``]``) is checked; each item's text is located with :meth:`json.JSONDecoder.raw_decode`.

    Raises:
        ArrayError: a syntax error; items before it have been yielded.
    """
    decoder = json.JSONDecoder()
    r = _ArrayReader(fh)
    if not first_char_consumed:
        if r.skip_ws() != "[":
            raise ArrayError("expected '['", *r.where())
        r.pos += 1
    index = 0
    if r.skip_ws() == "]":
        return
    while True:
        ch = r.skip_ws()
        if ch == "":
            raise ArrayError("unexpected end of file inside the array", *r.where())
        end = r.item_end(decoder)
        line, _ = r.where()
        yield ArrayItem(r.buf[r.pos:end], index, line)
        index += 1
        r.pos = end
        ch = r.skip_ws()
        if ch == ",":
            r.pos += 1
            continue
        if ch == "]":
            r.pos += 1
            if r.skip_ws() != "":
                raise ArrayError("extra data after the closing ']'", *r.where())
            return
        if ch == "":
            raise ArrayError("unexpected end of file: the array is not closed", *r.where())
        raise ArrayError(f"expected ',' or ']' after item {index - 1}, got {ch!r}", *r.where())
