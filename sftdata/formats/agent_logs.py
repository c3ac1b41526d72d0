"""Agent-framework logs: SWE-agent ``.traj``, mini-swe-agent trajectories, ToolBench answers.

Each is one conversation per file; the reader (:mod:`sftdata.formats.reader`) turns a file
into one row, these functions turn the row into a :class:`~sftdata.schema.Conversation`.
Their message dicts are OpenAI-style and go through the same message parser as the
``openai`` format (:func:`~sftdata.formats._messages.parse_message`), so every rule of
``docs/formats.md`` (roles, tool calls, arguments, reasoning) holds; only what differs is
handled here:

* **SWE-agent** (``{"trajectory", "history", "info", "replay_config", ...}``): the chat is
  ``history``. Extra keys of its items (``agent``, ``message_type``, ``thought``,
  ``action``, ``tags``, ``cache_control``) are bookkeeping and ignored (``thought`` and
  ``action`` are parsed back out of ``content``, which is the model's raw output).
  ``is_demo: true`` items (a demonstration shown to the model) are kept as context and
  never trained. A ``tool`` item answers the call in ``tool_call_ids`` (a list: more than
  one id on one item is ``bad_tool_call``). ``thinking_blocks`` become the reasoning when
  no reasoning field is set. The tool schemas are not in the file: attach them with
  ``--tools-file``.
* **mini-swe-agent** (``{"info", "messages", "trajectory_format": "mini-swe-agent-…"}``, or
  a bare JSON array of its messages): the chat is ``messages``; ``extra`` is ignored; the
  final ``role: "exit"`` message (the run's exit status, not a chat turn) is dropped, an
  ``exit`` message anywhere else is ``unknown_role``.
* **ToolBench** answers (``{"answer_generation": {"valid_data", "train_messages",
  "function", ...}, ...}``): ``train_messages`` holds the growing prefixes of the answer
  path, the last one being the whole path: it is the conversation (legacy
  ``function_call`` / ``role: "function"`` messages); ``function`` holds the tool schemas.
  ``valid_data: false`` is ``invalid_trace`` (ToolBench's own preprocessing drops such
  answers). Prefixes that are not prefixes of the last one (abandoned branches of the
  search) are not trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import Reason, RowError
from ..schema import Conversation, Message
from ._common import at, expect_list, expect_mapping, type_name
from ._fields import make_conversation, row_tools
from ._messages import parse_message
from ._tools import normalize_tools

#: ``trajectory_format`` prefix written by mini-swe-agent.
MINI_SWE_AGENT_FORMAT = "mini-swe-agent"


def is_swe_agent(row: Mapping) -> bool:
    """A SWE-agent trajectory: ``history`` is a list of message objects (not alpaca pairs)."""
    history = row.get("history")
    return (
        isinstance(history, list)
        and bool(history)
        and isinstance(history[0], Mapping)
        and "role" in history[0]
    )


def is_mini_swe_agent(row: Mapping) -> bool:
    """``trajectory_format`` names mini-swe-agent, or ``messages`` ends with its ``exit`` message."""
    fmt = row.get("trajectory_format")
    if isinstance(fmt, str) and fmt.startswith(MINI_SWE_AGENT_FORMAT):
        return True
    messages = row.get("messages")
    return isinstance(messages, list) and bool(messages) and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "exit"


def is_toolbench(row: Mapping) -> bool:
    """A ToolBench answer: ``answer_generation`` holding ``train_messages`` or ``valid_data``
    (ToolBench's invalid answers may come without ``train_messages``: they are ToolBench rows
    all the same, rejected ``invalid_trace``)."""
    ag = row.get("answer_generation")
    return isinstance(ag, Mapping) and ("train_messages" in ag or "valid_data" in ag)


def _parse_all(items: list, field: str, convert) -> list[Message]:
    out = []
    for i, item in enumerate(items):
        with at(f"{field}[{i}]"):
            msg = convert(item)
            if msg is not None:
                out.append(msg)
    return out


def _swe_agent_message(item: Any) -> Message:
    item = expect_mapping(item, None, what="a message object")
    d = dict(item)
    ids = d.pop("tool_call_ids", None)
    if ids is not None and d.get("tool_call_id") is None:
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise RowError(Reason.BAD_TYPE, f"tool_call_ids must be a list of strings, got {type_name(ids)}", field="tool_call_ids")
        if len(ids) > 1:
            raise RowError(Reason.BAD_TOOL_CALL, f"one tool message answers {len(ids)} calls {ids}", field="tool_call_ids")
        if ids:
            d["tool_call_id"] = ids[0]
    blocks = d.pop("thinking_blocks", None)
    if blocks and not any(d.get(k) is not None for k in ("reasoning_content", "reasoning", "thinking")):
        texts = []
        for j, b in enumerate(expect_list(blocks, "thinking_blocks")):
            b = expect_mapping(b, f"thinking_blocks[{j}]")
            if isinstance(b.get("thinking"), str):
                texts.append(b["thinking"])
        if texts:
            d["reasoning_content"] = "\n".join(texts)
    demo = d.pop("is_demo", None)
    msg = parse_message(d)
    return replace(msg, train=False) if demo is True else msg


def normalize_swe_agent(row: Mapping, *, tools_field: str | None = None) -> Conversation:
    """A SWE-agent ``.traj`` row → :class:`Conversation` (see module doc).

    Raises:
        RowError: with paths like ``history[7].tool_call_ids``.
    """
    history = expect_list(row.get("history"), "history")
    messages = _parse_all(history, "history", _swe_agent_message)
    return make_conversation(messages, row_tools(row, tools_field), "history")


def normalize_mini_swe_agent(row: Mapping, *, messages_field: str | None = None, tools_field: str | None = None) -> Conversation:
    """A mini-swe-agent trajectory row → :class:`Conversation` (see module doc).

    Raises:
        RowError: ``unknown_role`` for an ``exit`` message that is not the last one.
    """
    key = messages_field or "messages"
    items = list(expect_list(row.get(key), key))
    while items and isinstance(items[-1], Mapping) and items[-1].get("role") == "exit":
        items.pop()
    messages = _parse_all(items, key, lambda item: parse_message(item))
    return make_conversation(messages, row_tools(row, tools_field), key)


def normalize_toolbench(row: Mapping, *, tools_field: str | None = None) -> Conversation:
    """A ToolBench answer row → :class:`Conversation` (see module doc).

    Raises:
        RowError: ``invalid_trace`` (``valid_data`` false), ``empty_conversation`` (no
            ``train_messages``), ``bad_tools`` (tools both in ``function`` and in the row).
    """
    ag = expect_mapping(row.get("answer_generation"), "answer_generation")
    if ag.get("valid_data") is False:
        raise RowError(Reason.INVALID_TRACE, "ToolBench marks this answer invalid (valid_data: false)", field="answer_generation.valid_data")
    prefixes = expect_list(ag.get("train_messages"), "answer_generation.train_messages")
    if not prefixes:
        raise RowError(Reason.EMPTY_CONVERSATION, "no train_messages", field="answer_generation.train_messages")
    last = len(prefixes) - 1
    field = f"answer_generation.train_messages[{last}]"
    items = expect_list(prefixes[last], field)
    messages = _parse_all(items, field, lambda item: parse_message(item))
    own = normalize_tools(ag.get("function"), "answer_generation.function")
    extra = row_tools(row, tools_field)
    if own and extra:
        raise RowError(Reason.BAD_TOOLS, "tools given twice: in answer_generation.function and in the row (--tools-file?)", field=tools_field or "tools")
    return make_conversation(messages, own or extra, field)
