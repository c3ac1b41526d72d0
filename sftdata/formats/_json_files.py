"""Reading JSON and JSON Lines files lazily: one :class:`~sftdata.formats._json.RawRow` per
row, parsed later (strictly) where the row is encoded. See :mod:`sftdata.formats.reader`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable, Generator

from ..errors import Reason, RowError
from ._json import ArrayError, RawRow, iter_array_items, loads_marking, may_hold_surrogate, row_problem

#: ``(row_index, RawRow | dict | RowError)``.
RawItem = tuple[int, "RawRow | dict | RowError"]
#: ``keep(row_index) -> bool``: rows for which it is false are skipped (their index is used).
Keep = Callable[[int], bool] | None

#: File name endings (lower case) of the files read as JSON Lines, JSON, SWE-agent ``.traj``
#: (one JSON object per file) and Parquet; ``DATA_SUFFIXES``: all of them (what a directory
#: input reads).
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
TRAJ_SUFFIXES = (".traj",)
PARQUET_SUFFIXES = (".parquet", ".pq")
DATA_SUFFIXES = JSONL_SUFFIXES + JSON_SUFFIXES + TRAJ_SUFFIXES + PARQUET_SUFFIXES
#: Keys of a row (never of a wrapper around the row list); an object holding one is one row.
_ROW_KEYS = frozenset(
    {"messages", "conversations", "traj", "prompt", "completion", "tools", "history", "text", "trajectory", "answer_generation"}
)

def read_error(reason: Reason, message: str, index: int) -> RowError:
    """The :class:`~sftdata.errors.RowError` of row ``index`` that could not be read (stage ``read``)."""
    return RowError(reason, message, row=index, stage="read")


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def iter_jsonl(path: Path, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    """A JSON Lines file (``.gz`` too): one :class:`RawRow` per non-blank line, numbered from
    ``start``; lines of skipped rows (``keep``) are not even decoded. A line that is not UTF-8
    yields a ``malformed_json`` :class:`~sftdata.errors.RowError`. Returns the next row index."""
    index = start
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue  # blank lines are not rows
            if keep is None or keep(index):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    yield index, read_error(Reason.MALFORMED_JSON, f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})", index)
                else:
                    yield index, RawRow(text, f"{path}:{lineno}")
            index += 1
    return index


def _is_message(text: str) -> bool:
    """True for the JSON text of a chat message (an object with a string ``role``, no row keys)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("role"), str) and not (_ROW_KEYS & value.keys())


def _wrapped_rows(obj: dict) -> list | None:
    """The row list of ``{"version": 1, "data": [rows]}``; ``None`` when ``obj`` is one row."""
    if _ROW_KEYS & obj.keys():
        return None
    lists = [k for k, v in obj.items() if isinstance(v, list)]
    if len(lists) == 1 and all(isinstance(r, dict) for r in obj[lists[0]]):
        return obj[lists[0]]
    return None


def _iter_json_object(path: Path, text: str, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    """A file holding one JSON object: one row (a conversation file), or a wrapper of rows."""
    try:
        top, dup = loads_marking(text)
    except RecursionError:
        yield start, read_error(Reason.MALFORMED_JSON, f"{path}: JSON nested too deeply; no row read", start)
        return start + 1
    except json.JSONDecodeError as e:
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            looks_jsonl = isinstance(json.loads(first), dict) and e.msg == "Extra data"
        except (json.JSONDecodeError, RecursionError):
            looks_jsonl = False
        if looks_jsonl:  # a JSON Lines file named .json: read it line by line
            return (yield from iter_jsonl(path, start, keep))
        yield start, read_error(
            Reason.MALFORMED_JSON,
            f"{path}:{e.lineno}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            "the file is one JSON document, so no row of it could be read",
            start,
        )
        return start + 1
    rows = _wrapped_rows(top)
    if rows is None:  # one row: parsed again, strictly, where it is encoded
        if keep is None or keep(start):
            yield start, RawRow(text, str(path))
        return start + 1
    surrogate = may_hold_surrogate(text)
    for k, row in enumerate(rows):
        index = start + k
        if keep is None or keep(index):
            err = row_problem(row, dup=dup, surrogate=surrogate, where=f"{path}: item {k}") if dup or surrogate else None
            yield index, err.with_context(row=index) if err is not None else dict(row)
    return start + len(rows)


def iter_json(path: Path, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    """A ``.json`` / ``.traj`` file: a top-level array (streamed), one object, or JSON Lines;
    rows numbered from ``start``, unreadable content yielded as ``RowError``s. Returns the next
    row index."""
    try:
        fh = _open_text(path)
        with fh:
            head = fh.read(1)
            while head and head.isspace():
                head = fh.read(1)
            if head == "[":
                return (yield from _iter_json_array(path, fh, start, keep))
            rest = head + fh.read()
    except UnicodeDecodeError as e:
        yield start, read_error(Reason.MALFORMED_JSON, f"{path}: not valid UTF-8 ({e.reason}); reading stopped there", start)
        return start + 1
    if head == "{":
        return (yield from _iter_json_object(path, rest, start, keep))
    if not head:
        return start  # an empty file has no rows
    yield start, read_error(Reason.MALFORMED_JSON, f"{path}: expected a JSON array or object, got {head!r}; no row read", start)
    return start + 1


def _iter_json_array(path: Path, fh, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    items = iter_array_items(fh, first_char_consumed=True)
    index = start
    try:
        for item in items:
            if item.index == 0 and _is_message(item.text):
                # a top-level array of messages is ONE conversation (mini-swe-agent's message dumps)
                texts = [item.text] + [it.text for it in items]
                if keep is None or keep(start):
                    yield start, RawRow('{"messages": [' + ",".join(texts) + "]}", f"{path} (a JSON array of messages: one conversation)")
                return start + 1
            if keep is None or keep(index):
                yield index, RawRow(item.text, f"{path}: item {item.index} (line {item.line})")
            index += 1
    except ArrayError as e:
        yield index, read_error(
            Reason.MALFORMED_JSON,
            f"{path}:{e.line}: invalid JSON ({e} at line {e.line} column {e.col}); the items from here on could not be read",
            index,
        )
        return index + 1
    except UnicodeDecodeError as e:
        yield index, read_error(Reason.MALFORMED_JSON, f"{path}: not valid UTF-8 ({e.reason}); reading stopped there", index)
        return index + 1
    return index




def read_text_file(path: Path) -> str:
    """The text of a (possibly gzipped) UTF-8 file (for ``--tools-file``)."""
    with _open_text(path) as fh:
        return fh.read()
