"""Plain text format: ``{"text": ...}`` → ``TextExample(((text, True),))`` (all trained)."""

from __future__ import annotations

from typing import Mapping

from ..errors import Reason, RowError
from ..schema import TextExample
from ._common import expect_str, require


def normalize_text(row: Mapping, *, text_field: str = "text") -> TextExample:
    """Normalise a plain-text row.

    Args:
        row: the input row.
        text_field: key of the text (default ``text``).

    Returns:
        ``TextExample(((text, True),))``.

    Raises:
        RowError: ``missing_field``, ``bad_type`` (not a string), ``empty_conversation`` ("").
    """
    text = expect_str(require(row, text_field), text_field)
    if not text:
        raise RowError(Reason.EMPTY_CONVERSATION, "text is empty", field=text_field)
    return TextExample(((text, True),))
