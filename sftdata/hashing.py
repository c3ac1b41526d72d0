"""Content hashing: every digest sftdata writes is computed here, with SHA-256.

Two kinds of content are hashed, by one primitive (``hashlib.sha256``):

* **Output rows** — :class:`ContentHasher`: the full SHA-256 (64 hex digits) of every column
  of an Arrow output, fed record batch by record batch; ``stats.json``'s
  ``content_fingerprint`` (compared across versions and runs: its bytes must never change).
* **Inputs and settings** — :func:`short_digest` (the first :data:`SHORT_DIGEST_CHARS` hex
  digits of the SHA-256 of some bytes), :func:`json_digest` (of canonical JSON),
  :func:`file_digest` (of a file's bytes) and :class:`FileHasher` (files and directories,
  cached per run): the tokenizer and chat-template fingerprints, the tools file, the
  pipeline's stage fingerprints, the pack fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Hex digits kept by the short digests (64 bits: identities, not security).
SHORT_DIGEST_CHARS = 16


def short_digest(data: bytes | str) -> str:
    """The first :data:`SHORT_DIGEST_CHARS` hex digits of the SHA-256 of ``data`` (a ``str``
    is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()[:SHORT_DIGEST_CHARS]


def json_digest(obj: Any) -> str:
    """:func:`short_digest` of ``obj`` as canonical JSON (sorted keys, UTF-8, ``str()`` of
    what JSON cannot represent)."""
    return short_digest(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


def file_digest(path: str | os.PathLike) -> str:
    """:func:`short_digest` of a file's bytes, read in 1 MiB blocks.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:SHORT_DIGEST_CHARS]


class FileHasher:
    """Content digests of local files and directories, each file hashed once per run."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def file(self, path: str | os.PathLike) -> str:
        """:func:`file_digest` of one file, cached by its real path."""
        key = os.path.realpath(path)
        if key not in self._cache:
            self._cache[key] = file_digest(path)
        return self._cache[key]

    def path(self, path: str | os.PathLike) -> str:
        """Digest of a file, or of a dir's files (relative names and contents, sorted)."""
        p = Path(path)
        if p.is_file():
            return self.file(p)
        items = []
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            items.append((f.relative_to(p).as_posix(), self.file(f)))
        return json_digest(items)

    def local(self, spec: Any) -> Any:
        """Digests of the local files a path, glob, list or mapping of them names (None when none exist)."""
        import glob as globlib

        if spec is None:
            return None
        if isinstance(spec, Mapping):
            return {str(k): self.local(v) for k, v in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [self.local(v) for v in spec]
        text = os.path.expanduser(str(spec))
        if os.path.exists(text):
            return self.path(text)
        if any(c in text for c in "*?["):
            matches = sorted(m for m in globlib.glob(text, recursive=True) if os.path.isfile(m))
            return [(m, self.file(m)) for m in matches] or None
        return None


class ContentHasher:
    """SHA-256 of every column of an output, fed with Arrow record batches.

    Per column (in schema order), two streams are hashed: the row-level values and, for
    list columns, the list lengths; values are hashed as little-endian bytes of their Arrow
    type (strings as UTF-8 with their lengths). Concatenating batches never changes the
    bytes hashed, so the digest depends only on the rows, not on batch or file boundaries.
    The final value is the SHA-256 (64 hex digits) of ``name|type|digests`` of every column.

    Nulls: a batch holding nulls in a column also hashes its validity bitmap, per batch, so a
    column *with nulls* gets a digest that depends on the batch boundaries. sftdata's outputs
    (``prepare``, ``pack``) hold no nulls; the rule is kept as it is because the digests of
    existing outputs must not change.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._h = {f.name: (hashlib.sha256(), hashlib.sha256()) for f in schema}
        self.rows = 0

    def update(self, batch: Any) -> None:
        """Add one ``pyarrow.RecordBatch`` (or ``Table``) with this hasher's schema."""
        self.rows += batch.num_rows
        for f in self.schema:
            col = batch.column(batch.schema.get_field_index(f.name))
            chunks = col.chunks if hasattr(col, "chunks") else [col]
            values_h, lengths_h = self._h[f.name]
            for arr in chunks:
                _hash_array(arr, values_h, lengths_h)

    def hexdigest(self) -> str:
        """The digest of every batch added so far (64 hex digits); adding more batches after
        it goes on from where it was."""
        top = hashlib.sha256()
        for f in self.schema:
            values_h, lengths_h = self._h[f.name]
            top.update(f"{f.name}|{f.type}|".encode())
            top.update(values_h.digest())
            top.update(lengths_h.digest())
        return top.hexdigest()


def _hash_array(arr: Any, values_h: Any, lengths_h: Any) -> None:
    """Feed one Arrow array into the values and lengths streams of its column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if arr.null_count:  # nulls: hash where they are, then treat them as zero / empty
        lengths_h.update(b"validity")
        lengths_h.update(np.asarray(arr.is_valid(), dtype=np.uint8).tobytes())
        if pa.types.is_primitive(t) and not pa.types.is_boolean(t):
            arr = arr.fill_null(pa.scalar(0, t))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths_h.update(np.asarray(pc.list_value_length(arr).fill_null(0), dtype=np.int64).tobytes())
        _hash_array(arr.flatten(), values_h, lengths_h)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths_h.update(np.asarray(pc.binary_length(arr).fill_null(0), dtype=np.int64).tobytes())
        for v in arr.to_pylist():
            values_h.update(v.encode() if isinstance(v, str) else (v or b""))
    elif pa.types.is_boolean(t):
        values_h.update(np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes())
    elif pa.types.is_primitive(t):
        values_h.update(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).astype(arr.type.to_pandas_dtype(), copy=False).tobytes())
    else:  # any other type: its canonical JSON, row by row
        for v in arr.to_pylist():
            values_h.update(json.dumps(v, sort_keys=True, default=str).encode())
            values_h.update(b"\n")


def content_fingerprint(table: Any) -> str:
    """:class:`ContentHasher` digest of a ``pyarrow.Table`` (or record batch)."""
    h = ContentHasher(table.schema)
    h.update(table)
    return h.hexdigest()
