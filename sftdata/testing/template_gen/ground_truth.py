"""The ground truth of a generated template: what the model generates at each assistant turn.

Written from a :class:`~.spec.TemplateSpec`'s flags alone, never by rendering its template:
:func:`expected_turns` says, for every trained assistant message ``k``, the characters the model
generates after the generation prompt of ``m[:k]`` up to and including the stop token, or why
sftdata must reject the row (``turn_split``, ``turn_not_isolated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ...schema import Conversation, ToolCall
from .vocab import ROLE_TOKENS, THINK_OPEN, tojson

if TYPE_CHECKING:
    from .spec import TemplateSpec

__all__ = ["ExpectedTurn", "arguments_text", "calls_text", "expected_turns", "served_arguments"]


@dataclass(frozen=True)
class ExpectedTurn:
    """Assistant message ``k``: the generated ``text``, or the ``reject`` reason (and why)."""

    k: int
    text: str | None = None
    reject: str | None = None
    why: str = ""


def served_arguments(spec: TemplateSpec) -> str:
    """How a serving stack passes tool-call arguments to ``spec``'s template
    (:meth:`sftdata.schema.Conversation.template_messages`'s ``arguments``): ``dict``, ``json``
    or ``auto``."""
    if not spec.tools or spec.tool_format != "json" or spec.args == "dict":
        return "dict"
    return "json" if spec.args == "string" else "auto"


def arguments_text(spec: TemplateSpec, call: ToolCall) -> str:
    """The arguments of ``call`` as a ``json`` tool call of ``spec`` writes them: the given JSON
    text when the template is served text, else ``tojson`` of the dict."""
    mode = served_arguments(spec)
    if mode == "dict" or (mode == "auto" and call.arguments_text is None):
        return tojson(dict(call.arguments))
    return call.arguments_text if call.arguments_text is not None else tojson(dict(call.arguments))


def calls_text(spec: TemplateSpec, calls: Sequence[ToolCall], content: str) -> str:
    """The text ``spec``'s template writes for ``calls`` after ``content`` (``""``: none)."""
    if not spec.tools or not calls:
        return ""
    out = ""
    if spec.tool_format == "python":
        out = "\n[" if content else "["
        out += ", ".join(
            f"{c.name}(" + ", ".join(f"{k}={tojson(v)}" for k, v in dict(c.arguments).items()) + ")" for c in calls
        )
        return out + "]"
    for n, c in enumerate(calls):
        if content or n:
            out += "\n"
        if spec.tool_format == "json":
            out += '<tool_call>\n{"name": "' + c.name + '", "arguments": ' + arguments_text(spec, c) + "}\n</tool_call>"
        else:
            out += f"<tool_call>\n<function={c.name}>\n"
            for k, v in dict(c.arguments).items():
                out += f"<parameter={k}>\n" + (v if isinstance(v, str) else tojson(v)) + "\n</parameter>\n"
            out += "</function>\n</tool_call>"
    return out


def expected_turns(spec: TemplateSpec, conversation: Conversation) -> list[ExpectedTurn]:
    """For every assistant message ``k`` (trained by default): what the model generates at
    inference after the generation prompt of ``m[:k]``, up to and including the stop token,
    or the reason the row must be rejected. Written from the flags, not by rendering."""
    msgs = conversation.messages
    out = []
    for k, m in enumerate(msgs):
        if m.role != "assistant" or m.train is False:
            continue
        strip = str.strip if spec.trim else (lambda x: x)
        c = strip(m.content or "")
        if spec.merge == "assistant" and k > 0 and msgs[k - 1].role == "assistant":
            out.append(ExpectedTurn(k, reject="turn_not_isolated", why="merged into the block of message k-1"))
            continue
        calls = calls_text(spec, m.tool_calls, c)
        if spec.split and c and calls:
            out.append(ExpectedTurn(k, reject="turn_split", why="content and tool calls written as two blocks"))
            continue
        think = ""
        # message k is the last message of F_k: no rewriting rule drops its reasoning
        if spec.reasoning == "think":
            if m.reasoning is not None:
                think = THINK_OPEN + strip(m.reasoning) + "\n</think>\n\n"
            elif spec.think_always:
                think = THINK_OPEN + "\n</think>\n\n"
        body = think + c + calls
        if spec.gen_think and body.startswith(THINK_OPEN):
            body = body[len(THINK_OPEN):]  # the generation prompt holds the opener
        if spec.end == "next":
            nxt = msgs[k + 1].role if k + 1 < len(msgs) else ("tool" if m.tool_calls else "user")
            out.append(ExpectedTurn(k, text=body + ROLE_TOKENS[nxt]))
        elif spec.end == "nl_stop":
            out.append(ExpectedTurn(k, text=body + "\n" + spec.stop))
        else:
            out.append(ExpectedTurn(k, text=body + spec.stop))
    return out
