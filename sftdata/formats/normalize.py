"""``normalize``: one raw row → :class:`Conversation` or :class:`TextExample`."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError, Reason, RowError
from ..schema import Conversation, TextExample
from ._common import type_name
from .agent_logs import normalize_mini_swe_agent, normalize_swe_agent, normalize_toolbench
from .alpaca import normalize_alpaca
from .detect import FORMATS, detect_format
from .openai import normalize_openai
from .parts import normalize_parts
from .prompt_completion import normalize_prompt_completion
from .sharegpt import normalize_sharegpt
from .text import normalize_text


def check_format(fmt: str | None) -> str | None:
    """Validate a format name (``None`` = auto-detect).

    Raises:
        ConfigError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)} (or None to auto-detect)")
    return fmt


def normalize(
    row: Mapping,
    fmt: str | None = None,
    *,
    messages_field: str | None = None,
    tools_field: str | None = None,
) -> Conversation | TextExample:
    """Normalise one raw row into the canonical model.

    Args:
        row: the input row (a dict as read by :func:`iter_rows`).
        fmt: one of :data:`FORMATS`, or ``None`` to detect it per row (:func:`detect_format`).
        messages_field: key of the message list for chat formats (e.g. ``"traj"``); for
            ``text`` it names the text column.
        tools_field: key of the tool list (default ``tools``, else legacy ``functions``).

    Returns:
        A :class:`Conversation` (chat formats, alpaca, conversational prompt/completion)
        or a :class:`TextExample` (``text``, string prompt/completion).

    Raises:
        RowError: with ``stage="normalize"``, a :class:`Reason` and the field path
            (``messages[3].tool_calls[0].function.arguments``, ``conversations[2].from``).
        ConfigError: ``fmt`` is not a known format.
    """
    check_format(fmt)
    try:
        if not isinstance(row, Mapping):
            raise RowError(Reason.BAD_TYPE, f"a row must be an object, got {type_name(row)}", field=None)
        fmt = fmt or detect_format(row, messages_field)
        if fmt == "openai":
            return normalize_openai(row, messages_field=messages_field, tools_field=tools_field)
        if fmt == "sharegpt":
            return normalize_sharegpt(row, messages_field=messages_field, tools_field=tools_field)
        if fmt == "parts":
            return normalize_parts(row, messages_field=messages_field, tools_field=tools_field)
        if fmt == "prompt_completion":
            return normalize_prompt_completion(row, tools_field=tools_field)
        if fmt == "alpaca":
            return normalize_alpaca(row)
        if fmt == "swe_agent":
            return normalize_swe_agent(row, tools_field=tools_field)
        if fmt == "mini_swe_agent":
            return normalize_mini_swe_agent(row, messages_field=messages_field, tools_field=tools_field)
        if fmt == "toolbench":
            return normalize_toolbench(row, tools_field=tools_field)
        return normalize_text(row, text_field=messages_field or "text")
    except RowError as e:
        raise e.with_context(stage="normalize") from None
