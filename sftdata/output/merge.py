"""``merge``: recombine the outputs of a sharded ``prepare`` (``--num-shards N --shard-index i``)
into the output an unsharded run would have written: the same rows in the same order, the
summed ``stats.json`` and one content fingerprint.

Sharding assigns input rows by blocks: block ``b`` (rows ``b*B .. b*B+B-1``, ``B`` =
``block_rows``) goes to shard ``b % N``. Each shard's rows are in input order, so the
merged output is the concatenation, block by block, of contiguous slices of the shards
(read batch by batch and streamed into new files; memory holds the shards' ``source_index``
columns, 8 bytes per example). ``datasets.concatenate_datasets`` of the shard directories
gives the same rows grouped by shard instead (fine for training, which shuffles), without
the merged stats.
"""

from __future__ import annotations

import heapq
import json
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from ..hashing import ContentHasher
from .load import STATS_FILE, check_listed_files
from .stats import StatsPart, build_stats


def _load_stats(d: Path) -> dict:
    path = d / STATS_FILE
    if not path.is_file():
        raise ConfigError(f"{d} has no stats.json: not a complete `sftdata prepare` output")
    stats = json.loads(path.read_text(encoding="utf-8"))
    if "data" not in stats or "job" not in stats:
        raise ConfigError(f"{d}: stats.json has no data/job section (written by an older sftdata?): prepare it again")
    check_listed_files(d, stats)
    return stats


def _merge_key(job: dict) -> dict:
    """The parts of a job identity that all shards must share (not paths or mtimes, which
    differ between the machines of a job array)."""
    key = {k: v for k, v in job.items() if k not in ("sharding", "inputs")}
    key["inputs"] = [{k: v for k, v in i.items() if k in ("name", "size", "files", "object")} for i in job.get("inputs", [])]
    s = job.get("sharding") or {}
    key["sharding"] = {k: v for k, v in s.items() if k != "shard_index"}
    return key


def _rejects_lines(d: Path) -> Iterator[tuple[int, str]]:
    path = d / "rejects.jsonl"
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["row"], line


class _RowStream:
    """The rows of one shard in order, read batch by batch (a few batches in memory)."""

    def __init__(self, batches: Iterator) -> None:
        self._batches = batches
        self._cur = None
        self._off = 0

    def take(self, n: int) -> list:
        """The next ``n`` rows, as record batch slices."""
        out = []
        while n > 0:
            if self._cur is None or self._off >= self._cur.num_rows:
                self._cur, self._off = next(self._batches), 0
                continue
            k = min(n, self._cur.num_rows - self._off)
            out.append(self._cur.slice(self._off, k))
            self._off += k
            n -= k
        return out


def shard_of(index: int, num_shards: int, block: int) -> int:
    """The shard that prepares input row ``index``: block ``index // block`` modulo ``num_shards``."""
    return (index // block) % num_shards


def merge_slices(sources: list, block: int) -> Iterator[tuple[int, int, int]]:
    """``(shard, start, end)`` row slices that, concatenated, put the shards' rows back in
    input order.

    Args:
        sources: per shard ``i`` (of ``len(sources)``), the ``source_index`` of its output
            rows, ``(rows_i,)`` int64, non-decreasing (a row may give several examples).
        block: rows per sharding block.
    """
    import numpy as np

    n = len(sources)
    cursors = [0] * n
    remaining = sum(len(s) for s in sources)
    b = 0
    while remaining > 0:
        s = b % n
        end = int(np.searchsorted(sources[s], (b + 1) * block, side="left"))
        if end > cursors[s]:
            yield s, cursors[s], end
            remaining -= end - cursors[s]
            cursors[s] = end
        b += 1


def _check_shards(dirs: list[Path]) -> tuple[dict[int, tuple[Path, dict]], int, int]:
    """Read the shards' ``stats.json`` and check they are all the shards of one job.

    Returns:
        ``(by_index, num_shards, block_rows)``: shard index -> ``(dir, stats)``.

    Raises:
        ConfigError: as :func:`merge` documents.
    """
    if not dirs:
        raise ConfigError("merge needs at least one shard directory")
    loaded = [(d, _load_stats(d)) for d in dirs]
    for d, s in loaded:
        if not s.get("sharding"):
            raise ConfigError(f"{d} was not prepared with --num-shards: nothing to merge")
    n = loaded[0][1]["sharding"]["num_shards"]
    block = loaded[0][1]["sharding"]["block_rows"]
    key = _merge_key(loaded[0][1]["job"])
    for d, s in loaded[1:]:
        other = _merge_key(s["job"])
        if other != key:
            diff = sorted(k for k in set(key) | set(other) if key.get(k) != other.get(k))
            raise ConfigError(f"{d} belongs to another job than {loaded[0][0]} (different {', '.join(diff)})")
    by_index: dict[int, tuple[Path, dict]] = {}
    for d, s in loaded:
        i = s["sharding"]["shard_index"]
        if i in by_index:
            raise ConfigError(f"shard {i} given twice: {by_index[i][0]} and {d}")
        by_index[i] = (d, s)
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        raise ConfigError(f"shards {missing} of {n} are missing")
    return by_index, n, block


def _shard_rows(by_index: dict[int, tuple[Path, dict]], n: int, block: int) -> tuple[list[list[Path]], Any, list]:
    """The data files of every shard, the common schema, and each shard's ``source_index``
    column (``int64 (rows,)``), checked to be shard ``i`` of ``n`` in input order.

    Raises:
        ConfigError: a shard with other columns, or rows that are not its share.
    """
    import numpy as np

    from .columns import output_schema
    from .load import file_schema, iter_batches

    files_of = [[by_index[i][0] / e["file"] for e in by_index[i][1]["data"]["files"]] for i in range(n)]
    schema = file_schema(files_of[0][0]) if files_of[0] else output_schema()
    sources = []
    for i in range(n):
        d = by_index[i][0]
        if i and files_of[i] and file_schema(files_of[i][0]) != schema:
            raise ConfigError(f"{d} has other columns than {by_index[0][0]}")
        cols = [np.asarray(b.column(b.schema.get_field_index("source_index")).to_numpy(), dtype=np.int64) for b in iter_batches(files_of[i])]
        src = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        if len(src) and (np.any(np.diff(src) < 0) or np.any(shard_of(src, n, block) != i)):
            raise ConfigError(f"{d}: its rows are not shard {i} of {n} in input order")
        sources.append(src)
    return files_of, schema, sources


def merge(shard_dirs: list[str | Path], output: str | Path, *, overwrite: bool = False, shard_size: int | None = None) -> dict:
    """Merge shard outputs into ``output`` (see module doc).

    Args:
        shard_dirs: the output directories of shards ``0..N-1`` (any order).
        output: the merged directory (written crash-safely, like ``prepare``).
        overwrite: replace an existing ``output``.
        shard_size: bytes per output file (default: the shards').

    Returns:
        The merged ``stats.json`` (a dict).

    Raises:
        ConfigError: a directory that is not a complete shard output; shards of different
            jobs (options, tokenizer, inputs, sharding); a missing or repeated shard index.
    """
    from .load import describe_files, iter_batches
    from .store import JobDir, PartWriter

    t0 = time.perf_counter()
    by_index, n, block = _check_shards([Path(d) for d in shard_dirs])
    files_of, schema, sources = _shard_rows(by_index, n, block)

    first = by_index[0][1]
    job = dict(first["job"])
    job["sharding"] = None
    job["merged_from"] = n
    jobdir = JobDir(output, job, overwrite=overwrite)
    jobdir.open()
    try:
        writer = PartWriter(jobdir.partial, schema, shard_size or first["job"].get("shard_bytes", 256 << 20))
        streams = [_RowStream(iter_batches(f)) for f in files_of]
        hasher = ContentHasher(schema)  # fed as the rows are written: the digest does not depend on batch boundaries
        for s, start, end in merge_slices(sources, block):
            for batch in streams[s].take(end - start):
                writer.add(batch, [], StatsPart(), 0)
                hasher.update(batch)
        writer.commit()
        writer.ensure_one()
        merged = jobdir.partial / "rejects-merged.jsonl"
        with open(merged, "w", encoding="utf-8") as out:
            for _, line in heapq.merge(*(_rejects_lines(by_index[i][0]) for i in range(n)), key=lambda x: x[0]):
                out.write(line)
        total = StatsPart()
        seconds = 0.0
        for i in range(n):
            s = by_index[i][1]
            total += StatsPart.from_stats(s)
            seconds += s.get("seconds") or 0.0
        files = jobdir.data_files()
        stats = build_stats(
            part=total,
            fingerprint=hasher.hexdigest(),
            tokenizer_info=first["tokenizer"],
            options=first["options"],
            seconds=seconds + (time.perf_counter() - t0),
            data=describe_files(files, jobdir.data_rows()),
        )
        stats = jobdir.finalize(stats)
    except BaseException:
        jobdir.discard()
        raise
    return stats
