"""Readers: raw rows in common SFT formats → the canonical model (:mod:`sftdata.schema`).

* :func:`iter_rows` / :func:`iter_inputs` read ``.jsonl``/``.json``/``.parquet``/
  ``save_to_disk`` directories/``datasets.Dataset``/lists with stable row indices, yielding
  a :class:`~sftdata.errors.RowError` for an unreadable row instead of crashing.
* :func:`detect_format` / :func:`normalize` turn one row into a
  :class:`~sftdata.schema.Conversation` or :class:`~sftdata.schema.TextExample`,
  raising a ``RowError`` with a reason code and the field path.
* :func:`iter_examples` does both.

The raw-row pieces other stages use are exported here too (their modules are private):
:class:`RawRow`, :func:`row_problem`, :func:`has_lone_surrogate` (the encoder parses rows
where they are encoded) and :func:`read_text_file` (``--tools-file``).

Formats (:data:`FORMATS`): ``openai``, ``sharegpt``, ``parts``, ``prompt_completion``,
``alpaca``, ``text``. See ``docs/formats.md``.
"""

from ._arguments import parse_arguments
from ._json import RawRow, has_lone_surrogate, row_problem
from ._json_files import read_text_file
from ._tools import normalize_tools
from .detect import FORMATS, detect_format
from .normalize import normalize
from .reader import iter_examples, iter_inputs, iter_rows

__all__ = [
    "FORMATS",
    "RawRow",
    "detect_format",
    "has_lone_surrogate",
    "iter_examples",
    "iter_inputs",
    "iter_rows",
    "normalize",
    "normalize_tools",
    "parse_arguments",
    "read_text_file",
    "row_problem",
]
