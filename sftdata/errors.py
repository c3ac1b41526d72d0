"""Errors raised for bad input rows, with the row, the field path and a reason code.

Every error that concerns one input row is a :class:`RowError`. It carries

* ``reason``: a stable snake_case code (one of :class:`Reason`), used as the key of
  the rejects counters in ``stats.json`` and in ``rejects.jsonl``;
* ``field``: the path of the offending field, e.g. ``messages[3].tool_calls[0].arguments``;
* ``row``: the index of the input row (0-based, across all input files, in reading order);
* ``stage``: the pipeline stage that found it (``read``, ``normalize``, ``render``,
  ``encode``, ``check``, ``truncate``).

With ``on_error="raise"`` the error propagates and its message names all of these;
with ``on_error="skip"`` it is written to ``rejects.jsonl``.
"""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Stable reason codes for rejected or dropped rows."""

    MALFORMED_JSON = "malformed_json"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_UNICODE = "invalid_unicode"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    UNKNOWN_ROLE = "unknown_role"
    BAD_TOOL_CALL = "bad_tool_call"
    BAD_ARGUMENTS = "bad_arguments"
    BAD_TOOLS = "bad_tools"
    EMPTY_CONVERSATION = "empty_conversation"
    INVALID_TRACE = "invalid_trace"
    NO_TRAINED_TURN = "no_trained_turn"
    SPECIAL_TOKEN_IN_CONTENT = "special_token_in_content"
    TEMPLATE_ERROR = "template_error"
    TURN_NOT_LOCATED = "turn_not_located"  # kept for old rejects files; no longer raised
    TURN_NOT_ISOLATED = "turn_not_isolated"  # history rewritten and the turn's own text cannot be told apart
    TURN_SPLIT = "turn_split"  # the template renders more of the message after the turn's stop token
    TURN_REWRITTEN = "turn_rewritten"  # policy `all`: the rendering does not hold the turn as generated
    RENDER_LIMIT = "render_limit"
    MASK_CHECK_FAILED = "mask_check_failed"
    TOO_LONG = "too_long"
    NO_TRAINED_TOKEN_AFTER_TRUNCATION = "no_trained_token_after_truncation"


class SftDataError(Exception):
    """Base class of all sftdata errors."""


class ConfigError(SftDataError, ValueError):
    """An option or argument is invalid (not tied to one input row)."""


class RowError(SftDataError, ValueError):
    """One input row cannot be turned into training data.

    Args:
        reason: a :class:`Reason` (or its string value).
        message: a human sentence saying what is wrong.
        field: path of the offending field inside the row, e.g. ``messages[2].role``.
        row: 0-based input row index; filled in by the pipeline if unknown where raised.
        stage: pipeline stage name; filled in by the pipeline if unknown where raised.
        length: for ``too_long``: the length (tokens) of the shortest example of the row,
            so a report can say how far ``max_length`` is from fitting anything.
    """

    def __init__(
        self,
        reason: Reason | str,
        message: str,
        *,
        field: str | None = None,
        row: int | None = None,
        stage: str | None = None,
        length: int | None = None,
    ) -> None:
        self.reason = Reason(reason)
        self.message = message
        self.field = field
        self.row = row
        self.stage = stage
        self.length = length
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field {self.field}")
        if self.stage:
            where.append(f"stage {self.stage}")
        prefix = ", ".join(where)
        return f"[{self.reason.value}] {prefix + ': ' if prefix else ''}{self.message}"

    def with_context(self, *, row: int | None = None, stage: str | None = None, field_prefix: str | None = None) -> "RowError":
        """Return this error with row/stage filled in (existing values win) and the field prefixed."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field else field_prefix
        return RowError(
            self.reason,
            self.message,
            field=field,
            row=self.row if self.row is not None else row,
            stage=self.stage if self.stage is not None else stage,
            length=self.length,
        )

    def detached(self) -> "RowError":
        """This error without its traceback and the exception it was raised from; returns it.

        Call it on an error that is kept after the ``except`` that caught it (a rejected row's
        error, a first failure retried): its traceback holds the frames it passed through, and
        their locals (the batch being encoded, the error itself), a reference cycle that only a
        full garbage collection frees. Everything the error says is in its fields.
        """
        self.__traceback__ = None
        self.__context__ = None
        self.__cause__ = None
        return self

    def to_dict(self) -> dict:
        """JSON-able form used in ``rejects.jsonl`` (``length`` only when known)."""
        out = {
            "row": self.row,
            "stage": self.stage,
            "reason": self.reason.value,
            "field": self.field,
            "message": self.message,
        }
        if self.length is not None:
            out["length"] = self.length
        return out

    def __reduce__(self):  # keyword-only arguments: pickle through the constructor's keywords
        return _rebuild_row_error, (self.reason.value, self.message, self.field, self.row, self.stage, self.length)


def _rebuild_row_error(reason, message, field, row, stage, length) -> RowError:
    return RowError(reason, message, field=field, row=row, stage=stage, length=length)
