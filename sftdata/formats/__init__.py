"""Readers: raw rows in common SFT formats → the canonical model (:mod:`sftdata.schema`).

* :func:`iter_rows` / :func:`iter_inputs` read ``.jsonl``/``.json``/``.parquet``/
  ``save_to_disk`` directories/``datasets.Dataset``/lists with stable row indices, yielding
  a :class:`~sftdata.errors.RowError` for an unreadable row instead of crashing.
* :func:`detect_format` / :func:`normalize` turn one row into a
  :class:`~sftdata.schema.Conversation` or :class:`~sftdata.schema.TextExample`,
  raising a ``RowError`` with a reason code and the field path.
* :func:`iter_examples` does both.

Formats (:data:`FORMATS`): ``openai``, ``sharegpt``, ``parts``, ``prompt_completion``,
``alpaca``, ``text``. See ``docs/formats.md``.
"""

from ._arguments import parse_arguments
from ._tools import normalize_tools
from .detect import FORMATS, detect_format
from .normalize import normalize
from .reader import iter_examples, iter_inputs, iter_rows

__all__ = [
    "FORMATS",
    "detect_format",
    "iter_examples",
    "iter_inputs",
    "iter_rows",
    "normalize",
    "normalize_tools",
    "parse_arguments",
]
