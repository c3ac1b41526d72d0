"""Prompt/completion format (TRL): ``{"prompt": ..., "completion": ...}``.

* Both strings → :class:`TextExample` ``((prompt, False), (completion, True))``: only the
  completion is trained.
* Both message lists (TRL's conversational prompt-completion) → one :class:`Conversation`
  of prompt + completion messages. Assistant messages inside the prompt get
  ``train=False`` unless they carry an explicit ``train``/``weight``; completion messages
  keep the default (assistant turns trained).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from ..errors import Reason, RowError
from ..schema import Conversation, TextExample
from ._common import require, type_name
from ._fields import make_conversation, row_tools
from ._messages import parse_messages


def normalize_prompt_completion(row: Mapping, *, tools_field: str | None = None) -> Conversation | TextExample:
    """Normalise a prompt/completion row.

    Args:
        row: the input row (``prompt`` and ``completion``, both strings or both message lists).
        tools_field: key of the tool list for conversational rows (default ``tools``).

    Returns:
        A :class:`TextExample` for strings, a :class:`Conversation` for message lists.

    Raises:
        RowError: ``missing_field`` (``prompt``/``completion``), ``bad_type`` (mixed or
            other types), and message errors with ``prompt[i]…``/``completion[i]…`` paths.
    """
    prompt = require(row, "prompt")
    completion = require(row, "completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return TextExample(((prompt, False), (completion, True)))
    if isinstance(prompt, (list, tuple)) and isinstance(completion, (list, tuple)):
        head = [
            replace(m, train=False) if m.role == "assistant" and m.train is None else m
            for m in parse_messages(prompt, "prompt")
        ]
        tail = parse_messages(completion, "completion")
        return make_conversation(head + tail, row_tools(row, tools_field), "completion")
    bad = "completion" if isinstance(prompt, (str, list, tuple)) else "prompt"
    raise RowError(
        Reason.BAD_TYPE,
        f"prompt and completion must both be strings or both be message lists, "
        f"got {type_name(prompt)} and {type_name(completion)}",
        field=bad,
    )
