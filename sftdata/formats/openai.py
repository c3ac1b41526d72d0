"""OpenAI chat format: ``{"messages": [{"role", "content", ...}], "tools": [...]}``.

Also covers OpenAI fine-tuning files (``weight``), legacy function calling
(``function_call`` / ``role: "function"`` / ``functions``), reasoning fields and tau-bench
trajectories (messages under ``traj``). See ``docs/formats.md``.
"""

from __future__ import annotations

from typing import Mapping

from ..schema import Conversation
from ._fields import make_conversation, messages_key, row_tools
from ._messages import parse_messages


def normalize_openai(row: Mapping, *, messages_field: str | None = None, tools_field: str | None = None) -> Conversation:
    """Normalise an OpenAI chat row. Messages are taken verbatim (no id/name inference).

    Args:
        row: the input row.
        messages_field: key of the message list (default: ``messages``, else ``traj``,
            else ``conversations``).
        tools_field: key of the tool list (default: ``tools``, else ``functions``).

    Returns:
        The :class:`Conversation`.

    Raises:
        RowError: with the field path, e.g. ``messages[3].tool_calls[0].function.arguments``.
    """
    key = messages_key(row, "openai", messages_field)
    messages = parse_messages(row[key], key)
    tools = row_tools(row, tools_field)
    return make_conversation(messages, tools, key)
