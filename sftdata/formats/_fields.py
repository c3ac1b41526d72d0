"""Which row keys hold the messages and the tools."""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import Reason, RowError
from ..schema import Conversation, Message
from ._tools import normalize_tools

#: Keys searched (in order) for the message list when no ``messages_field`` is given.
MESSAGE_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("messages", "traj", "conversations"),
    "parts": ("messages", "conversations", "traj"),
    "sharegpt": ("conversations", "messages"),
}

#: Keys searched (in order) for the tool list when no ``tools_field`` is given.
TOOLS_KEYS = ("tools", "functions")


def messages_key(row: Mapping, fmt: str, messages_field: str | None) -> str:
    """The key holding the message list: ``messages_field`` or the first non-null default.

    Raises:
        RowError: ``missing_field`` when the key is absent or null.
    """
    if messages_field is not None:
        if row.get(messages_field) is None:
            raise RowError(Reason.MISSING_FIELD, f"missing messages field {messages_field!r}", field=messages_field)
        return messages_field
    candidates = MESSAGE_KEYS[fmt]
    for key in candidates:
        if row.get(key) is not None:
            return key
    raise RowError(
        Reason.MISSING_FIELD,
        f"no message list: none of {list(candidates)} present (keys seen: {sorted(map(str, row))})",
        field=candidates[0],
    )


def row_tools(row: Mapping, tools_field: str | None) -> tuple[dict, ...] | None:
    """The normalised tools of a row (``tools_field``, else ``tools``, else legacy ``functions``)."""
    if tools_field is not None:
        return normalize_tools(row.get(tools_field), tools_field)
    for key in TOOLS_KEYS:
        if row.get(key) is not None:
            return normalize_tools(row[key], key)
    return None


def make_conversation(messages: Sequence[Message], tools, field: str) -> Conversation:
    """Build a :class:`Conversation`; ``empty_conversation`` (at ``field``) when there are no messages."""
    if not messages:
        raise RowError(Reason.EMPTY_CONVERSATION, "conversation has no messages", field=field)
    return Conversation(tuple(messages), tools)
