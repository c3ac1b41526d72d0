"""Reading input rows from files, ``datasets`` objects and lists, with stable row indices.

JSON and JSON Lines are read with the stdlib :mod:`json` module, never with
``datasets.load_dataset("json")``: Arrow unifies structs that differ between rows by
filling missing keys with null, so tool-call arguments would gain ``"cmd": null`` keys.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import ConfigError, Reason, RowError
from ..schema import Conversation, TextExample
from ._common import type_name
from .normalize import check_format, normalize

#: What :func:`iter_rows` yields: ``(row_index, row_dict)`` or ``(row_index, RowError)``.
RowItem = tuple[int, "dict | RowError"]

_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
_JSON_SUFFIXES = (".json", ".json.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: Keys that are row fields, never a wrapper around the row list (see ``_rows_of_object``).
_ROW_KEYS = frozenset({"messages", "conversations", "traj", "prompt", "completion", "tools", "history", "text"})


def _read_error(reason: Reason, message: str, index: int) -> RowError:
    return RowError(reason, message, row=index, stage="read")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _iter_jsonl(path: Path, start: int) -> Iterator[RowItem]:
    index = start
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue  # blank lines are not rows
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield index, _read_error(Reason.MALFORMED_JSON, f"{path}:{lineno}: not valid UTF-8 ({e.reason})", index)
            except RecursionError:
                yield index, _read_error(Reason.MALFORMED_JSON, f"{path}:{lineno}: JSON nested too deeply", index)
            except json.JSONDecodeError as e:
                text = raw.decode("utf-8", "replace").strip()
                shown = text if len(text) <= 60 else text[:59] + "…"
                yield index, _read_error(
                    Reason.MALFORMED_JSON,
                    f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}): {shown!r}",
                    index,
                )
            else:
                if isinstance(row, dict):
                    yield index, row
                else:
                    yield index, _read_error(
                        Reason.BAD_TYPE, f"{path}:{lineno}: a row must be a JSON object, got {type_name(row)}", index
                    )
            index += 1


def _rows_of_object(obj: dict, path: Path) -> list:
    lists = [k for k, v in obj.items() if isinstance(v, list)]
    if len(lists) == 1 and lists[0] not in _ROW_KEYS:
        return obj[lists[0]]
    raise ConfigError(
        f"{path}: the top-level JSON object must hold exactly one list of rows "
        f"(lists found under {lists}; a single row object is not a dataset: use .jsonl)"
    )


def _iter_json(path: Path, start: int) -> Iterator[RowItem]:
    with _open_binary(path) as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        yield start, _read_error(Reason.MALFORMED_JSON, f"{path}: not valid UTF-8 at byte {e.start}; no row read", start)
        return
    try:
        top = json.loads(text)
    except RecursionError:
        yield start, _read_error(Reason.MALFORMED_JSON, f"{path}: JSON nested too deeply; no row read", start)
        return
    except json.JSONDecodeError as e:
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            looks_jsonl = isinstance(json.loads(first), dict)
        except (json.JSONDecodeError, RecursionError):
            looks_jsonl = False
        if looks_jsonl:  # a JSON Lines file named .json: read it line by line
            yield from _iter_jsonl(path, start)
            return
        yield start, _read_error(
            Reason.MALFORMED_JSON,
            f"{path}:{e.lineno}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
            "the file is one JSON document, so no row of it could be read",
            start,
        )
        return
    rows = _rows_of_object(top, path) if isinstance(top, dict) else top
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a JSON array of rows or an object holding one, got {type_name(top)}")
    for k, row in enumerate(rows):
        index = start + k
        if isinstance(row, dict):
            yield index, row
        else:
            yield index, _read_error(Reason.BAD_TYPE, f"{path}: item {k} is not a JSON object ({type_name(row)})", index)


def _iter_parquet(path: Path, start: int) -> Iterator[RowItem]:
    import pyarrow.parquet as pq

    index = start
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _iter_dataset(ds: Any, start: int) -> Iterator[RowItem]:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise ConfigError(f"a DatasetDict with splits {list(ds)}: pass one split (e.g. ds['train'] or <dir>/train)")
        ds = next(iter(ds.values()))
    if isinstance(ds, datasets.Dataset):
        ds = ds.with_format(None)
        index = start
        for batch in ds.iter(batch_size=1000):
            columns = list(batch)
            n = len(batch[columns[0]]) if columns else 0
            for i in range(n):
                yield index, {c: batch[c][i] for c in columns}
                index += 1
        return
    yield from _iter_objects(ds, start, "dataset")


def _iter_objects(items: Iterable, start: int, what: str) -> Iterator[RowItem]:
    index = start
    for k, row in enumerate(items):
        if isinstance(row, Mapping):
            yield index, dict(row)
        elif isinstance(row, RowError):  # a wrapped reader's unreadable row, passed on as is
            yield index, RowError(row.reason, row.message, field=row.field, row=index, stage=row.stage or "read")
        else:
            yield index, _read_error(Reason.BAD_TYPE, f"{what} item {k} is not an object ({type_name(row)})", index)
        index += 1


def iter_rows(source: Any, *, start_index: int = 0) -> Iterator[RowItem]:
    """Yield the rows of one source with contiguous 0-based indices.

    Args:
        source: a path (``str``/``Path``) to a ``.jsonl``/``.ndjson`` file, a ``.json``
            file (a top-level array, an object holding exactly one list of rows, or JSON
            Lines misnamed ``.json``), a ``.parquet`` file (``.gz`` accepted for JSON), a
            directory written by ``datasets.save_to_disk``; or an in-memory
            ``datasets.Dataset`` / single-split ``DatasetDict`` / ``IterableDataset``, or a
            list (any iterable) of dicts.
        start_index: index of the first row (to number rows across several sources).

    Yields:
        ``(row_index, row_dict)``, or ``(row_index, RowError)`` with ``stage="read"`` for
        a row that cannot be read: ``malformed_json`` (message gives file and line) or
        ``bad_type`` (a row that is not an object). Every row gets an index; blank lines
        in JSON Lines are not rows.

    Raises:
        ConfigError: the path does not exist, has an unsupported extension, is a directory
            not written by ``save_to_disk``, or is a JSON object without a single row list;
            a multi-split ``DatasetDict``.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name.lower()
        if path.is_dir():
            import datasets

            try:
                ds = datasets.load_from_disk(str(path))
            except FileNotFoundError as e:
                raise ConfigError(f"{path}: not a directory written by datasets' save_to_disk ({e})") from None
            yield from _iter_dataset(ds, start_index)
        elif not path.exists():
            raise ConfigError(f"input not found: {path}")
        elif name.endswith(_JSONL_SUFFIXES):
            yield from _iter_jsonl(path, start_index)
        elif name.endswith(_JSON_SUFFIXES):
            yield from _iter_json(path, start_index)
        elif name.endswith(_PARQUET_SUFFIXES):
            yield from _iter_parquet(path, start_index)
        else:
            raise ConfigError(f"{path}: unsupported input type; expected .jsonl, .json, .parquet or a save_to_disk directory")
        return
    if isinstance(source, Mapping):
        raise ConfigError("a single row (a mapping) is not a source: pass a list of rows")
    if type(source).__module__.split(".")[0] == "datasets":
        yield from _iter_dataset(source, start_index)
        return
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        yield from _iter_objects(source, start_index, "input")
        return
    raise ConfigError(f"unsupported source of type {type(source).__name__}")


def iter_inputs(sources: Any, *, start_index: int = 0) -> Iterator[RowItem]:
    """Chain several sources with one global, contiguous row index.

    Args:
        sources: a list of sources (see :func:`iter_rows`), or one source: a path, a
            ``datasets`` object, or a list of row dicts.
        start_index: index of the first row.

    Yields:
        ``(row_index, row_dict | RowError)`` as :func:`iter_rows`, numbered across sources.

    Raises:
        ConfigError: as :func:`iter_rows`.
    """
    if isinstance(sources, (str, os.PathLike)) or type(sources).__module__.split(".")[0] == "datasets":
        sources = [sources]
    elif isinstance(sources, (list, tuple)) and sources and all(isinstance(s, Mapping) for s in sources):
        sources = [sources]  # a list of rows is one source (a row is never a source)
    next_index = start_index
    for source in sources:
        for index, item in iter_rows(source, start_index=next_index):
            yield index, item
            next_index = index + 1


def iter_examples(
    sources: Any,
    fmt: str | None = None,
    *,
    messages_field: str | None = None,
    tools_field: str | None = None,
    start_index: int = 0,
) -> Iterator[tuple[int, Conversation | TextExample | RowError]]:
    """Read and normalise: :func:`iter_inputs` followed by :func:`normalize` on each row.

    Args:
        sources: as :func:`iter_inputs`.
        fmt, messages_field, tools_field: as :func:`normalize`.
        start_index: index of the first row.

    Yields:
        ``(row_index, example)`` or ``(row_index, RowError)`` with ``row`` and ``stage``
        (``read`` or ``normalize``) filled in. Nothing is raised for a bad row.

    Raises:
        ConfigError: unknown ``fmt`` or a bad source (see :func:`iter_rows`).
    """
    check_format(fmt)
    for index, item in iter_inputs(sources, start_index=start_index):
        if isinstance(item, RowError):
            yield index, item
            continue
        try:
            yield index, normalize(item, fmt, messages_field=messages_field, tools_field=tools_field)
        except RowError as e:
            yield index, e.with_context(row=index, stage="normalize")
