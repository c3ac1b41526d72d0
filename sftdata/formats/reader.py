"""Reading input rows from files, directories, ``datasets`` objects and iterables, lazily,
with stable row indices.

JSON and JSON Lines are read with the stdlib :mod:`json` module, never with
``datasets.load_dataset("json")``: Arrow unifies structs that differ between rows by
filling missing keys with null, so tool-call arguments would gain ``"cmd": null`` keys.

Two levels:

* :func:`iter_raw` / :func:`iter_raw_inputs` yield each row *unparsed* where the source is
  text (a :class:`~sftdata.formats._json.RawRow`: one JSON Lines line, one item of a JSON
  array, one conversation file), so parsing can happen in the worker processes of
  :func:`sftdata.prepare`; rows of parquet / ``datasets`` / Python sources come as dicts.
  Nothing is held beyond the current row (and one parquet batch).
* :func:`iter_rows` / :func:`iter_inputs` parse them (strictly: duplicated keys and lone
  surrogates are per-row errors, see :func:`~sftdata.formats._json.parse_row`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Generator, Iterator

from ..errors import ConfigError, Reason, RowError
from ..schema import Conversation, TextExample
from ._common import type_name
from ._json import RawRow, parse_row
from ._json_files import Keep, RawItem, DATA_SUFFIXES, JSON_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, TRAJ_SUFFIXES, iter_json, iter_jsonl, read_error
from .hub import is_save_to_disk_dir
from .normalize import check_format, normalize

#: What :func:`iter_rows` yields: ``(row_index, row_dict)`` or ``(row_index, RowError)``.
RowItem = tuple[int, "dict | RowError"]
#: What :func:`iter_raw` yields: :data:`~sftdata.formats._json_files.RawItem`; ``Keep``: a
#: row filter (both defined with the file readers).

#: Row keys that hold tool schemas; stripped of Arrow's null-filled keys (see ``_arrow_row``).
_ARROW_TOOL_KEYS = ("tools", "functions")


def _strip_nulls(value: Any) -> Any:
    """Drop null-valued keys of every object inside ``value`` (Arrow struct unification)."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _arrow_row(row: dict) -> dict:
    """A row read from Arrow: tool schemas stored as structs lose the keys Arrow filled with null.

    Arrow gives every struct in a column the union of all keys, missing ones as null, so a
    tool without ``enum`` gets ``"enum": null`` and the template would render it. JSON
    Schema has no use for null-valued keywords, so they are removed from ``tools`` and
    ``functions``. Tool *arguments* cannot be repaired that way (a null may be real): a
    source that stores them as structs gets an :class:`ArrowArgumentsWarning`.
    """
    for key in _ARROW_TOOL_KEYS:
        if isinstance(row.get(key), list):
            row[key] = _strip_nulls(row[key])
    return row


class ArrowArgumentsWarning(UserWarning):
    """Tool-call arguments stored as an Arrow struct: keys a row did not have read back as null."""


def struct_argument_fields(schema: Any) -> list[str]:
    """Field paths (``messages[].tool_calls[].function.arguments``) of a ``pyarrow.Schema``
    whose type is a struct named ``arguments``.

    Arrow gives a struct column the union of every row's keys and fills the missing ones with
    null, so arguments stored that way can gain ``"key": null`` entries that the trace never
    had (and that are indistinguishable from real nulls). Lists and structs are searched at
    any depth.
    """
    import pyarrow as pa

    found: list[str] = []

    def walk(t: Any, path: str, name: str) -> None:
        if pa.types.is_struct(t):
            if name == "arguments":
                found.append(path)
                return
            for f in t:
                walk(f.type, f"{path}.{f.name}" if path else f.name, f.name)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            walk(t.value_type, path + "[]", name)

    for f in schema:
        walk(f.type, f.name, f.name)
    return found


def _warn_struct_arguments(schema: Any, source: str) -> None:
    """Warn (:class:`ArrowArgumentsWarning`) when ``source`` stores tool-call arguments as
    Arrow structs: sftdata renders them as read, null-filled keys included, because a filled
    key cannot be told from a real ``null``."""
    fields = struct_argument_fields(schema)
    if fields:
        warnings.warn(
            ArrowArgumentsWarning(
                f"{source}: tool-call arguments are stored as an Arrow struct ({', '.join(fields)}); Arrow fills keys a row "
                "does not have with null, and sftdata renders those nulls as read (a filled key cannot be told from a real "
                "null). Store the arguments as JSON text (a string column) to train exactly what the model generated."
            ),
            stacklevel=3,
        )


def _iter_parquet(path: Path, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    import pyarrow.parquet as pq

    index = start
    pf = pq.ParquetFile(path)
    _warn_struct_arguments(pf.schema_arrow, str(path))
    for batch in pf.iter_batches(batch_size=1024):
        n = batch.num_rows
        if keep is not None and not any(keep(i) for i in range(index, index + n)):
            index += n
            continue
        for row in batch.to_pylist():
            if keep is None or keep(index):
                yield index, _arrow_row(row)
            index += 1
    return index


def _iter_dataset(ds: Any, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise ConfigError(f"a DatasetDict with splits {list(ds)}: pass one split (e.g. ds['train'] or <dir>/train)")
        ds = next(iter(ds.values()))
    if isinstance(ds, datasets.Dataset):
        ds = ds.with_format(None)
        _warn_struct_arguments(ds.data.schema, "dataset")
        index = start
        for batch in ds.iter(batch_size=1000):
            columns = list(batch)
            n = len(batch[columns[0]]) if columns else 0
            for i in range(n):
                if keep is None or keep(index):
                    yield index, _arrow_row({c: batch[c][i] for c in columns})
                index += 1
        return index
    features = getattr(ds, "features", None)  # an IterableDataset knows them when its source does
    if features is not None:
        _warn_struct_arguments(features.arrow_schema, "dataset")
    return (yield from _iter_objects(ds, start, "dataset", keep))


def _iter_objects(items: Iterable, start: int, what: str, keep: Keep) -> Generator[RawItem, None, int]:
    index = start
    for k, row in enumerate(items):
        if keep is None or keep(index):
            if isinstance(row, Mapping):
                yield index, dict(row)
            elif isinstance(row, RowError):  # a wrapped reader's unreadable row, passed on as is
                yield index, RowError(row.reason, row.message, field=row.field, row=index, stage=row.stage or "read")
            else:
                yield index, read_error(Reason.BAD_TYPE, f"{what} item {k} is not an object ({type_name(row)})", index)
        index += 1
    return index


def directory_files(path: Path) -> list[Path]:
    """The input files of a directory that is not a ``save_to_disk`` dataset, in a stable order.

    A directory holding SWE-agent trajectories (``*.traj``, at any depth) contributes those
    files only (its ``preds.json``, logs and configs are not traces); any other directory
    contributes every ``.jsonl``/``.json``/``.parquet`` file (and ``.gz`` JSON) at any depth.
    Files are sorted by their path relative to the directory.
    """
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    traj = [p for p in files if p.name.lower().endswith(TRAJ_SUFFIXES)]
    if traj:
        return traj
    return [p for p in files if p.name.lower().endswith(DATA_SUFFIXES) and not p.name.startswith(".")]


def _iter_path(path: Path, start: int, keep: Keep) -> Generator[RawItem, None, int]:
    name = path.name.lower()
    if path.is_dir():
        if is_save_to_disk_dir(path):
            import datasets

            try:
                ds = datasets.load_from_disk(str(path))
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f"{path}: cannot load the datasets save_to_disk directory ({e})") from None
            return (yield from _iter_dataset(ds, start, keep))
        files = directory_files(path)
        if not files:
            raise ConfigError(f"{path}: a directory with no input files (.jsonl, .json, .traj, .parquet) and not a save_to_disk dataset")
        index = start
        for f in files:
            index = yield from _iter_path(f, index, keep)
        return index
    if not path.exists():
        raise ConfigError(f"input not found: {path}")
    if name.endswith(JSONL_SUFFIXES):
        return (yield from iter_jsonl(path, start, keep))
    if name.endswith(JSON_SUFFIXES + TRAJ_SUFFIXES):
        return (yield from iter_json(path, start, keep))
    if name.endswith(PARQUET_SUFFIXES):
        return (yield from _iter_parquet(path, start, keep))
    raise ConfigError(f"{path}: unsupported input type; expected .jsonl, .json, .traj, .parquet or a directory")


def iter_raw(source: Any, *, start_index: int = 0, keep: Keep = None) -> Generator[RawItem, None, int]:
    """Yield the rows of one source, unparsed where the source is text.

    Args:
        source: a path (``str``/``Path``) to a ``.jsonl``/``.ndjson`` file (one row per
            non-blank line), a ``.json`` file (a top-level array of rows, read item by item;
            an array of chat messages, which is ONE conversation; an object holding exactly
            one list of row objects; one row object, i.e. a one-conversation file; or JSON
            Lines misnamed ``.json``), a ``.traj`` file (SWE-agent, one row), a
            ``.parquet`` file (``.gz`` accepted for JSON), a directory (a ``save_to_disk``
            dataset, else its input files, see :func:`directory_files`); or an in-memory
            ``datasets.Dataset`` / single-split ``DatasetDict`` / ``IterableDataset``, or any
            iterable of dicts (consumed lazily: a generator works).
        start_index: index of the first row.
        keep: optional predicate on the row index; rows for which it is false are skipped
            (cheaply for JSON Lines and parquet) but still take their index.

    Yields:
        ``(row_index, RawRow | dict | RowError)``; a ``RowError`` (``stage="read"``) for a
        row that cannot be read (``malformed_json`` naming the file and line, ``bad_type``,
        ``duplicate_key``/``invalid_unicode`` for rows read as dicts from a JSON file).

    Returns:
        (as the generator's return value) the index after the last row.

    Raises:
        ConfigError: a missing path, an unsupported extension, a directory without input
            files, a multi-split ``DatasetDict``.
    """
    if isinstance(source, (str, os.PathLike)):
        return (yield from _iter_path(Path(source), start_index, keep))
    if isinstance(source, Mapping):
        raise ConfigError("a single row (a mapping) is not a source: pass a list of rows")
    if type(source).__module__.split(".")[0] == "datasets":
        return (yield from _iter_dataset(source, start_index, keep))
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        return (yield from _iter_objects(source, start_index, "input", keep))
    raise ConfigError(f"unsupported source of type {type(source).__name__}")


def as_sources(sources: Any) -> list:
    """Normalise ``sources`` to a list of sources: one path, a ``datasets`` object, a list of
    rows or an iterator of rows is ONE source; a list of paths (or of sources) is several."""
    if isinstance(sources, (str, os.PathLike)) or type(sources).__module__.split(".")[0] == "datasets":
        return [sources]
    if isinstance(sources, (list, tuple)):
        if sources and all(isinstance(s, Mapping) for s in sources):
            return [sources]  # a list of rows is one source (a row is never a source)
        return list(sources)
    return [sources]  # a generator or other iterable of rows, or anything iter_raw will refuse


def iter_raw_inputs(sources: Any, *, start_index: int = 0, keep: Keep = None) -> Generator[RawItem, None, int]:
    """Chain several sources (see :func:`as_sources`) with one global, contiguous row index.

    Returns (as the generator's return value) the total index after the last row.
    """
    index = start_index
    for source in as_sources(sources):
        index = yield from iter_raw(source, start_index=index, keep=keep)
    return index


def parse_item(index: int, item: "RawRow | dict | RowError") -> "dict | RowError":
    """A raw item as a row dict, or the ``RowError`` (with ``row``) why it cannot be read."""
    if isinstance(item, RowError):
        return item.with_context(row=index, stage="read")
    if isinstance(item, RawRow):
        try:
            return parse_row(item.text, item.where)
        except RowError as e:
            return e.with_context(row=index)
    return item


def iter_rows(source: Any, *, start_index: int = 0) -> Iterator[RowItem]:
    """Yield the rows of one source, parsed, with contiguous 0-based indices.

    Args:
        source: as :func:`iter_raw`.
        start_index: index of the first row.

    Yields:
        ``(row_index, row_dict)``, or ``(row_index, RowError)`` with ``stage="read"`` for a
        row that cannot be read: ``malformed_json`` (message gives file and line),
        ``bad_type`` (not an object), ``duplicate_key`` or ``invalid_unicode`` (with the
        field path). Every row gets an index; blank lines in JSON Lines are not rows.

    Raises:
        ConfigError: as :func:`iter_raw`.
    """
    for index, item in iter_raw(source, start_index=start_index):
        yield index, parse_item(index, item)


def iter_inputs(sources: Any, *, start_index: int = 0) -> Iterator[RowItem]:
    """Chain several sources with one global, contiguous row index.

    Args:
        sources: a list of sources (see :func:`iter_rows`), or one source: a path, a
            ``datasets`` object, a list of row dicts or an iterator of row dicts.
        start_index: index of the first row.

    Yields:
        ``(row_index, row_dict | RowError)`` as :func:`iter_rows`, numbered across sources.

    Raises:
        ConfigError: as :func:`iter_rows`.
    """
    for index, item in iter_raw_inputs(sources, start_index=start_index):
        yield index, parse_item(index, item)


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


__all__ = ["RawRow", "as_sources", "directory_files", "iter_examples", "iter_inputs", "iter_raw", "iter_raw_inputs", "iter_rows", "parse_item"]
