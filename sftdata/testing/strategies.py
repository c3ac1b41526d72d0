"""Hypothesis strategies for :class:`sftdata.schema.Conversation` (test your own templates with them).

Needs ``hypothesis`` (the ``sftdata[test]`` extra). The main entry point is
:func:`conversations` (or :func:`conversations_for`, which takes a template's
:class:`~sftdata.testing.tokenizers.TemplateCaps`); the building blocks (:func:`texts`,
:func:`json_values`, :func:`tool_schemas`, :func:`tool_calls`, :func:`messages`, ...) are
exported too (the tool ones are defined in :mod:`sftdata.testing.tool_strategies`, the text
ones in :mod:`sftdata.testing.text_strategies`). Example::

    from hypothesis import given
    from sftdata.testing.strategies import conversations

    @given(conversations(tools=True, reasoning=True))
    def test_my_template(conv):
        text = tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=False)
        ...

Generated conversations always have a valid role order:

* an optional system message first;
* then turns: a user message, then an assistant "chain": zero or more rounds of an
  assistant message with tool calls followed by one tool message per call (same order,
  matching ``tool_call_id`` and ``name``), then a final assistant message without calls;
* the last turn may be cut short (``ends_with``): the conversation can end on a user
  message, on tool results, or on an assistant message with tool calls.

User and assistant turns alternate (ignoring tool-call rounds), so templates that demand
strict alternation (Gemma, Cohere) accept them when ``tools=False``.

Text deliberately varies its whitespace (leading/trailing spaces and newlines, blank
lines, tabs, ``\\r\\n``): many real templates strip or trim content (Llama 3 ``| trim``,
Gemma ``| trim``, Qwen3 strips newlines around reasoning), and that is exactly where
assistant masks break. Pass ``whitespace="stripped"`` to get text without leading or
trailing whitespace when a test needs content to appear verbatim in a trimming template.

Text never contains any of ``special_strings`` unless ``special_token_text=True``; then
those strings are mixed in (to test the "content looks like a control token" path).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Literal

from hypothesis import strategies as st

from ..schema import Conversation, Message
from .text_strategies import (  # re-exported
    SPECIAL_STRINGS,
    Whitespace,
    json_values,
    texts,
)
from .tool_strategies import arguments, tool_calls, tool_names, tool_schemas  # re-exported

EndsWith = Literal["any", "assistant", "user", "tool"]

__all__ = [
    "SPECIAL_STRINGS",
    "arguments",
    "assert_well_formed",
    "conversations",
    "conversations_for",
    "json_values",
    "messages",
    "texts",
    "tool_calls",
    "tool_names",
    "tool_schemas",
]


def messages(
    role: Literal["system", "user", "assistant", "tool"] = "user",
    *,
    text: st.SearchStrategy[str] | None = None,
    reasoning: bool = False,
) -> st.SearchStrategy[Message]:
    """One :class:`Message` of ``role`` (no tool calls; a ``tool`` message has no id/name).

    Args:
        role: the role.
        text: the content strategy (default :func:`texts`).
        reasoning: for ``assistant``, sometimes add ``reasoning`` (possibly ``""``).
    """
    text = text if text is not None else texts()
    if role == "assistant" and reasoning:
        return st.builds(lambda c, r: Message("assistant", c, reasoning=r), text, st.none() | text)
    return text.map(lambda c: Message(role, c))


def conversations(
    *,
    min_turns: int = 1,
    max_turns: int = 3,
    system: bool = True,
    tools: bool = True,
    reasoning: bool = True,
    parallel_calls: bool = True,
    call_content: bool = True,
    none_content: bool = True,
    max_tool_rounds: int = 2,
    max_parallel: int = 3,
    call_ids: bool = True,
    call_id_length: int | None = None,
    special_token_text: bool = False,
    special_strings: Iterable[str] = SPECIAL_STRINGS,
    unicode: bool = True,
    whitespace: Whitespace = "any",
    empty_content: bool = True,
    inline_think: bool = False,
    ends_with: EndsWith = "any",
    long: bool = False,
) -> st.SearchStrategy[Conversation]:
    """Valid :class:`Conversation` objects (see the module docstring for the role order).

    Args:
        min_turns, max_turns: number of user turns (``long=True`` raises the default bound to 12).
        system: sometimes start with a system message.
        tools: attach tool schemas and sometimes make tool-call rounds with tool results.
        reasoning: sometimes give assistant messages ``reasoning`` (possibly ``""``).
        parallel_calls: allow several calls in one assistant message (up to ``max_parallel``).
        call_content: allow text content beside tool calls; when ``False`` the content of a
            tool-calling message is ``None`` or ``""`` (only ``""`` if ``none_content`` is ``False``).
        none_content: allow ``content=None`` on tool-calling messages.
        max_tool_rounds: most tool-call rounds before the final assistant answer of a turn.
        call_ids: give calls ids, unique in the conversation (tool messages then carry the
            matching ``tool_call_id``); else ids are ``None``.
        call_id_length: make every id exactly this many ASCII letters and digits (see
            :func:`tool_calls`); ``None``: ids like ``call_x7Qa_0``.
        special_token_text, special_strings, unicode, whitespace: passed to :func:`texts`.
        empty_content: allow ``""`` as content (about one content in ten).
        inline_think: sometimes write reasoning into the content as a leading
            ``<think>\n...\n</think>\n\n`` block (as Qwen3 parses it) instead of ``reasoning``.
        ends_with: ``"any"``, ``"assistant"`` (last message is an assistant message, with or
            without tool calls), ``"user"`` or ``"tool"`` (needs ``tools=True``).
        long: longer texts (several texts joined and repeated up to 8 times: hundreds to
            thousands of characters) and conversations (up to 12 turns unless ``max_turns`` is
            given), for truncation/packing tests; slower.

    Returns:
        A strategy of :class:`Conversation` (``tools`` is ``None`` when ``tools=False``).

    Raises:
        ValueError: ``ends_with="tool"`` without tools, or an unknown ``ends_with``/``whitespace``.
    """
    _check_options(ends_with, whitespace, tools)
    if long and max_turns == 3:
        max_turns = 12
    if not 1 <= min_turns <= max_turns:
        raise ValueError(f"need 1 <= min_turns <= max_turns, got {min_turns}, {max_turns}")
    specials = tuple(special_strings)
    text = _content_text(unicode, special_token_text, specials, whitespace, long, empty_content)
    short_text = texts(unicode=unicode, special_token_text=special_token_text, special_strings=specials, max_pieces=4,
                       whitespace=whitespace)
    beside_calls = ([st.none()] if none_content else []) + [st.just("")] + ([text] if call_content else [])
    return _conversations(
        text=text, short_text=short_text, beside_calls=st.one_of(*beside_calls),
        results=text | json_values(text=short_text, max_leaves=4).map(_dumps),
        reasoning_text=(st.none() | text) if reasoning else st.none(),
        schemas=tool_schemas(text=texts(unicode=unicode, max_pieces=5, whitespace=whitespace)) if tools else None,
        n_turns=st.integers(min_value=min_turns, max_value=max_turns),
        rounds=st.integers(min_value=0, max_value=max_tool_rounds if tools else 0),
        system=system, max_calls=max_parallel if parallel_calls else 1, call_ids=call_ids,
        call_id_length=call_id_length, inline_think=inline_think, ends_with=ends_with,
    )


def _check_options(ends_with: str, whitespace: str, tools: bool) -> None:
    """Raise ``ValueError`` for an unknown ``ends_with``/``whitespace`` or ``ends_with="tool"``
    without tools."""
    if ends_with not in ("any", "assistant", "user", "tool"):
        raise ValueError(f"ends_with must be any/assistant/user/tool, got {ends_with!r}")
    if whitespace not in ("any", "stripped"):
        raise ValueError(f"whitespace must be any/stripped, got {whitespace!r}")
    if ends_with == "tool" and not tools:
        raise ValueError('ends_with="tool" needs tools=True')


def _content_text(unicode: bool, special_token_text: bool, specials: tuple[str, ...], whitespace: Whitespace,
                  long: bool, empty_content: bool) -> st.SearchStrategy[str]:
    """The strategy of message contents of :func:`conversations` (its arguments of the same names)."""
    text = texts(
        unicode=unicode,
        special_token_text=special_token_text,
        special_strings=specials,
        min_pieces=1,
        max_pieces=10,
        whitespace=whitespace,
    )
    if long:
        # a few texts joined, the whole repeated 1-8 times: long (hundreds to thousands of
        # characters) at a fraction of the cost of drawing that many pieces one by one
        strip = str.strip if whitespace == "stripped" else (lambda x: x)
        text = st.tuples(st.lists(text, min_size=2, max_size=6), st.integers(min_value=1, max_value=8)).map(
            lambda t: strip("".join(t[0]) * t[1])
        )
        if not special_token_text and specials:  # joining may have formed one across a seam
            text = text.filter(lambda x: not any(tok in x for tok in specials))
    if empty_content:
        # roughly one content in ten is "" (hypothesis favours 0, hence the wide range; shrinks towards "")
        return st.tuples(st.integers(min_value=0, max_value=29), text).map(lambda t: "" if t[0] == 0 else t[1])
    return text.filter(bool)


@st.composite
def _conversations(
    draw,
    *,
    text,
    short_text,
    beside_calls,
    results,
    reasoning_text,
    schemas,
    n_turns,
    rounds,
    system,
    max_calls,
    call_ids,
    call_id_length,
    inline_think,
    ends_with,
) -> Conversation:
    msgs: list[Message] = []
    tool_schema_list = draw(schemas) if schemas is not None else None
    if system and draw(st.booleans()):
        msgs.append(Message("system", draw(text)))
    n_calls = 0

    def final_assistant() -> Message:
        content = draw(text)
        r = draw(reasoning_text)
        if inline_think and r is not None and draw(st.booleans()):
            return Message("assistant", f"<think>\n{r}\n</think>\n\n{content}")
        return Message("assistant", content, reasoning=r)

    def call_message() -> Message:
        nonlocal n_calls
        calls = draw(
            tool_calls(
                tool_schema_list,
                max_size=max_calls,
                ids=call_ids,
                id_start=n_calls,
                text=short_text,
                id_length=call_id_length,
            )
        )
        n_calls += len(calls)
        return Message("assistant", draw(beside_calls), reasoning=draw(reasoning_text), tool_calls=calls)

    turns = draw(n_turns)
    for turn in range(turns):
        last = turn == turns - 1
        msgs.append(Message("user", draw(text)))
        if last and ends_with == "user":
            break
        n_rounds = draw(rounds)
        if last and ends_with == "tool":
            n_rounds = max(n_rounds, 1)
        stop = False
        for r in range(n_rounds):
            call = call_message()
            msgs.append(call)
            last_round = last and r == n_rounds - 1
            if last_round and ends_with in ("any", "assistant") and draw(st.integers(0, 3)) == 0:
                stop = True  # a trace cut right after a tool call
                break
            msgs.extend(
                Message("tool", draw(results), tool_call_id=c.id, name=c.name) for c in call.tool_calls
            )
            if last_round and (ends_with == "tool" or (ends_with == "any" and draw(st.integers(0, 3)) == 0)):
                stop = True  # ends on tool results
                break
        if stop:
            break
        if last and ends_with == "any" and draw(st.integers(0, 5)) == 0:
            break  # ends on the user message
        msgs.append(final_assistant())
    return Conversation(tuple(msgs), tool_schema_list)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def conversations_for(caps, **overrides) -> st.SearchStrategy[Conversation]:
    """:func:`conversations` restricted to what a template renders faithfully.

    Args:
        caps: a :class:`sftdata.testing.tokenizers.TemplateCaps` (e.g. ``trl_template_families()[name].caps``
            or ``family_caps(family)``).
        **overrides: any :func:`conversations` keyword, applied last.

    ``caps.call_id_length`` is respected (ids of that exact length). ``caps.string_arguments`` and
    ``caps.flat_tool_schemas`` concern how a conversation is passed to the template, not what it
    holds: apply them at render time with :func:`sftdata.testing.real_templates.template_inputs`.
    """
    kwargs = dict(
        system=caps.system,
        tools=caps.tools,
        reasoning=caps.reasoning,
        parallel_calls=caps.parallel_calls,
        call_content=caps.call_content,
        none_content=caps.none_content,
        call_id_length=getattr(caps, "call_id_length", None),
    )
    kwargs.update(overrides)
    return conversations(**kwargs)


def assert_well_formed(conv: Conversation) -> None:
    """Assert the role-order invariants of generated conversations (``AssertionError`` says why).

    Checks: a system message only first; then a user message; a user message only after an
    assistant message without tool calls; an assistant message only after a user message or
    tool results; an assistant message with tool calls is followed by exactly its results
    (one ``tool`` message per call, same order, matching ``tool_call_id`` and ``name``) unless
    it is the last message; tool messages appear only as such results; arguments are dicts.
    """
    msgs = conv.messages
    i = 1 if msgs and msgs[0].role == "system" else 0
    assert i < len(msgs) and msgs[i].role == "user", "the first non-system message must be a user message"
    prev = None  # "user", "answer" (assistant without calls) or "tool" (after a results block)
    while i < len(msgs):
        m = msgs[i]
        assert m.role != "system", f"system message at position {i}"
        assert m.role != "tool", f"tool message at {i} does not answer a preceding tool call"
        if m.role == "user":
            assert prev in (None, "answer"), f"user message at {i} follows {prev}"
            prev = "user"
            i += 1
            continue
        assert prev in ("user", "tool"), f"assistant message at {i} follows {prev}"
        if not m.tool_calls:
            prev = "answer"
            i += 1
            continue
        for c in m.tool_calls:
            assert isinstance(c.arguments, dict), f"arguments of a call at {i} are not a dict"
        results = msgs[i + 1 : i + 1 + len(m.tool_calls)]
        if not results:
            i += 1  # the conversation ends on the call
            continue
        assert len(results) == len(m.tool_calls), f"the calls at {i} are not all answered"
        for c, r in zip(m.tool_calls, results):
            assert r.role == "tool", f"call {c.name!r} at {i} is not answered by a tool message"
            assert (r.tool_call_id, r.name) == (c.id, c.name), f"a tool result does not match its call at {i}"
        prev = "tool"
        i += 1 + len(results)
