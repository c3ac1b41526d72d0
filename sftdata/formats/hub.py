"""Any ``datasets.load_dataset`` spec as an input: Hub ids, local data dirs, globs, CSV, loading scripts.

:func:`resolve_source` turns one input spec into what :func:`~sftdata.formats.iter_rows` reads:

* a local ``.jsonl``/``.json``/``.parquet`` file or a ``save_to_disk`` dir: the path itself (read by
  sftdata's own readers, which keep JSON rows exactly as written);
* a glob of such files (``data/*.jsonl``): the sorted list of matching paths;
* a local directory holding JSON input files (``.jsonl``/``.json``/``.traj``, at any depth; not a
  ``save_to_disk`` dir): the path itself, read by sftdata's reader exactly as the Python
  ``sftdata.prepare(DIR)`` reads it (:func:`sftdata.formats.reader.directory_files`: SWE-agent
  ``*.traj`` only when there are some, else every input file), never through ``load_dataset``
  (whose Arrow schema unification adds ``null`` for keys other rows have, or fails to cast);
* anything else ``datasets.load_dataset`` accepts: a :class:`LoadDatasetSource`, an iterable of
  row dicts. That is a Hub id (``HuggingFaceH4/ultrachat_200k``), a local dir of parquet (or
  other non-JSON) data files (split by file name), a glob or file of another type (``*.csv``, ``*.arrow``), a builder
  name with ``data_files`` (``parquet`` + ``data/*.parquet``), a loading script (``datasets`` < 4
  only; later versions refuse scripts), each with ``name``/``split``/``revision``/….

A :class:`LoadDatasetSource` is **streamed** (``streaming=True``) unless told otherwise or the
dataset cannot stream (the builder raises ``NotImplementedError``, or ``split`` slices rows such as
``train[:1000]``, which only a downloaded dataset supports). Nothing is loaded until it is iterated.

Arrow stores each column with one schema, so rows read through ``load_dataset`` (Hub parquet
included) may carry ``null`` for keys other rows have (e.g. in tool-call arguments). sftdata keeps
what the dataset holds; prefer the JSON files themselves where the dataset has them.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ConfigError
from ._json_files import DATA_SUFFIXES

#: Suffixes read by sftdata's own readers (:mod:`sftdata.formats.reader`).
READER_SUFFIXES = DATA_SUFFIXES
#: Other data-file suffixes → the ``datasets`` packaged builder that reads them.
BUILDER_SUFFIXES = {".csv": "csv", ".arrow": "arrow", ".txt": "text"}
_GLOB_CHARS = "*?["
_PARQUET = (".parquet",)


@dataclass(frozen=True)
class LoadDatasetSource:
    """One ``datasets.load_dataset(path, name, split=…, …)`` call, iterated as row dicts.

    Attributes:
        path: Hub id, local dir, builder name (``parquet``, ``csv``, …) or script path.
        name: the dataset config name (``load_dataset``'s ``name``).
        split: the split; ``None`` takes the only split and refuses a choice among several.
        data_files, data_dir, revision: passed to ``load_dataset`` when set.
        streaming: ``True``/``False``; ``None`` streams unless the dataset cannot.
        load_kwargs: any other ``load_dataset`` keyword (``token``, ``cache_dir``, …).
    """

    path: str
    name: str | None = None
    split: str | None = None
    data_files: Any = None
    data_dir: str | None = None
    revision: str | None = None
    streaming: bool | None = None
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The call's arguments as a plain dict (what identifies the source)."""
        return {
            "path": self.path, "name": self.name, "split": self.split, "data_files": self.data_files,
            "data_dir": self.data_dir, "revision": self.revision, "streaming": self.streaming,
            "load_kwargs": dict(self.load_kwargs),
        }

    def describe(self) -> str:
        """The call as one line of text, e.g. ``load_dataset('org/name', split='train')`` (for messages)."""
        extra = "".join(f", {k}={v!r}" for k, v in self.spec().items() if k != "path" and v not in (None, {}))
        return f"load_dataset({self.path!r}{extra})"

    def _call(self, streaming: bool):
        import datasets

        kwargs: dict[str, Any] = dict(self.load_kwargs)
        for key in ("name", "data_files", "data_dir", "revision", "split"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        return datasets.load_dataset(self.path, streaming=streaming, **kwargs)

    def load(self):
        """The ``datasets.Dataset`` or ``IterableDataset`` of the chosen split.

        Raises:
            ConfigError: ``load_dataset`` failed (message names the call and the cause), or
                ``split`` is ``None`` and the dataset has several splits.
        """
        streaming = self.streaming
        if streaming is None:
            streaming = not (self.split and "[" in self.split)
        try:
            try:
                ds = self._call(streaming)
            except NotImplementedError:
                if self.streaming is not None or not streaming:
                    raise
                ds = self._call(False)  # the builder does not stream
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - any loader failure is a bad input spec
            raise ConfigError(f"cannot read {self.describe()}: {type(e).__name__}: {e}") from e
        import datasets

        if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            if len(ds) != 1:
                raise ConfigError(f"{self.describe()} has splits {sorted(ds)}: choose one with split")
            ds = next(iter(ds.values()))
        return ds

    def __iter__(self) -> Iterator[dict]:
        import datasets

        ds = self.load()
        if isinstance(ds, datasets.Dataset):
            ds = ds.with_format(None)
            for batch in ds.iter(batch_size=1000):
                columns = list(batch)
                n = len(batch[columns[0]]) if columns else 0
                for i in range(n):
                    yield {c: batch[c][i] for c in columns}
        else:
            for row in ds:
                yield dict(row)


def _has_glob(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _suffix_of(path: str) -> str:
    name = os.path.basename(path).lower()
    for suffix in READER_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return os.path.splitext(name)[1]


def is_save_to_disk_dir(path: Path) -> bool:
    """True for a directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def looks_local(path: str) -> bool:
    """True when ``path`` can only mean a local file (``./x``, ``/x``, ``~/x``, a data-file suffix, ``.py``)."""
    return (
        path.startswith((".", "/", "~"))
        or os.path.isabs(path)
        or _suffix_of(path) in READER_SUFFIXES
        or _suffix_of(path) in BUILDER_SUFFIXES
        or path.endswith(".py")
    )


def _resolve_glob(text: str, given: list[str], streaming: bool | None) -> list[str] | LoadDatasetSource:
    """:func:`resolve_source` for a glob: the sorted matching files (read by sftdata) or a
    ``load_dataset`` builder over them (``given``: the ``load_dataset`` options set).

    Raises:
        ConfigError: options given with a glob, no match, or files of several kinds.
    """
    if given:
        raise ConfigError(f"{text}: a glob with {', '.join(given)}: name the builder and pass the glob as "
                          "data_files (path: parquet, data_files: <glob>)")
    matches = sorted(p for p in globlib.glob(text, recursive=True) if os.path.isfile(p))
    if not matches:
        raise ConfigError(f"{text}: the glob matches no file")
    kinds = {_suffix_of(p) for p in matches}
    if all(k in READER_SUFFIXES for k in kinds):
        return matches
    builders = {BUILDER_SUFFIXES.get(k) for k in kinds}
    if len(builders) != 1 or None in builders:
        raise ConfigError(f"{text}: matches files of types {sorted(kinds)}; use one type per input")
    return LoadDatasetSource(builders.pop(), data_files=matches, streaming=streaming)


def _resolve_file(text: str, given: list[str], streaming: bool | None,
                  source: LoadDatasetSource) -> str | LoadDatasetSource:
    """:func:`resolve_source` for an existing file: the path (read by sftdata), a builder over
    it, or ``source`` (the ``load_dataset`` call as given: a script, or options given).

    Raises:
        ConfigError: ``load_dataset`` options for a file sftdata reads, or an unsupported type.
    """
    suffix = _suffix_of(text)
    if suffix in READER_SUFFIXES:
        if given:
            raise ConfigError(
                f"{text}: {', '.join(given)} applies to datasets.load_dataset inputs; a {suffix} file is read whole "
                "(select rows with the pipeline's num_rows/weight)"
            )
        return text
    if suffix in BUILDER_SUFFIXES and not given:
        return LoadDatasetSource(BUILDER_SUFFIXES[suffix], data_files=[text], streaming=streaming)
    if suffix in BUILDER_SUFFIXES or suffix == ".py":
        return source
    raise ConfigError(f"{text}: unsupported file type {suffix or '(none)'}; expected .jsonl, .json, .traj, .parquet, "
                      f"{', '.join(BUILDER_SUFFIXES)} or a dataset dir")


def resolve_source(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    split: str | None = None,
    data_files: Any = None,
    data_dir: str | None = None,
    revision: str | None = None,
    streaming: bool | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
) -> str | list[str] | LoadDatasetSource:
    """Turn an input spec into a source :func:`~sftdata.formats.iter_rows` reads (see module doc).

    Args:
        path: a local path, a glob, a Hub id, a builder name or a script path.
        name, split, data_files, data_dir, revision, streaming, load_kwargs: as
            ``datasets.load_dataset``; given for a local ``.jsonl``/``.json``/``.parquet`` file, they
            are an error (such a file is read whole by sftdata's reader).

    Returns:
        The path, a sorted list of paths, or a :class:`LoadDatasetSource`.

    Raises:
        ConfigError: a local path that does not exist, a glob matching nothing or files of
            several kinds, a ``load_dataset`` option given for a file sftdata reads itself, an
            unsupported file type.
    """
    text = os.path.expanduser(os.fspath(path))
    load_opts = {"name": name, "split": split, "data_files": data_files, "data_dir": data_dir, "revision": revision,
                 "load_kwargs": dict(load_kwargs or {})}
    given = [k for k, v in load_opts.items() if v not in (None, {})]
    source = LoadDatasetSource(text, streaming=streaming, **load_opts)
    local = Path(text)
    if _has_glob(text) and not local.exists():
        return _resolve_glob(text, given, streaming)
    if local.is_file():
        return _resolve_file(text, given, streaming, source)
    if local.is_dir():
        if is_save_to_disk_dir(local):
            if split is not None and (local / "dataset_dict.json").is_file() and (local / split).is_dir():
                return str(local / split)
            if given:
                raise ConfigError(f"{text}: a save_to_disk dir; {', '.join(given)} does not apply (pass <dir>/<split>)")
            return text
        from .reader import directory_files

        files = directory_files(local)
        if any(_suffix_of(str(f)) not in _PARQUET for f in files):
            # JSON files (SWE-agent *.traj, one-conversation .json, .jsonl): sftdata's reader, as
            # sftdata.prepare(DIR) reads them, never load_dataset's Arrow schema unification
            if given:
                raise ConfigError(
                    f"{text}: a directory of JSON files is read whole by sftdata's reader (as sftdata.prepare(DIR) "
                    f"does); {', '.join(given)} does not apply: select files with a glob ({text}/**/train-*.jsonl)")
            return text
        return source
    if looks_local(text):
        raise ConfigError(f"input not found: {text}")
    return source
