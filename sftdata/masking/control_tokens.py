"""Find message text that spells a control token (``<|im_end|>``, ``<|eot_id|>``…).

A fast tokenizer turns such text into the control token's id wherever it appears, so a
user writing ``"<|im_end|>assistant"`` would inject a fake turn boundary into training
data. sftdata rejects such rows by default (``special_token_in_content``).
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from ..errors import Reason, RowError
from ..schema import Conversation, TextExample


def user_strings(example: Conversation | TextExample) -> Iterator[tuple[str, str]]:
    """Yield ``(field_path, text)`` for every user-supplied string of an example (field paths like
    ``messages[2].content``, ``segments[0]``): the strings checked for control tokens."""
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
            if c.arguments_text is not None:
                yield f"{p}.tool_calls[{j}].arguments", c.arguments_text
    for i, t in enumerate(example.tools or ()):
        yield f"tools[{i}]", json.dumps(t, ensure_ascii=False)


def check_no_control_tokens(example: Conversation | TextExample, pattern: re.Pattern | None) -> None:
    """Raise ``RowError(special_token_in_content)`` naming the first field that spells a control token.

    Args:
        pattern: from :func:`sftdata.masking.tokenizer.control_token_pattern`; ``None`` disables the check.
    """
    if pattern is None:
        return
    for path, text in user_strings(example):
        m = pattern.search(text)
        if m:
            raise RowError(
                Reason.SPECIAL_TOKEN_IN_CONTENT,
                f"text spells the control token {m.group(0)!r}; it would become a control-token id "
                "(special_tokens_in_content='text' keeps such text as plain text)",
                field=path,
                stage="encode",
            )


#: Private-use markers around control-token text that must stay plain text
#: (the convention of transformers' ``sanitize_control_tokens``).
MARK_START = "\ue000"
MARK_END = "\ue001"


def _mark_str(text: str, pattern: re.Pattern) -> str:
    text = text.replace(MARK_START, "").replace(MARK_END, "")
    return pattern.sub(lambda m: MARK_START + m.group(0) + MARK_END, text)


def _mark_value(value, pattern: re.Pattern):
    if isinstance(value, str):
        return _mark_str(value, pattern)
    if isinstance(value, dict):
        return {k: _mark_value(v, pattern) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mark_value(v, pattern) for v in value)
    return value


def mark_control_tokens(example: Conversation | TextExample, pattern: re.Pattern | None) -> Conversation | TextExample:
    """Wrap control-token text in every user-supplied string with private-use markers.

    The encoder then encodes each marked occurrence as plain text (through the
    pre-tokenizer and the BPE model, never the added-token vocabulary) and drops the
    markers; a template that splits a marked string apart leaves lone markers, which are
    dropped too. Used with ``special_tokens_in_content="text"``.
    """
    from dataclasses import replace

    if pattern is None:
        return example
    if isinstance(example, TextExample):
        return TextExample(tuple((_mark_str(s, pattern), t) for s, t in example.segments))
    msgs = []
    for m in example.messages:
        msgs.append(
            replace(
                m,
                content=_mark_str(m.content, pattern) if m.content else m.content,
                reasoning=_mark_str(m.reasoning, pattern) if m.reasoning else m.reasoning,
                tool_calls=tuple(
                    replace(
                        c,
                        arguments=_mark_value(dict(c.arguments), pattern),
                        arguments_text=_mark_str(c.arguments_text, pattern) if c.arguments_text is not None else None,
                    )
                    for c in m.tool_calls
                ),
            )
        )
    tools = tuple(_mark_value(dict(t), pattern) for t in example.tools) if example.tools else None
    return Conversation(tuple(msgs), tools)
