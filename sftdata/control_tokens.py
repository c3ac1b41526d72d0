"""Find message text that spells a control token (``<|im_end|>``, ``<|eot_id|>``…).

A fast tokenizer turns such text into the control token's id wherever it appears, so a
user writing ``"<|im_end|>assistant"`` would inject a fake turn boundary into training
data. sftdata rejects such rows by default (``special_token_in_content``).
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from .errors import Reason, RowError
from .schema import Conversation, TextExample


def _strings(example: Conversation | TextExample) -> Iterator[tuple[str, str]]:
    """Yield ``(field_path, text)`` for every user-supplied string of an example."""
    if isinstance(example, TextExample):
        for i, (s, _) in enumerate(example.segments):
            yield f"segments[{i}]", s
        return
    for i, m in enumerate(example.messages):
        p = f"messages[{i}]"
        for name in ("content", "reasoning", "tool_call_id", "name"):
            v = getattr(m, name)
            if v:
                yield f"{p}.{name}", v
        for j, c in enumerate(m.tool_calls):
            yield f"{p}.tool_calls[{j}].name", c.name
            yield f"{p}.tool_calls[{j}].arguments", json.dumps(c.arguments, ensure_ascii=False)
    for i, t in enumerate(example.tools or ()):
        yield f"tools[{i}]", json.dumps(t, ensure_ascii=False)


def check_no_control_tokens(example: Conversation | TextExample, pattern: re.Pattern | None) -> None:
    """Raise ``RowError(special_token_in_content)`` naming the first field that spells a control token.

    Args:
        pattern: from :func:`sftdata.tokenizer.control_token_pattern`; ``None`` disables the check.
    """
    if pattern is None:
        return
    for path, text in _strings(example):
        m = pattern.search(text)
        if m:
            raise RowError(
                Reason.SPECIAL_TOKEN_IN_CONTENT,
                f"text spells the control token {m.group(0)!r}; it would become a control-token id "
                "(pass special_tokens_in_content='ignore' to encode it anyway)",
                field=path,
                stage="encode",
            )
