"""Hypothesis strategies of generated templates and of conversations that exercise them.

:func:`template_specs` draws :class:`~.spec.TemplateSpec` s (optionally forcing one behaviour of
:data:`~.behaviours.BEHAVIOURS` on and others off); :func:`spec_conversations` draws
conversations for one spec. The flags are drawn in :data:`~.flags.FIELD_VALUES` order, each from
the values compatible with those drawn before it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterable

from hypothesis import strategies as st

from ...schema import Conversation, Message, ToolCall
from ..strategies import SPECIAL_STRINGS, conversations, texts
from .behaviours import BEHAVIOURS
from .flags import FIELD_VALUES, compatible
from .spec import TemplateSpec
from .vocab import MARKERS, ROLE_TOKENS, TAGS

__all__ = ["spec_conversations", "template_specs"]


def template_specs(behaviour: str | None = None, avoid: Iterable[str] = ()) -> st.SearchStrategy[TemplateSpec]:
    """Specs with any combination of behaviours; ``behaviour`` (a :data:`BEHAVIOURS` name)
    forced on, every name in ``avoid`` forced off (``behaviour`` wins where they conflict).

    Raises:
        ValueError: an unknown behaviour name.
    """
    for name in (behaviour, *avoid):
        if name is not None and name not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {name!r}; expected one of {sorted(BEHAVIOURS)}")
    require = dict(BEHAVIOURS[behaviour].require) if behaviour else {}
    off: dict[str, set] = {}
    for name in avoid:
        for k, v in BEHAVIOURS[name].avoid.items():
            off[k] = off.get(k, set(FIELD_VALUES[k])) & set(v)
    return _specs(tuple(sorted(require.items())), tuple(sorted((k, tuple(sorted(v, key=str))) for k, v in off.items())))


@st.composite
def _specs(draw, require, off) -> TemplateSpec:
    require, off = dict(require), dict(off)
    values: dict[str, Any] = {}
    for name, options in FIELD_VALUES.items():
        ok = [v for v in options if compatible(name, v, values)]
        req = [v for v in ok if v in require.get(name, options)]
        if not req:
            raise ValueError(f"behaviour requirements {require} cannot be met: {name} after {values}")
        avoided = [v for v in req if v in off.get(name, options)]
        values[name] = draw(st.sampled_from(avoided or req))
    return TemplateSpec(**values)


@st.composite
def spec_conversations(draw, spec: TemplateSpec, *, max_turns: int = 3) -> Conversation:
    """A conversation ending on an assistant message that exercises ``spec``: tool calls when the
    template renders them (arguments sometimes given as JSON text, compact or indented: always
    for ``args="string"``), reasoning, and now and then a second assistant answer right after
    an answer (not under ``end="next"``, where the next header would be no stop token).
    Message text never spells a control token or marker of the template."""
    specials = tuple(dict.fromkeys(SPECIAL_STRINGS + spec.control_tokens() + TAGS + MARKERS
                                   + tuple(ROLE_TOKENS.values()) + ("<|end|>",)))
    conv = draw(conversations(system=True, tools=spec.tools, reasoning=True, ends_with="assistant", max_turns=max_turns,
                              max_tool_rounds=2, max_parallel=2, special_strings=specials))
    msgs: list[Message] = []
    text = texts(special_strings=specials, max_pieces=5)
    for m in conv.messages:
        if m.tool_calls and spec.tools:
            calls = []
            for c in m.tool_calls:
                if spec.args == "string" or draw(st.booleans()):
                    indent = draw(st.sampled_from((None, None, 2)))
                    seps = draw(st.sampled_from(((",", ":"), (", ", ": "))))
                    c = ToolCall(c.name, c.arguments, id=c.id, arguments_text=json.dumps(
                        dict(c.arguments), indent=indent, separators=seps, ensure_ascii=draw(st.booleans())))
                calls.append(c)
            m = replace(m, tool_calls=tuple(calls))
        msgs.append(m)
        if m.role == "assistant" and not m.tool_calls and spec.end != "next" and draw(st.integers(0, 4)) == 0:
            msgs.append(Message("assistant", draw(text), reasoning=draw(st.none() | text)))
    return Conversation(tuple(msgs), conv.tools)
