"""Reading an output directory of ``prepare`` / ``merge``: checked loading, streamed batches,
the ``data`` section of ``stats.json`` and the content fingerprint of the files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError

STATS_FILE = "stats.json"
from ..packing.report import PACK_STATS_FILE  # noqa: E402 - defined by the stage that writes it
#: Written by ``sftdata run``'s mix stage beside a dataset of rows taken from prepare outputs.
MIX_STATS_FILE = "mix_stats.json"


def iter_batches(files: list[Path]) -> Iterator[Any]:
    """Record batches of Arrow IPC stream files, read (not memory-mapped: mapped pages would
    count in the process's RSS) one at a time; nothing is held beyond the current batch."""
    import pyarrow as pa

    for f in files:
        with pa.OSFile(str(f), "rb") as source:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                yield batch


def file_schema(path: Path) -> Any:
    """The ``pyarrow.Schema`` of an Arrow IPC stream file."""
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as src:
        return pa.ipc.open_stream(src).schema


def fingerprint_files(files: list[Path], schema: Any = None) -> str:
    """The content fingerprint (:class:`~sftdata.hashing.ContentHasher`) of Arrow stream files."""
    from ..hashing import ContentHasher

    if schema is None:
        if not files:
            from .columns import output_schema

            schema = output_schema()
        else:
            schema = file_schema(files[0])
    h = ContentHasher(schema)
    for b in iter_batches(files):
        h.update(b)
    return h.hexdigest()


def describe_files(files: list[Path], rows: list[int] | None = None) -> dict:
    """The ``data`` section of ``stats.json``: rows and bytes per file, and in all.

    Args:
        files: the data files, in order.
        rows: their row counts when known (the part manifests); else the files are read.
    """
    entries = []
    total = 0
    for k, f in enumerate(files):
        n = rows[k] if rows is not None else sum(b.num_rows for b in iter_batches([f]))
        entries.append({"file": f.name, "rows": n, "bytes": f.stat().st_size})
        total += n
    return {"rows": total, "files": entries}


def check_listed_files(path: Path, stats: dict) -> None:
    """Every data file ``stats["data"]["files"]`` lists is in ``path`` with its recorded size.

    Raises:
        ConfigError: a listed file missing (the directory is incomplete) or of another size.
    """
    for entry in stats["data"]["files"]:
        f = path / entry["file"]
        if not f.is_file():
            raise ConfigError(f"{path}: {entry['file']} listed in {STATS_FILE} is missing: the directory is incomplete")
        if f.stat().st_size != entry["bytes"]:
            raise ConfigError(
                f"{path}: {entry['file']} has {f.stat().st_size} bytes, {STATS_FILE} says {entry['bytes']}: the data does not match its stats"
            )


def load_output(path: str | os.PathLike, *, verify: str = "sizes") -> Any:
    """Load a ``prepare``/``merge`` output directory after checking it is complete.

    Args:
        path: the directory.
        verify: ``"sizes"`` (every file listed in ``stats.json`` exists with its recorded
            size, and the row count matches), ``"full"`` (also recompute the content
            fingerprint: reads all the data) or ``"none"``.

    Returns:
        The ``datasets.Dataset`` (memory-mapped).

    Raises:
        ConfigError: not a dataset directory, no ``stats.json``, or ``stats.json`` does not
            describe the data (the directory is incomplete or was modified), naming the
            difference.
    """
    import datasets

    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"{p} is not a directory")
    stats_path = p / STATS_FILE
    packed = (p / PACK_STATS_FILE).is_file() or (p / MIX_STATS_FILE).is_file()  # derived from checked outputs
    if verify != "none" and not packed and not stats_path.is_file():
        raise ConfigError(f"{p} has no {STATS_FILE}: not a complete `sftdata prepare` output")
    stats = None
    if stats_path.is_file() and not packed:
        try:
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConfigError(f"{stats_path} is not valid JSON ({e})") from None
        if verify != "none" and "data" in stats:
            check_listed_files(p, stats)
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001 - datasets raises many types for a broken dir
        raise ConfigError(f"{p} is not a loadable dataset directory: {type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise ConfigError(f"{p} holds a DatasetDict with splits {list(ds)}: pass {p}/<split>")
        ds = next(iter(ds.values()))
    if stats is not None and verify != "none":
        expected = stats.get("data", {}).get("rows", stats.get("examples_out"))
        if expected is not None and expected != len(ds):
            raise ConfigError(f"{p}: {STATS_FILE} describes {expected} rows but the data has {len(ds)}: the data does not match its stats")
        if verify == "full" and "data" in stats:
            files = [p / e["file"] for e in stats["data"]["files"]]
            if fingerprint_files(files) != stats.get("content_fingerprint"):
                raise ConfigError(f"{p}: the content fingerprint of the data does not match {STATS_FILE}: the data was modified")
    ds.sftdata_stats = stats
    return ds
