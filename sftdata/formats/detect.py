"""Per-row format detection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Reason, RowError
from ._common import type_name
from .agent_logs import is_mini_swe_agent, is_swe_agent, is_toolbench

#: The formats :func:`sftdata.formats.normalize` understands.
FORMATS = ("openai", "sharegpt", "parts", "prompt_completion", "alpaca", "text", "swe_agent", "mini_swe_agent", "toolbench")

#: Keys probed (in order) for a message list during detection.
CHAT_KEYS = ("messages", "conversations", "traj")


def sniff_messages(items: Any) -> str:
    """Which chat format a message list is in: ``sharegpt``, ``parts`` or ``openai``.

    * the first object item has a non-null ``from`` (or ``value`` and no ``role``) → ``sharegpt``;
    * some ``content`` is a list holding a part with a non-null ``value`` or of type
      ``reasoning``/``tool_call`` → ``parts``;
    * anything else (including a non-list, which the reader then rejects) → ``openai``.
    """
    if not isinstance(items, (list, tuple)):
        return "openai"
    first = next((m for m in items if isinstance(m, Mapping)), None)
    if first is not None and (first.get("from") is not None or (first.get("value") is not None and first.get("role") is None)):
        return "sharegpt"
    for m in items:
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, Mapping) and (
                    part.get("value") is not None or part.get("type") in ("reasoning", "tool_call")
                ):
                    return "parts"
    return "openai"


def detect_format(row: Mapping, messages_field: str | None = None) -> str:
    """Detect the format of one row.

    Rules, first match wins (a key counts only when its value is not null, since Arrow
    fills keys absent from a row with null):

    1. ``messages_field`` given → the chat format of that list (see :func:`sniff_messages`).
    2. agent-framework logs (:mod:`sftdata.formats.agent_logs`): ``answer_generation``
       with ``train_messages`` or ``valid_data`` → ``toolbench``; ``history`` holding message objects →
       ``swe_agent``; ``trajectory_format`` naming mini-swe-agent, or ``messages`` ending
       with an ``exit`` message → ``mini_swe_agent``.
    3. ``prompt`` and ``completion`` → ``prompt_completion``.
    4. ``messages``, else ``conversations``, else ``traj`` → its chat format.
    5. ``instruction`` and ``output`` → ``alpaca``.
    6. ``text`` → ``text``.

    Args:
        row: the input row.
        messages_field: key of the message list, if not a default one.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        RowError: ``unknown_format`` (``field=None``) naming the keys seen;
            ``missing_field`` when ``messages_field`` is given but absent;
            ``bad_type`` when the row is not an object.
    """
    if not isinstance(row, Mapping):
        raise RowError(Reason.BAD_TYPE, f"a row must be an object, got {type_name(row)}", field=None)
    if messages_field is not None:
        if row.get(messages_field) is None:
            raise RowError(Reason.MISSING_FIELD, f"missing messages field {messages_field!r}", field=messages_field)
        return sniff_messages(row[messages_field])
    if is_toolbench(row):
        return "toolbench"
    if is_swe_agent(row):
        return "swe_agent"
    if is_mini_swe_agent(row):
        return "mini_swe_agent"
    if row.get("prompt") is not None and row.get("completion") is not None:
        return "prompt_completion"
    for key in CHAT_KEYS:
        if row.get(key) is not None:
            return sniff_messages(row[key])
    if row.get("instruction") is not None and row.get("output") is not None:
        return "alpaca"
    if row.get("text") is not None:
        return "text"
    seen = sorted(str(k) for k, v in row.items() if v is not None)
    raise RowError(
        Reason.UNKNOWN_FORMAT,
        f"cannot detect the format from keys {seen}; expected messages/conversations/traj (chat), "
        "prompt+completion, instruction+output (alpaca), text, or an agent log (SWE-agent history, "
        "mini-swe-agent messages, ToolBench answer_generation)",
        field=None,
    )
