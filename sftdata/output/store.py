"""The output directory of ``prepare`` / ``merge``: crash-safe, resumable, verifiable.

A job writes into ``<parent>/.<name>.partial`` (same filesystem as the target, so the final
``rename`` is atomic) and never touches ``<name>`` until everything is written:

* ``job.json`` — the job's identity (inputs, options, tokenizer, sharding); ``--resume``
  refuses a partial directory of a different job;
* ``data-NNNNN.arrow`` — output parts of about ``shard_bytes`` each (Arrow IPC streams, the
  format of ``datasets.save_to_disk``), each committed atomically: written as ``*.tmp``,
  fsynced, renamed, and then its manifest ``part-NNNNN.json`` (rows, bytes, the input row
  index to resume from, the part's accumulators) is written the same way. A part without
  a manifest does not exist; ``--resume`` deletes it and continues after the last manifest;
* at the end: ``rejects.jsonl`` (the parts' rejects in order), ``state.json`` and
  ``dataset_info.json`` (what ``datasets.load_from_disk`` reads) and **last** ``stats.json``,
  which records the row count, the files with their sizes and the content fingerprint of
  the data it describes. Then the directory is renamed to ``<name>`` (an existing
  ``<name>`` is first renamed aside, then deleted).

:func:`sftdata.output.load.load_output` refuses a directory whose ``stats.json`` does not match
its data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .load import STATS_FILE
from .stats import StatsPart

REJECTS_FILE = "rejects.jsonl"
JOB_FILE = "job.json"
FORMAT_VERSION = 2  # of the partial directory layout


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: ``SFTDATA_CRASH_AT=name[:n]`` kills this process
    with SIGKILL the n-th time (default 1st) the point is reached. No effect otherwise."""
    spec = os.environ.get("SFTDATA_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    count = _CRASH_COUNTS.get(name, 0) + 1
    _CRASH_COUNTS[name] = count
    if count == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}


def partial_dir(out: Path) -> Path:
    """The hidden working directory ``.<name>.partial`` beside output ``out``, where a job writes until it is published."""
    return out.parent / f".{out.name}.partial"


def _old_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems do not allow it; the rename is still atomic
        pass


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a fsynced temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _part_name(k: int) -> str:
    return f"data-{k:05d}.arrow"


class PartWriter:
    """Writes output parts of about ``shard_bytes`` bytes into ``directory``, each committed
    atomically with its manifest (see module doc).

    Args:
        directory: the partial directory.
        schema: the output ``pyarrow.Schema``.
        shard_bytes: a part is committed at the first chunk boundary at or past this size.
        first_part: number of the next part (parts before it are committed).
    """

    def __init__(self, directory: Path, schema: Any, shard_bytes: int, first_part: int = 0) -> None:
        self.directory = directory
        self.schema = schema
        self.shard_bytes = shard_bytes
        self.part = first_part
        self._open = False

    def _start(self) -> None:
        import pyarrow as pa

        self._tmp = self.directory / (_part_name(self.part) + ".tmp")
        self._sink = pa.OSFile(str(self._tmp), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._rejects_tmp = self.directory / f"rejects-{self.part:05d}.jsonl.tmp"
        self._rejects = open(self._rejects_tmp, "w", encoding="utf-8")
        self._stats = StatsPart()
        self._rows = 0
        self._seconds = 0.0
        self._next_index = 0
        self._open = True

    def add(self, batch: Any, rejects: list[str], part: StatsPart, next_index: int, seconds: float = 0.0) -> None:
        """Append one chunk's output; commit the part when it is large enough."""
        if not self._open:
            self._start()
        if batch.num_rows:
            self._writer.write_batch(batch)
        for line in rejects:
            self._rejects.write(line + "\n")
        self._stats += part
        self._rows += batch.num_rows
        self._seconds += seconds
        self._next_index = next_index
        crash_point("chunk")
        if self._sink.tell() >= self.shard_bytes:
            self.commit()

    def ensure_one(self) -> None:
        """Commit an empty part when none exists (an empty dataset still has one data file)."""
        if self.part == 0 and not self._open:
            self._start()
            self.commit()

    def commit(self) -> None:
        """Close and commit the current part (no-op when none is open)."""
        if not self._open:
            return
        self._writer.close()
        self._sink.close()
        self._rejects.close()
        crash_point("part-write")
        final = self.directory / _part_name(self.part)
        _fsync_file(self._tmp)
        os.replace(self._tmp, final)
        _fsync_file(self._rejects_tmp)
        os.replace(self._rejects_tmp, self.directory / f"rejects-{self.part:05d}.jsonl")
        crash_point("manifest")
        manifest = {
            "part": self.part,
            "file": final.name,
            "rows": self._rows,
            "bytes": final.stat().st_size,
            "next_index": self._next_index,
            "seconds": round(self._seconds, 3),
            "stats": self._stats.to_dict(),
        }
        write_atomic(self.directory / f"part-{self.part:05d}.json", json.dumps(manifest))
        _fsync_dir(self.directory)
        self.part += 1
        self._open = False


def read_manifests(directory: Path) -> list[dict]:
    """The committed parts of a partial directory, in order (stops at the first gap)."""
    out = []
    k = 0
    while True:
        path = directory / f"part-{k:05d}.json"
        if not path.is_file():
            return out
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return out
        data = directory / m["file"]
        if not data.is_file() or data.stat().st_size != m["bytes"]:
            return out
        out.append(m)
        k += 1


def drop_uncommitted(directory: Path, committed: int) -> None:
    """Delete every part file numbered ``committed`` or more, and temporary files."""
    for p in directory.iterdir():
        name = p.name
        if name.endswith(".tmp"):
            p.unlink()
            continue
        for prefix in ("data-", "rejects-", "part-"):
            if name.startswith(prefix):
                digits = name[len(prefix) : len(prefix) + 5]
                if digits.isdigit() and int(digits) >= committed:
                    p.unlink()


class JobDir:
    """The target directory of one job and its partial directory (see module doc).

    Args:
        out: the target directory.
        job: the job's identity (a JSON-able dict).
        overwrite: replace an existing target (and discard a partial job unless resuming).
        resume: continue the partial job of the same identity.

    Raises:
        ConfigError: the target exists without ``overwrite``; a partial job exists without
            ``resume``/``overwrite``; ``resume`` on a partial job of another identity.
    """

    def __init__(self, out: str | Path, job: dict, *, overwrite: bool = False, resume: bool = False) -> None:
        self.out = Path(out)
        self.job = job
        self.overwrite = overwrite
        self.resume = resume
        self.partial = partial_dir(self.out)
        self.manifests: list[dict] = []
        self.finished = False  # the partial directory holds a complete, finalized output
        self.already_complete = False  # resume of a job whose output is already published

    def open(self) -> None:
        """Create or reopen the partial directory (see class doc)."""
        target_busy = self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir()))
        if self.partial.exists():
            if self.resume:
                self._reopen()
                if target_busy and not self.overwrite:
                    raise ConfigError(f"{self.out} exists: resuming a job that replaces it needs --overwrite too")
                return
            if not self.overwrite:
                raise ConfigError(
                    f"an unfinished job left {self.partial}: pass --resume to continue it, or --overwrite to start over"
                )
            shutil.rmtree(self.partial)
        if target_busy:
            if self.resume and self._published_same_job():
                self.already_complete = True
                return
            if not self.overwrite:
                raise ConfigError(f"{self.out} exists and is not empty (use --overwrite to replace it)")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} exists and is not a directory")
        self.partial.mkdir(parents=True)
        write_atomic(self.partial / JOB_FILE, json.dumps({"format_version": FORMAT_VERSION, **self.job}, indent=2, sort_keys=True, default=str))

    def _published_same_job(self) -> bool:
        try:
            stats = json.loads((self.out / STATS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return stats.get("job") == _comparable(self.job)

    def _reopen(self) -> None:
        try:
            old = json.loads((self.partial / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{self.partial} is not a resumable job (no readable {JOB_FILE}); use --overwrite") from None
        old.pop("format_version", None)
        mine = _comparable(self.job)
        theirs = _comparable(old)
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"cannot resume {self.partial}: it was started with different {', '.join(diff)} (use --overwrite to start over)")
        if (self.partial / STATS_FILE).is_file():
            self.finished = True
            return
        self.manifests = read_manifests(self.partial)
        drop_uncommitted(self.partial, len(self.manifests))

    def resume_point(self) -> tuple[int, int, StatsPart, float]:
        """``(next part number, input row index to continue from, accumulators, seconds)``."""
        total = StatsPart()
        seconds = 0.0
        for m in self.manifests:
            total += StatsPart.from_dict(m["stats"])
            seconds += m.get("seconds", 0.0)
        next_index = self.manifests[-1]["next_index"] if self.manifests else 0
        return len(self.manifests), next_index, total, seconds

    def data_files(self) -> list[Path]:
        """The Arrow data files written so far in the working directory, in order (``data-*.arrow``)."""
        return sorted(self.partial.glob("data-*.arrow"))

    def data_rows(self) -> list[int]:
        """Rows of each committed data file, from the manifests (in file order)."""
        return [m["rows"] for m in read_manifests(self.partial)]

    def discard(self) -> None:
        """Delete the partial directory (after an error that resuming cannot fix)."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def finalize(self, stats: dict) -> dict:
        """Write rejects.jsonl, the datasets metadata and stats.json (last), then publish.

        Returns:
            The stats as written (with the ``job`` section).
        """
        d = self.partial
        if not self.finished:
            parts = sorted(d.glob("rejects-*.jsonl"))
            tmp = d / (REJECTS_FILE + ".tmp")
            n = 0
            with open(tmp, "w", encoding="utf-8") as out:
                for p in parts:
                    with open(p, encoding="utf-8") as f:
                        for line in f:
                            out.write(line)
                            n += 1
            if n:
                _fsync_file(tmp)
                os.replace(tmp, d / REJECTS_FILE)
            else:
                tmp.unlink()
                (d / REJECTS_FILE).unlink(missing_ok=True)
            files = [p.name for p in self.data_files()]
            write_atomic(d / "state.json", json.dumps(_state(files), indent=2))
            write_atomic(d / "dataset_info.json", json.dumps({}, indent=2))
            crash_point("finalize")
            stats = dict(stats)
            stats["job"] = _comparable(self.job)
            write_atomic(d / STATS_FILE, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
        else:
            stats = json.loads((d / STATS_FILE).read_text(encoding="utf-8"))
        for p in list(d.glob("rejects-*.jsonl")) + list(d.glob("part-*.json")):
            p.unlink()
        self._publish()
        return stats

    def _publish(self) -> None:
        publish(self.partial, self.out)


def publish(src: Path, out: Path) -> None:
    """Replace the directory ``out`` (if any) by the complete directory ``src``: ``out`` is
    renamed aside (``.<name>.old``), ``src`` renamed in, the parent synced, the old one deleted.
    A crash leaves either the old or the new directory at ``out`` (and maybe ``.<name>.old``)."""
    old = _old_dir(out)
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.rename(out, old)
    crash_point("publish")
    os.rename(src, out)
    _fsync_dir(out.parent)
    if old.exists():
        shutil.rmtree(old)


def _comparable(job: dict) -> dict:
    """``job`` as it reads back from JSON (tuples → lists), for comparisons."""
    return json.loads(json.dumps(job, sort_keys=True, default=str))


def _state(files: list[str]) -> dict:
    """The ``state.json`` that ``datasets.load_from_disk`` reads."""
    return {
        "_data_files": [{"filename": f} for f in files],
        "_fingerprint": "sftdata",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
