"""The canonical trace model: ``Conversation`` = ``messages`` + optional ``tools``.

Every reader in :mod:`sftdata.formats` normalises its input into these types, and
everything downstream (rendering, masking) reads only these types. They are small,
immutable and validated on construction, so a bad row fails here with the field path.

Example::

    Conversation(
        messages=(
            Message("system", "You are terse."),
            Message("user", "Weather in Paris?"),
            Message("assistant", None, reasoning="Need the tool.",
                    tool_calls=(ToolCall("get_weather", {"city": "Paris"}, id="c1"),)),
            Message("tool", "18C", tool_call_id="c1", name="get_weather"),
            Message("assistant", "18C and sunny."),
        ),
        tools=({"type": "function", "function": {"name": "get_weather", ...}},),
    )

Arguments of tool calls are dicts (JSON objects). In Arrow they are stored as JSON
text (``arguments_json``), and so are the tool schemas (``tools_json``): Arrow would
otherwise unify structs that differ between rows by filling missing keys with null,
and a template would render ``"cmd": null`` into the training text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa

from .errors import Reason, RowError


class Role(str, Enum):
    """Message roles of the canonical model (OpenAI chat roles)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


ROLES = frozenset(r.value for r in Role)


def _check_str(value: Any, field_path: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise RowError(Reason.BAD_TYPE, f"expected a string, got {type(value).__name__}", field=field_path)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One structured tool call made by an assistant message.

    Attributes:
        name: the function name.
        arguments: the arguments as a JSON object (a ``dict``), never a string.
        id: the call id (``call_…``) when the source has one, else ``None``.
        arguments_text: the JSON text of the arguments exactly as the source gave it (the
            OpenAI format stores what the model generated as a string), or ``None`` when the
            source gave an object. Rendering passes it verbatim (``tool_arguments="auto"``),
            so compact separators, ``1e5``, ``1.10`` or ``\\u00e9`` escapes are not rewritten.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    arguments_text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise RowError(Reason.BAD_TOOL_CALL, "tool call needs a non-empty string name", field="name")
        if not isinstance(self.arguments, Mapping):
            raise RowError(
                Reason.BAD_ARGUMENTS,
                f"tool call arguments must be a JSON object, got {type(self.arguments).__name__}",
                field="arguments",
            )
        _check_str(self.id, "id")
        _check_str(self.arguments_text, "arguments")

    def to_template(self, arguments: str = "auto") -> dict:
        """The OpenAI/transformers shape templates expect.

        Args:
            arguments: ``"auto"`` (as the source gave them: the original JSON text, else the
                dict), ``"dict"`` (always the dict) or ``"json"`` (always JSON text: the
                original, else ``json.dumps`` of the dict).
        """
        if arguments == "dict" or (arguments == "auto" and self.arguments_text is None):
            args: Any = dict(self.arguments)
        else:
            args = self.arguments_text if self.arguments_text is not None else json.dumps(dict(self.arguments), ensure_ascii=False)
        out: dict[str, Any] = {"type": "function", "function": {"name": self.name, "arguments": args}}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool`` (a :class:`Role` or its value).
        content: the text, or ``None`` when absent (e.g. beside tool calls).
        reasoning: assistant thinking text (rendered by templates that support it as
            ``reasoning_content``), or ``None``.
        tool_calls: structured calls (assistant only).
        tool_call_id: the id of the call a ``tool`` message answers.
        name: the tool name on a ``tool`` message.
        train: per-message override of the default training decision
            (``None`` = use the default: assistant turns are trained).
    """

    role: str
    content: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    train: bool | None = None

    def __post_init__(self) -> None:
        role = self.role.value if isinstance(self.role, Role) else self.role
        if not isinstance(role, str) or role not in ROLES:
            raise RowError(
                Reason.UNKNOWN_ROLE,
                f"unknown role {self.role!r}; expected one of {sorted(ROLES)}",
                field="role",
            )
        object.__setattr__(self, "role", role)
        _check_str(self.content, "content")
        _check_str(self.reasoning, "reasoning")
        _check_str(self.tool_call_id, "tool_call_id")
        _check_str(self.name, "name")
        if self.train is not None and not isinstance(self.train, bool):
            raise RowError(Reason.BAD_TYPE, "train must be a boolean or null", field="train")
        calls = tuple(self.tool_calls)
        object.__setattr__(self, "tool_calls", calls)
        for i, call in enumerate(calls):
            if not isinstance(call, ToolCall):
                raise RowError(Reason.BAD_TOOL_CALL, "tool_calls items must be ToolCall", field=f"tool_calls[{i}]")
        if calls and role != "assistant":
            raise RowError(Reason.BAD_TOOL_CALL, f"tool calls on a {role} message", field="tool_calls")
        if self.reasoning is not None and role != "assistant":
            raise RowError(Reason.BAD_TYPE, f"reasoning on a {role} message", field="reasoning")

    def to_template(self, arguments: str = "auto") -> dict:
        """The message dict passed to a chat template (transformers' conventions).

        ``reasoning`` is passed under every name real templates read (:data:`REASONING_KEYS`:
        ``reasoning_content`` for Qwen3, DeepSeek, GLM, Kimi; ``reasoning`` for templates
        following OpenAI's Responses/vLLM naming; ``thinking`` for gpt-oss), whichever name the
        input used; templates that read none of them ignore it.
        ``arguments``: how tool-call arguments are passed (see :meth:`ToolCall.to_template`).
        """
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            for key in REASONING_KEYS:
                out[key] = self.reasoning
        if self.tool_calls:
            out["tool_calls"] = [c.to_template(arguments) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


#: The message keys a chat template may read a turn's reasoning from; an assistant message's
#: ``reasoning`` is passed under each of them (:meth:`Message.to_template`).
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


@dataclass(frozen=True, slots=True)
class Conversation:
    """A validated conversation: messages plus optional tool (function) JSON schemas.

    Raises:
        RowError: ``empty_conversation`` if there are no messages, ``bad_tools`` if a
            tool schema is not a JSON object; message errors carry ``messages[i].…`` paths.
    """

    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        msgs = tuple(self.messages)
        object.__setattr__(self, "messages", msgs)
        if not msgs:
            raise RowError(Reason.EMPTY_CONVERSATION, "conversation has no messages", field="messages")
        for i, m in enumerate(msgs):
            if not isinstance(m, Message):
                raise RowError(Reason.BAD_TYPE, "messages items must be Message", field=f"messages[{i}]")
        if self.tools is not None:
            tools = tuple(self.tools)
            for i, t in enumerate(tools):
                if not isinstance(t, Mapping):
                    raise RowError(Reason.BAD_TOOLS, "tool schema must be a JSON object", field=f"tools[{i}]")
            object.__setattr__(self, "tools", tools or None)

    def template_messages(self, arguments: str = "auto") -> list[dict]:
        """Messages as dicts for a chat template (``arguments``: see :meth:`ToolCall.to_template`)."""
        return [m.to_template(arguments) for m in self.messages]

    @property
    def has_tool_calls(self) -> bool:
        """Whether any message of the conversation calls a tool."""
        return any(m.tool_calls for m in self.messages)

    def template_tools(self) -> list[dict] | None:
        """Tools as a list of dicts for a chat template, or ``None``."""
        return [dict(t) for t in self.tools] if self.tools else None

    # ---- Arrow / JSON round trip -------------------------------------------------

    def to_row(self) -> dict:
        """A plain dict matching :data:`CONVERSATION_ARROW_SCHEMA` (arguments and tools as JSON text)."""
        return {
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "reasoning": m.reasoning,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "name": c.name,
                            "arguments_json": json.dumps(c.arguments, ensure_ascii=False),
                            "arguments_text": c.arguments_text,
                        }
                        for c in m.tool_calls
                    ],
                    "tool_call_id": m.tool_call_id,
                    "name": m.name,
                    "train": m.train,
                }
                for m in self.messages
            ],
            "tools_json": json.dumps(list(self.tools), ensure_ascii=False) if self.tools else None,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Conversation":
        """Inverse of :meth:`to_row`."""
        messages = []
        for i, m in enumerate(row["messages"]):
            try:
                calls = tuple(
                    ToolCall(c["name"], json.loads(c["arguments_json"]), c.get("id"), c.get("arguments_text"))
                    for c in (m.get("tool_calls") or [])
                )
                messages.append(
                    Message(
                        m["role"],
                        m.get("content"),
                        reasoning=m.get("reasoning"),
                        tool_calls=calls,
                        tool_call_id=m.get("tool_call_id"),
                        name=m.get("name"),
                        train=m.get("train"),
                    )
                )
            except RowError as e:
                raise e.with_context(field_prefix=f"messages[{i}]") from None
        tools = json.loads(row["tools_json"]) if row.get("tools_json") else None
        return cls(tuple(messages), tuple(tools) if tools else None)


def build_conversation(messages: Iterable[Message], tools: Iterable[Mapping[str, Any]] | None = None) -> Conversation:
    """Build a :class:`Conversation`, re-raising message errors with ``messages[i]`` field paths."""
    return Conversation(tuple(messages), tuple(tools) if tools else None)


_TOOL_CALL_TYPE = pa.struct(
    [("id", pa.string()), ("name", pa.string()), ("arguments_json", pa.string()), ("arguments_text", pa.string())]
)
_MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("reasoning", pa.string()),
        ("tool_calls", pa.list_(_TOOL_CALL_TYPE)),
        ("tool_call_id", pa.string()),
        ("name", pa.string()),
        ("train", pa.bool_()),
    ]
)

#: Arrow schema for normalised conversations (see :meth:`Conversation.to_row`).
CONVERSATION_ARROW_SCHEMA = pa.schema([("messages", pa.list_(_MESSAGE_TYPE)), ("tools_json", pa.string())])


@dataclass(frozen=True, slots=True)
class TextExample:
    """A non-chat example: text segments rendered without a chat template.

    ``segments`` is a tuple of ``(text, trained)`` pairs, concatenated in order.
    Plain ``text`` rows are ``((text, True),)``; string prompt/completion rows are
    ``((prompt, False), (completion, True))`` (completion-only loss, as TRL does for
    non-conversational prompt-completion data). The encoder appends the tokenizer's
    EOS token, trained, when the last segment is trained.
    """

    segments: tuple[tuple[str, bool], ...]

    def __post_init__(self) -> None:
        segs = tuple((s, bool(t)) for s, t in self.segments)
        object.__setattr__(self, "segments", segs)
        if not segs or not any(s for s, _ in segs):
            raise RowError(Reason.EMPTY_CONVERSATION, "text example is empty", field="text")
        for i, (s, _) in enumerate(segs):
            if not isinstance(s, str):
                raise RowError(Reason.BAD_TYPE, f"expected a string, got {type(s).__name__}", field=f"segments[{i}]")


#: What a reader yields for one row.
Example = Conversation | TextExample
