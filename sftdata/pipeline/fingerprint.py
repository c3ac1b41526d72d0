"""Stage fingerprints: a stage is skipped when its output holds a record with the same fingerprint.

A fingerprint is the SHA-256 (first 16 hex digits) of a JSON document of everything the stage's
output depends on:

* prepare: the input's identity (the **content** of local files and dirs; for a Hub dataset the
  ``load_dataset`` arguments, so pin ``revision`` to a commit to notice upstream changes), the
  ``tools_file`` content, the encode options, the tokenizer vocabulary, chat template and special
  tokens, ``on_error`` and the sftdata version;
* mix: the prepare fingerprints, weights/num_rows and the seed;
* pack: the mix (or prepare) fingerprint, the pack options and the seed;
* train: the data fingerprint and the training keys, except those that change neither the
  weights nor the metrics (``sftdata_train.pipeline.VOLATILE_TRAIN_KEYS``).

``num_proc`` is not part of any fingerprint: the outputs do not depend on it.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

def digest(obj: Any) -> str:
    """SHA-256 (16 hex digits) of ``obj`` as canonical JSON."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ContentHasher:
    """Content digests of local files and dirs, each computed once per run."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def file(self, path: str | os.PathLike) -> str:
        key = os.path.realpath(path)
        if key not in self._cache:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._cache[key] = h.hexdigest()[:16]
        return self._cache[key]

    def path(self, path: str | os.PathLike) -> str:
        """Digest of a file, or of a dir's files (relative names and contents, sorted)."""
        p = Path(path)
        if p.is_file():
            return self.file(p)
        items = []
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            items.append((f.relative_to(p).as_posix(), self.file(f)))
        return digest(items)

    def local(self, spec: Any) -> Any:
        """Digests of the local files a path, glob, list or mapping of them names (None when none exist)."""
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


def source_identity(source: Mapping[str, Any], hasher: ContentHasher) -> dict[str, Any]:
    """What identifies one dataset's rows: the load arguments and the content of every local file among them."""
    return {
        "spec": dict(source),
        "path_content": hasher.local(source.get("path")),
        "data_files_content": hasher.local(source.get("data_files")),
    }


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """Vocabulary, chat template and special tokens of a loaded tokenizer (as hashes)."""
    from ..tokenizer import fingerprint, special_tokens_map

    template = tokenizer.chat_template  # a string, a dict of named templates (tool_use, …) or None
    info = fingerprint(tokenizer, template if isinstance(template, str) else json.dumps(template, sort_keys=True))
    info.pop("tokenizer_name", None)  # the same files under another name are the same tokenizer
    info["special_tokens"] = digest(special_tokens_map(tokenizer))
    return info
