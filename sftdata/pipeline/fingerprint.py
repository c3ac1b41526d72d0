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

``num_proc`` is not part of any fingerprint: the outputs do not depend on it. The digests
are :mod:`sftdata.hashing`'s (:func:`~sftdata.hashing.json_digest`,
:class:`~sftdata.hashing.FileHasher`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..hashing import FileHasher, json_digest

#: Canonical-JSON digest of the stage documents (:func:`sftdata.hashing.json_digest`).
digest = json_digest

#: Former name of :class:`sftdata.hashing.FileHasher` (content of local files and dirs).
ContentHasher = FileHasher


def source_identity(source: Mapping[str, Any], hasher: FileHasher) -> dict[str, Any]:
    """What identifies one dataset's rows: the load arguments and the content of every local file among them."""
    return {
        "spec": dict(source),
        "path_content": hasher.local(source.get("path")),
        "data_files_content": hasher.local(source.get("data_files")),
    }


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """Vocabulary, chat template and special tokens of a loaded tokenizer (as hashes)."""
    from ..masking.tokenizer import fingerprint, special_tokens_map

    template = tokenizer.chat_template  # a string, a dict of named templates (tool_use, …) or None
    info = fingerprint(tokenizer, template if isinstance(template, str) else json.dumps(template, sort_keys=True))
    info.pop("tokenizer_name", None)  # the same files under another name are the same tokenizer
    info["special_tokens"] = digest(special_tokens_map(tokenizer))
    return info
