"""sftdata.hashing, the one place digests are computed: the output fingerprint
(``stats.json`` ``content_fingerprint``) and the short digests keep their exact bytes (golden
values computed by the code before the hashers were merged into one module, commit 2627802)."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from sftdata.hashing import ContentHasher, FileHasher, content_fingerprint, file_digest, json_digest, short_digest
from sftdata.pipeline import fingerprint as pipeline_fingerprint
from sftdata.output import stats


def _table() -> pa.Table:
    return pa.table({
        "input_ids": pa.array([[1, 2, 3], [4], []], pa.list_(pa.int32())),
        "labels": pa.array([[-100, 2, 3], [4], []], pa.list_(pa.int32())),
        "kind": pa.array(["chat", None, "text"]),
        "truncated": pa.array([False, True, None]),
        "length": pa.array([3, 1, None], pa.int64()),
        "meta": pa.array([{"a": 1}, None, {"a": 2}]),
    })


def test_golden_values_unchanged():
    assert content_fingerprint(_table()) == "136a1acfbd4ed91bc56d53bdcbf43cec4c26a5a3411ad513bfdf6406700078ad"
    assert json_digest({"a": [1, "x"], "b": None}) == "8401963c5b51c522"
    assert pipeline_fingerprint.digest is json_digest and pipeline_fingerprint.ContentHasher is FileHasher
    assert stats.ContentHasher is ContentHasher and stats.content_fingerprint is content_fingerprint


@given(st.lists(st.integers(0, 3), min_size=0, max_size=4))
def test_fingerprint_does_not_depend_on_batch_boundaries(cuts):
    """Without nulls (sftdata's outputs have none); see ContentHasher's docstring for nulls."""
    t = pa.table({
        "input_ids": pa.array([[1, 2, 3], [4], []], pa.list_(pa.int32())),
        "kind": pa.array(["chat", "tool", ""]),
        "truncated": pa.array([False, True, False]),
        "length": pa.array([3, 1, 0], pa.int64()),
        "meta": pa.array([{"a": 1}, {"a": 3}, {"a": 2}]),
    })
    h = ContentHasher(t.schema)
    start = 0
    for c in sorted(cuts) + [t.num_rows]:
        c = min(max(c, start), t.num_rows)
        h.update(t.slice(start, c - start))
        start = c
    assert h.rows == t.num_rows and h.hexdigest() == content_fingerprint(t)


def test_short_digests_are_sha256_prefixes(tmp_path):
    data = b"\x00caf\xc3\xa9" * 500_000  # several 1 MiB blocks
    (tmp_path / "f.bin").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()[:16]
    assert short_digest(data) == file_digest(tmp_path / "f.bin") == FileHasher().file(tmp_path / "f.bin") == expected
    assert short_digest("café") == short_digest("café".encode("utf-8"))
