"""Generated chat templates whose ground truth is known (issue 15).

A :class:`TemplateSpec` is a set of behaviours real chat templates have (separators before
headers, reasoning openers in the generation prompt, constant suffixes, stop tokens before or
after a newline or written by the next message, history rewriting, tool-call syntaxes, clock
reads, reasoning field names). :meth:`TemplateSpec.source` writes a Jinja chat template with
those behaviours (transformers' conventions: ``messages``, ``tools``,
``add_generation_prompt``, ``strftime_now``), and :meth:`TemplateSpec.expected` says, from the
behaviour flags alone (never by rendering the template), what the model generates at each
assistant turn ``k``: the characters after the generation prompt, up to and including the stop
token, or the reason sftdata must reject the row when the generated text is not determined
(``turn_split``: the message is split in two blocks; ``turn_not_isolated``: the message is
merged into the block of the message before it).

:func:`template_specs` is a hypothesis strategy of specs (optionally forcing one behaviour of
:data:`BEHAVIOURS` on, and others off); :func:`spec_conversations` draws conversations that
exercise a spec; :func:`spec_tokenizer` builds an offline tokenizer holding the spec's control
tokens (one BPE per process, one wrapper per control-token set); :func:`check_against_spec`
is the oracle: it rebuilds every root-to-leaf path of sftdata's rows from ``parent`` alone and
compares every trained run with ``tokens(P_k)`` (``P_k`` from transformers'
``apply_chat_template(m[:k], add_generation_prompt=True)``) followed by
``tokens(expected text)``.

Example::

    from hypothesis import given, strategies as st
    from sftdata import Encoder, RowError
    from sftdata.testing.template_gen import template_specs, spec_conversations, spec_tokenizer, check_against_spec

    @given(st.data())
    def test(data):
        spec = data.draw(template_specs())
        conv = data.draw(spec_conversations(spec))
        tok = spec_tokenizer(spec)
        enc = Encoder(tok, stop_tokens=spec.stop_tokens())
        try:
            out = enc.encode(conv)
        except RowError as e:
            out = e
        check_against_spec(tok, spec, conv, out, now=enc.now)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence
from unittest import mock

from hypothesis import strategies as st

from ..errors import RowError
from ..schema import Conversation, Message, ToolCall
from ..masking.tree import IGNORE_INDEX
from .strategies import SPECIAL_STRINGS, conversations, texts
from .tokenizers import TokenizerSpec, make_tokenizer

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "ExpectedTurn",
    "SpecReport",
    "TemplateSpec",
    "check_against_spec",
    "spec_conversations",
    "spec_tokenizer",
    "template_specs",
]

# ---- the vocabulary of generated templates ------------------------------------------------

_HEADERS = {
    # name -> (header before the role's text, stop token written by an explicit end)
    "chatml": ("<|im_start|>{role}\n", "<|im_end|>"),
    "llama": ("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
    "roletok": ("{role}\n", "<|end|>"),  # GLM-like: every role is a control token
}
_ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|observation|>"}
_CONTROL = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "roletok": tuple(_ROLE_TOKENS.values()) + ("<|end|>",),
}
#: non-special added tokens every generated template may write (as Qwen3's tokenizer has them)
_TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>")
#: plain-text markers the templates write; kept out of generated message text
_MARKERS = ("<tool_response>", "</tool_response>", "<function=", "</function>", "<parameter=", "</parameter>")

THINK_OPEN = "<think>\n"
CLOCK_FORMAT = "%Y-%m-%d %H:%M:%S"
EXPLICIT_ENDS = ("stop", "stop_nl", "nl_stop")


@dataclass(frozen=True)
class TemplateSpec:
    """The behaviours of one generated chat template.

    Attributes:
        header: ``chatml`` (``<|im_start|>role\\n``), ``llama``
            (``<|start_header_id|>role<|end_header_id|>\\n\\n``) or ``roletok`` (one control
            token per role, ``<|assistant|>\\n``; tool results under ``<|observation|>``).
        end: how a message ends: ``stop`` (the stop token), ``stop_nl`` (stop token then
            ``\\n``), ``nl_stop`` (``\\n``, stop token, ``\\n``: the newline is generated) or
            ``next`` (no end: the next message's header is the stop token; ``roletok`` only).
        sep_before: ``\\n`` before every message header (the first one included).
        sep_before_gen: the generation prompt starts with that ``\\n`` too.
        gen_think: the generation prompt ends with a reasoning opener ``<think>\\n``.
        suffix: constant text after every message's end (``""``: none).
        always_gen: the rendering always ends with the generation prompt, also with
            ``add_generation_prompt=False``.
        reasoning: ``none`` (the template ignores reasoning) or ``think``
            (``<think>\\n{reasoning}\\n</think>\\n\\n`` before the content).
        reasoning_key: the message key the template reads reasoning from.
        think_always: an empty ``<think>`` block for a message without reasoning.
        drop: history rewriting of reasoning: ``none``, ``before_last_user`` (Qwen3: no
            reasoning block before the last user message) or ``after_final`` (gpt-oss: no
            reasoning for a message followed by a final answer, an assistant message without
            tool calls).
        trim: content and reasoning are ``|trim`` med.
        system_to_last_user: the system prompt is written into the last user message
            (Mistral), not at the start.
        merge: ``none``, ``tools`` (consecutive tool results in one block) or ``assistant``
            (consecutive assistant messages in one block: the second one's turn is not
            determined, ``turn_not_isolated``).
        split: an assistant message with content and tool calls is written as two blocks
            (Nemotron-Nano-v2): ``turn_split``.
        tools: the template renders tool schemas, calls and results.
        tool_format: ``json`` (``<tool_call>\\n{"name": .., "arguments": ..}\\n</tool_call>``),
            ``xml`` (``<function=name><parameter=key>``, Qwen3-Coder) or ``python``
            (``[name(key=value)]``).
        args: how a ``json`` call writes its arguments: ``dict`` (``arguments|tojson``),
            ``string`` (concatenated as given text; a dict raises) or ``auto`` (text as is,
            else ``tojson``). ``xml``/``python`` iterate a dict.
        clock: the system header reads the clock, ``strftime_now("%Y-%m-%d %H:%M:%S")``.
        closed_think: the generation prompt ends with a closed, empty reasoning block
            ``<think></think>`` and the history writes ``</think>`` before every assistant
            message (DeepSeek-V3.2 without thinking): the model generates what follows it.
        trailing_turn: a fixed system turn after the last message (command-r-plus tool use):
            text after a turn's end that is no part of the turn.
    """

    header: str = "chatml"
    end: str = "stop_nl"
    sep_before: bool = False
    sep_before_gen: bool = False
    gen_think: bool = False
    suffix: str = ""
    always_gen: bool = False
    reasoning: str = "none"
    reasoning_key: str = "reasoning_content"
    think_always: bool = False
    drop: str = "none"
    trim: bool = False
    system_to_last_user: bool = False
    merge: str = "none"
    split: bool = False
    tools: bool = True
    tool_format: str = "json"
    args: str = "dict"
    clock: bool = False
    closed_think: bool = False
    trailing_turn: bool = False

    def __post_init__(self) -> None:
        problems = _incompatible(asdict(self))
        if problems:
            raise ValueError(f"incompatible TemplateSpec: {'; '.join(problems)}")

    # ---- tokens ---------------------------------------------------------------------

    @property
    def stop(self) -> str | None:
        """The stop token an explicit end writes (``None`` for ``end="next"``)."""
        return None if self.end == "next" else _HEADERS[self.header][1]

    def control_tokens(self) -> tuple[str, ...]:
        """Control tokens of the template: special tokens of its tokenizer (single ids)."""
        return _CONTROL[self.header]

    def added_tokens(self) -> tuple[str, ...]:
        """Non-special added tokens the template writes (``<think>``, ``<tool_call>``, ...)."""
        return _TAGS

    def stop_tokens(self) -> tuple[str, ...]:
        """The model's stop set: the end token, or (``end="next"``) the headers that follow an
        assistant message (``<|user|>``, ``<|observation|>``)."""
        if self.end == "next":
            return (_ROLE_TOKENS["user"], _ROLE_TOKENS["tool"])
        return (self.stop,)

    def tokenizer_spec(self) -> TokenizerSpec:
        """The offline tokenizer this template's control and added tokens need."""
        return TokenizerSpec(special_tokens=self.control_tokens(), added_tokens=self.added_tokens())

    # ---- the template ----------------------------------------------------------------

    def _header(self, role_expr: str) -> str:
        """A Jinja expression: the header of the role ``role_expr`` (itself an expression)."""
        sep = "'\\n' + " if self.sep_before else ""
        if self.header == "roletok":
            return f"{sep}{_ROLE_MAP_JINJA}[{role_expr}] + '\\n'"
        before, after = _HEADERS[self.header][0].split("{role}")
        return f"{sep}{_lit(before)} + {role_expr} + {_lit(after)}"

    def _end(self) -> str:
        stop = self.stop
        end = {"stop": stop, "stop_nl": f"{stop}\n", "nl_stop": f"\n{stop}\n", "next": ""}[self.end]
        return _lit(end + self.suffix)

    def after_last_message(self) -> str:
        """The constant text the template writes after the last message's end (and suffix): the
        trailing system turn, then the generation prompt when it is always written."""
        out = ""
        if self.trailing_turn:
            sep = "\n" if self.sep_before else ""
            head = _ROLE_TOKENS["system"] + "\n" if self.header == "roletok" else _HEADERS[self.header][0].format(role="system")
            end = {"stop": self.stop, "stop_nl": f"{self.stop}\n", "nl_stop": f"\n{self.stop}\n", "next": ""}[self.end]
            out += sep + head + "Answer briefly." + end + self.suffix
        return out + (self._gen_prompt() if self.always_gen else "")

    def _gen_prompt(self) -> str:
        sep = "\n" if self.sep_before and self.sep_before_gen else ""
        if self.header == "roletok":
            head = _ROLE_TOKENS["assistant"] + "\n"
        else:
            before, after = _HEADERS[self.header][0].split("{role}")
            head = before + "assistant" + after
        return sep + head + (THINK_OPEN if self.gen_think else "") + ("<think></think>" if self.closed_think else "")

    def _calls_jinja(self, c: str = "c") -> str:
        """Jinja statements setting ``ns.calls`` to message ``m``'s tool calls (after content ``c``)."""
        if not self.tools:
            return "{%- set ns.calls = '' %}"
        out = ["{%- set ns.calls = '' %}", "{%- for tc in (m.tool_calls or []) %}",
               "{%- set f = tc.function if tc.function is defined else tc %}"]
        if self.tool_format == "json":
            args = {"dict": "f.arguments|tojson", "string": "f.arguments",
                    "auto": "(f.arguments if f.arguments is string else f.arguments|tojson)"}[self.args]
            out.append("{%- if " + c + " or not loop.first %}{%- set ns.calls = ns.calls + '\\n' %}{%- endif %}")
            out.append("{%- set ns.calls = ns.calls + '<tool_call>\\n{\"name\": \"' + f.name + '\", \"arguments\": ' + "
                       + args + " + '}\\n</tool_call>' %}")
        elif self.tool_format == "xml":
            out.append("{%- if " + c + " or not loop.first %}{%- set ns.calls = ns.calls + '\\n' %}{%- endif %}")
            out.append("{%- set ns.calls = ns.calls + '<tool_call>\\n<function=' + f.name + '>\\n' %}")
            out.append("{%- for k, v in f.arguments.items() %}{%- set ns.calls = ns.calls + '<parameter=' + k + '>\\n'"
                       " + (v if v is string else v|tojson) + '\\n</parameter>\\n' %}{%- endfor %}")
            out.append("{%- set ns.calls = ns.calls + '</function>\\n</tool_call>' %}")
        else:  # python
            out.append("{%- if loop.first %}{%- set ns.calls = ns.calls + ('\\n[' if " + c + " else '[') %}"
                       "{%- else %}{%- set ns.calls = ns.calls + ', ' %}{%- endif %}")
            out.append("{%- set ns.calls = ns.calls + f.name + '(' %}")
            out.append("{%- for k, v in f.arguments.items() %}{%- if not loop.first %}{%- set ns.calls = ns.calls + ', ' %}"
                       "{%- endif %}{%- set ns.calls = ns.calls + k + '=' + v|tojson %}{%- endfor %}")
            out.append("{%- set ns.calls = ns.calls + ')' %}{%- if loop.last %}{%- set ns.calls = ns.calls + ']' %}{%- endif %}")
        out.append("{%- endfor %}")
        return "".join(out)

    def source(self) -> str:
        """The Jinja chat template with these behaviours (transformers' conventions)."""
        trim = "|trim" if self.trim else ""
        end = self._end()
        keep = {"none": "true", "before_last_user": "i > ns.last_user", "after_final": "i >= ns.last_final"}[self.drop]
        key = _lit(self.reasoning_key)
        s = [
            "{%- set ns = namespace(last_user=-1, last_final=-1, calls='', think='') %}",
            "{%- for x in messages %}{%- if x.role == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}"
            "{%- if x.role == 'assistant' and not x.tool_calls %}{%- set ns.last_final = loop.index0 %}{%- endif %}{%- endfor %}",
            "{%- set first_system = messages and messages[0].role == 'system' %}",
            "{%- set sys = (messages[0].content if messages[0].content is string else '') if first_system else '' %}",
        ]
        preamble = []
        if self.clock:
            preamble.append(f"'Current time: ' + strftime_now({_lit(CLOCK_FORMAT)}) + '\\n'")
        cond = ["tools"] if self.tools else []
        if self.clock:
            cond.append("true")
        if not self.system_to_last_user:
            cond.append("first_system")
        if cond:
            s.append("{%- if " + " or ".join(cond) + " %}{{- " + self._header("'system'") + " }}")
            if self.clock:
                s.append("{{- " + preamble[0] + " }}")
            if self.tools:
                s.append("{%- if tools %}{{- '# Tools\\n' }}{%- for t in tools %}{{- t|tojson + '\\n' }}{%- endfor %}{%- endif %}")
            if not self.system_to_last_user:
                s.append("{{- sys }}")
            s.append("{{- " + end + " }}{%- endif %}")
        s.append("{%- for i in range(1 if first_system else 0, messages|length) %}{%- set m = messages[i] %}")
        s.append("{%- set prev = messages[i - 1].role if i > 0 else '' %}"
                 "{%- set nxt = messages[i + 1].role if i + 1 < messages|length else '' %}")
        s.append(f"{{%- set c = (m.content if m.content is string else ''){trim} %}}")
        # user and system
        s.append("{%- if m.role == 'user' or m.role == 'system' %}")
        if self.system_to_last_user:
            s.append("{%- if i == ns.last_user and sys %}{%- set c = sys + '\\n\\n' + c %}{%- endif %}")
        s.append("{{- " + self._header("m.role") + " + c + " + end + " }}")
        # tool results
        s.append("{%- elif m.role == 'tool' %}")
        body = "'<tool_response>\\n' + c + '\\n</tool_response>'"
        if self.merge == "tools":
            s.append("{%- if prev == 'tool' %}{{- '\\n' }}{%- else %}{{- " + self._header("'tool'") + " }}{%- endif %}")
            s.append("{{- " + body + " }}{%- if nxt != 'tool' %}{{- " + end + " }}{%- endif %}")
        else:
            s.append("{{- " + self._header("'tool'") + " + " + body + " + " + end + " }}")
        # assistant
        s.append("{%- elif m.role == 'assistant' %}")
        s.append("{%- set ns.think = '' %}")
        if self.reasoning == "think":
            s.append(f"{{%- if ({keep}) and m[{key}] is defined and m[{key}] is not none %}}"
                     f"{{%- set ns.think = '<think>\\n' + m[{key}]{trim} + '\\n</think>\\n\\n' %}}")
            if self.think_always:
                s.append(f"{{%- elif {keep} %}}{{%- set ns.think = '<think>\\n\\n</think>\\n\\n' %}}")
            s.append("{%- endif %}")
        s.append(self._calls_jinja())
        head = self._header("'assistant'") + (" + '</think>'" if self.closed_think else "")
        if self.split:
            s.append("{%- if c and ns.calls %}")
            s.append("{%- set c2 = '' %}")
            s.append("{{- " + head + " + ns.think + c + " + end + " }}")
            s.append(self._calls_jinja("c2"))
            s.append("{{- " + head + " + ns.calls + " + end + " }}")
            s.append("{%- else %}")
        if self.merge == "assistant":
            s.append("{%- if prev == 'assistant' %}{{- '\\n' }}{%- else %}{{- " + head + " }}{%- endif %}")
            s.append("{{- ns.think + c + ns.calls }}{%- if nxt != 'assistant' %}{{- " + end + " }}{%- endif %}")
        else:
            s.append("{{- " + head + " + ns.think + c + ns.calls + " + end + " }}")
        if self.split:
            s.append("{%- endif %}")
        s.append("{%- endif %}{%- endfor %}")
        if self.trailing_turn:
            s.append("{{- " + self._header("'system'") + " + 'Answer briefly.' + " + end + " }}")
        gen = "{{- " + _lit(self._gen_prompt()) + " }}"
        s.append(gen if self.always_gen else "{%- if add_generation_prompt %}" + gen + "{%- endif %}")
        return "\n".join(s)

    # ---- the ground truth ------------------------------------------------------------

    def served_arguments(self) -> str:
        """How a serving stack passes tool-call arguments to this template
        (:meth:`sftdata.schema.Conversation.template_messages`'s ``arguments``)."""
        if not self.tools or self.tool_format != "json" or self.args == "dict":
            return "dict"
        return "json" if self.args == "string" else "auto"

    def _args_text(self, call: ToolCall) -> str:
        mode = self.served_arguments()
        if mode == "dict" or (mode == "auto" and call.arguments_text is None):
            return _tojson(dict(call.arguments))
        return call.arguments_text if call.arguments_text is not None else _tojson(dict(call.arguments))

    def _calls_text(self, calls: Sequence[ToolCall], content: str) -> str:
        if not self.tools or not calls:
            return ""
        out = ""
        if self.tool_format == "python":
            out = "\n[" if content else "["
            out += ", ".join(
                f"{c.name}(" + ", ".join(f"{k}={_tojson(v)}" for k, v in dict(c.arguments).items()) + ")" for c in calls
            )
            return out + "]"
        for n, c in enumerate(calls):
            if content or n:
                out += "\n"
            if self.tool_format == "json":
                out += '<tool_call>\n{"name": "' + c.name + '", "arguments": ' + self._args_text(c) + "}\n</tool_call>"
            else:
                out += f"<tool_call>\n<function={c.name}>\n"
                for k, v in dict(c.arguments).items():
                    out += f"<parameter={k}>\n" + (v if isinstance(v, str) else _tojson(v)) + "\n</parameter>\n"
                out += "</function>\n</tool_call>"
        return out

    def expected(self, conversation: Conversation) -> list["ExpectedTurn"]:
        """For every assistant message ``k`` (trained by default): what the model generates at
        inference after the generation prompt of ``m[:k]``, up to and including the stop token,
        or the reason the row must be rejected. Written from the flags, not by rendering."""
        msgs = conversation.messages
        out = []
        for k, m in enumerate(msgs):
            if m.role != "assistant" or m.train is False:
                continue
            strip = str.strip if self.trim else (lambda x: x)
            c = strip(m.content or "")
            if self.merge == "assistant" and k > 0 and msgs[k - 1].role == "assistant":
                out.append(ExpectedTurn(k, reject="turn_not_isolated", why="merged into the block of message k-1"))
                continue
            calls = self._calls_text(m.tool_calls, c)
            if self.split and c and calls:
                out.append(ExpectedTurn(k, reject="turn_split", why="content and tool calls written as two blocks"))
                continue
            think = ""
            # message k is the last message of F_k: no rewriting rule drops its reasoning
            if self.reasoning == "think":
                if m.reasoning is not None:
                    think = THINK_OPEN + strip(m.reasoning) + "\n</think>\n\n"
                elif self.think_always:
                    think = THINK_OPEN + "\n</think>\n\n"
            body = think + c + calls
            if self.gen_think and body.startswith(THINK_OPEN):
                body = body[len(THINK_OPEN):]  # the generation prompt holds the opener
            if self.end == "next":
                nxt = msgs[k + 1].role if k + 1 < len(msgs) else ("tool" if m.tool_calls else "user")
                out.append(ExpectedTurn(k, text=body + _ROLE_TOKENS[nxt]))
            elif self.end == "nl_stop":
                out.append(ExpectedTurn(k, text=body + "\n" + self.stop))
            else:
                out.append(ExpectedTurn(k, text=body + self.stop))
        return out

    def behaviours(self) -> tuple[str, ...]:
        """Names of :data:`BEHAVIOURS` this spec has."""
        return tuple(name for name, b in BEHAVIOURS.items() if b.holds(self))


_ROLE_MAP_JINJA = "{" + ", ".join(f"{_r!r}: {_t!r}" for _r, _t in _ROLE_TOKENS.items()) + "}"


def _lit(text: str) -> str:
    """A Jinja string literal of ``text``."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _tojson(value: Any) -> str:
    """What transformers' ``tojson`` writes (``json.dumps``, ``ensure_ascii=False``)."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class ExpectedTurn:
    """Assistant message ``k``: the generated ``text``, or the ``reject`` reason (and why)."""

    k: int
    text: str | None = None
    reject: str | None = None
    why: str = ""


# ---- compatibility of flags and the strategy -------------------------------------------------

#: every field's possible values, in the order they are drawn
_VALUES: dict[str, tuple] = {
    "header": ("chatml", "llama", "roletok"),
    "end": ("stop", "stop_nl", "nl_stop", "next"),
    "sep_before": (False, True),
    "sep_before_gen": (False, True),
    "gen_think": (False, True),
    "suffix": ("", "\n", "---\n"),
    "always_gen": (False, True),
    "reasoning": ("none", "think"),
    "reasoning_key": ("reasoning_content", "reasoning", "thinking"),
    "think_always": (False, True),
    "drop": ("none", "before_last_user", "after_final"),
    "trim": (False, True),
    "system_to_last_user": (False, True),
    "tools": (False, True),
    "tool_format": ("json", "xml", "python"),
    "args": ("dict", "string", "auto"),
    "merge": ("none", "tools", "assistant"),
    "split": (False, True),
    "clock": (False, True),
    "closed_think": (False, True),
    "trailing_turn": (False, True),
}


def _compatible(field_name: str, value: Any, so_far: Mapping[str, Any]) -> bool:
    """Whether ``value`` of ``field_name`` makes sense with the fields drawn before it."""
    g = so_far.get
    if field_name == "end":
        return value != "next" or g("header") == "roletok"
    nxt = g("end") == "next"
    if field_name in ("sep_before", "always_gen", "split") and value:
        return not nxt and (field_name != "split" or g("tools", True))
    if field_name == "suffix" and value:
        return not nxt
    if field_name == "merge":
        return value == "none" or (value == "tools" and g("tools")) or (value == "assistant" and not nxt)
    if field_name in ("think_always",) and value:
        return g("reasoning") == "think"
    if field_name == "drop" and value != "none":
        return g("reasoning") == "think"
    if field_name == "closed_think" and value:
        return not g("gen_think") and g("reasoning") == "none"
    if field_name == "trailing_turn" and value:
        return not nxt
    if field_name == "args" and value != "dict":
        return g("tools") and g("tool_format") == "json"
    if field_name == "tool_format" and value != "json":
        return bool(g("tools"))
    return True


def _incompatible(values: Mapping[str, Any]) -> list[str]:
    problems = []
    so_far: dict[str, Any] = {}
    for name in _VALUES:
        v = values[name]
        if v not in _VALUES[name]:
            problems.append(f"{name}={v!r} is not one of {_VALUES[name]}")
        elif not _compatible(name, v, so_far):
            problems.append(f"{name}={v!r} does not go with {so_far}")
        so_far[name] = v
    return problems


@dataclass(frozen=True)
class Behaviour:
    """One behaviour of real templates: the field values that make a spec have it
    (``require``) and the values a spec without it is drawn from (``avoid``)."""

    require: Mapping[str, tuple]
    avoid: Mapping[str, tuple]
    doc: str

    def holds(self, spec: TemplateSpec) -> bool:
        """Whether ``spec`` shows this behaviour (every required flag has an allowed value)."""
        return all(getattr(spec, k) in v for k, v in self.require.items())


_EXPLICIT = {"end": EXPLICIT_ENDS}
_THINK = {"reasoning": ("think",)}
_TOOLS = {"tools": (True,)}
_B = Behaviour
#: The behaviours the generator combines, by name (the parametrized tests and the bench use them).
BEHAVIOURS: dict[str, Behaviour] = {
    "plain_chatml": _B({"header": ("chatml",), **_EXPLICIT}, {}, "ChatML headers, an explicit stop token"),
    "llama_headers": _B({"header": ("llama",), **_EXPLICIT}, {}, "Llama 3 headers (<|start_header_id|>role<|end_header_id|>)"),
    "separator_before_headers": _B({**_EXPLICIT, "sep_before": (True,), "sep_before_gen": (False,)},
                                   {"sep_before_gen": (True,)}, "'\\n' before every header, none before the generation prompt"),
    "separator_before_generation_prompt_too": _B({**_EXPLICIT, "sep_before": (True,), "sep_before_gen": (True,)}, {},
                                                 "'\\n' before every header and the generation prompt"),
    "reasoning_opener": _B({"gen_think": (True,)}, {"gen_think": (False,)}, "the generation prompt ends with <think>\\n"),
    "constant_suffix": _B({**_EXPLICIT, "suffix": ("\n", "---\n")}, {"suffix": ("",)}, "constant text after every message"),
    "always_generation_prompt": _B({**_EXPLICIT, "always_gen": (True,)}, {"always_gen": (False,)},
                                   "the rendering always ends with the generation prompt"),
    "stop_then_newline": _B({"end": ("stop_nl",)}, {}, "<stop>\\n after every message"),
    "stop_bare": _B({"end": ("stop",)}, {}, "<stop> and nothing after it"),
    "newline_then_stop": _B({"end": ("nl_stop",)}, {"end": ("stop", "stop_nl", "next")}, "\\n<stop>\\n: the newline is generated"),
    "stop_from_next_message": _B({"header": ("roletok",), "end": ("next",)}, {"end": EXPLICIT_ENDS},
                                 "no end token: the next header (<|user|>, <|observation|>) is the stop"),
    "reasoning_dropped_before_last_user": _B({**_THINK, "drop": ("before_last_user",)}, {"drop": ("none", "after_final")},
                                             "Qwen3: no reasoning before the last user message"),
    "analysis_dropped_after_final": _B({**_THINK, "drop": ("after_final",)}, {"drop": ("none", "before_last_user")},
                                       "gpt-oss: no reasoning once a final answer follows"),
    "empty_think_block": _B({**_THINK, "think_always": (True,)}, {"think_always": (False,)}, "an empty <think> block without reasoning"),
    "system_into_last_user": _B({"system_to_last_user": (True,)}, {"system_to_last_user": (False,)},
                                "Mistral: the system prompt inside the last user message"),
    "merged_tool_messages": _B({**_TOOLS, "merge": ("tools",)}, {}, "consecutive tool results in one block"),
    "merged_assistant_messages": _B({**_EXPLICIT, "merge": ("assistant",)}, {"merge": ("none", "tools")},
                                    "consecutive assistant messages in one block (turn_not_isolated)"),
    "split_message": _B({**_EXPLICIT, **_TOOLS, "split": (True,)}, {"split": (False,)},
                        "content and tool calls as two blocks (turn_split)"),
    "tool_calls_json": _B({**_TOOLS, "tool_format": ("json",)}, {}, "<tool_call>{\"name\", \"arguments\"}</tool_call>"),
    "tool_calls_xml": _B({**_TOOLS, "tool_format": ("xml",)}, {}, "<function=name><parameter=key>"),
    "tool_calls_python": _B({**_TOOLS, "tool_format": ("python",)}, {}, "[name(key=value)]"),
    "arguments_dict": _B({**_TOOLS, "tool_format": ("json",), "args": ("dict",)}, {}, "arguments|tojson"),
    "arguments_string": _B({**_TOOLS, "tool_format": ("json",), "args": ("string",)}, {}, "arguments concatenated as given text"),
    "arguments_auto": _B({**_TOOLS, "tool_format": ("json",), "args": ("auto",)}, {}, "text as given, else tojson"),
    "clock": _B({"clock": (True,)}, {"clock": (False,)}, "strftime_now in the system header"),
    "reasoning_key_reasoning_content": _B({**_THINK, "reasoning_key": ("reasoning_content",)}, {}, "message.reasoning_content"),
    "reasoning_key_reasoning": _B({**_THINK, "reasoning_key": ("reasoning",)}, {"reasoning_key": ("reasoning_content", "thinking")},
                                  "message.reasoning"),
    "reasoning_key_thinking": _B({**_THINK, "reasoning_key": ("thinking",)}, {}, "message.thinking"),
    "trim": _B({"trim": (True,)}, {}, "content and reasoning |trim"),
    "closed_empty_think_prompt": _B({"gen_think": (False,), "reasoning": ("none",), "closed_think": (True,)}, {"closed_think": (False,)},
                                    "DeepSeek-V3.2: the prompt ends <think></think>, history writes </think> before each turn"),
    "trailing_system_turn": _B({**_EXPLICIT, "trailing_turn": (True,)}, {"trailing_turn": (False,)},
                               "command-r-plus: a fixed system turn after the last message"),
}


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
            off[k] = off.get(k, set(_VALUES[k])) & set(v)
    return _specs(tuple(sorted(require.items())), tuple(sorted((k, tuple(sorted(v, key=str))) for k, v in off.items())))


@st.composite
def _specs(draw, require, off) -> TemplateSpec:
    require, off = dict(require), dict(off)
    values: dict[str, Any] = {}
    for name, options in _VALUES.items():
        ok = [v for v in options if _compatible(name, v, values)]
        req = [v for v in ok if v in require.get(name, options)]
        if not req:
            raise ValueError(f"behaviour requirements {require} cannot be met: {name} after {values}")
        avoided = [v for v in req if v in off.get(name, options)]
        values[name] = draw(st.sampled_from(avoided or req))
    return TemplateSpec(**values)


# ---- conversations -------------------------------------------------------------------------


@st.composite
def spec_conversations(draw, spec: TemplateSpec, *, max_turns: int = 3) -> Conversation:
    """A conversation ending on an assistant message that exercises ``spec``: tool calls when the
    template renders them (arguments sometimes given as JSON text, compact or indented: always
    for ``args="string"``), reasoning, and now and then a second assistant answer right after
    an answer (not under ``end="next"``, where the next header would be no stop token).
    Message text never spells a control token or marker of the template."""
    specials = tuple(dict.fromkeys(SPECIAL_STRINGS + spec.control_tokens() + _TAGS + _MARKERS
                                   + tuple(_ROLE_TOKENS.values()) + ("<|end|>",)))
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


# ---- tokenizers ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _base_tokenizer(spec: TokenizerSpec):
    return make_tokenizer(spec, None, name_or_path="sftdata-test/generated")


def spec_tokenizer(spec: TemplateSpec):
    """An offline tokenizer with ``spec``'s control tokens (special) and tags (added) and its
    template. The BPE is trained once per process and one wrapper is built per token set; each
    call returns a shallow copy with its own ``chat_template``. No EOS is set: the stop set is
    :meth:`TemplateSpec.stop_tokens`, passed to sftdata explicitly."""
    tok = copy.copy(_base_tokenizer(spec.tokenizer_spec()))
    tok.chat_template = spec.source()
    return tok


# ---- the oracle ----------------------------------------------------------------------------


@dataclass
class SpecReport:
    """What :func:`check_against_spec` checked: turns matched, or the expected reject."""

    turns: int = 0
    rejected: str | None = None


def _paths(row) -> list[list[int]]:
    """Every root-to-leaf path of a row as token indices, from ``parent`` alone (``[]``: one path)."""
    n = len(row.input_ids)
    parent = list(row.parent) if row.parent else list(range(-1, n - 1))
    assert len(parent) == n, "parent and input_ids differ in length"
    has_child = [False] * n
    for i, p in enumerate(parent):
        assert -1 <= p < i, f"parent[{i}] = {p} is not -1 or an earlier index"
        if p >= 0:
            has_child[p] = True
    out = []
    for leaf in (i for i in range(n) if not has_child[i]):
        path, j = [], leaf
        while j >= 0:
            path.append(j)
            j = parent[j]
        out.append(path[::-1])
    return out


def _runs(rows) -> list[tuple[list[int], list[int]]]:
    """``(context ids, run ids)`` of every maximal trained run of every path. Paths share the
    tree's nodes: a run that another path's run from the same start continues (its tokens a
    prefix of that run's) is that run, counted once; two runs from one start that part ways
    (a token with two trained children) are both kept."""
    found: dict[tuple, tuple] = {}
    for key, ctx_run in _path_runs(rows):
        found[key] = ctx_run
    keys = sorted(found, key=lambda k: (k[0], k[1], len(k[2])))
    out = []
    for n, key in enumerate(keys):
        longer = any(o[:2] == key[:2] and len(o[2]) > len(key[2]) and o[2][: len(key[2])] == key[2] for o in keys[n + 1:])
        if not longer:
            out.append(found[key])
    return out


def _path_runs(rows):
    seen, out = set(), []
    for rn, r in enumerate(rows):
        ids, labels = list(r.input_ids), list(r.labels)
        assert len(ids) == len(labels), "labels and input_ids differ in length"
        for i, (t, y) in enumerate(zip(ids, labels)):
            assert y == IGNORE_INDEX or y == t, f"labels[{i}] = {y} is neither -100 nor input_ids[{i}] = {t}"
        for path in _paths(r):
            start = None
            for pos, i in enumerate(path + [None]):
                trained = i is not None and labels[i] != IGNORE_INDEX
                if trained and start is None:
                    start = pos
                elif not trained and start is not None:
                    key = (rn, path[start], tuple(path[start:pos]))
                    if key not in seen:
                        seen.add(key)
                        out.append((key, ([ids[j] for j in path[:start]], [ids[j] for j in path[start:pos]])))
                    start = None
    return out


def prompt_text(tok, spec: TemplateSpec, conversation: Conversation, k: int, *, now: datetime | None = None,
                template_kwargs: Mapping[str, Any] | None = None) -> str:
    """``P_k``: transformers' ``apply_chat_template(m[:k], add_generation_prompt=True,
    tokenize=False)``, with the messages as served to ``spec``'s template and the clock fixed
    at ``now`` (sftdata's reading) when given."""
    msgs = [{k2: v for k2, v in m.items() if v is not None} for m in conversation.template_messages(spec.served_arguments())]
    with _clock(now):
        return tok.apply_chat_template(msgs[:k], tools=conversation.template_tools(), add_generation_prompt=True,
                                       tokenize=False, **dict(template_kwargs or {}))


@contextlib.contextmanager
def _clock(now: datetime | None):
    """transformers' ``strftime_now`` reading ``now`` (it reads ``datetime.now()`` of its
    chat-template module; template kwargs cannot carry a function, transformers turns them into
    plain data). Without ``now``, the real clock."""
    if now is None:
        yield
        return
    from transformers.utils import chat_template_utils as ctu

    class _Fixed(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ARG003 - the fixed reading
            return now

    with mock.patch.object(ctu, "datetime", _Fixed):
        yield


def check_against_spec(tok, spec: TemplateSpec, conversation: Conversation, rows_or_error, *,
                       now: datetime | None = None, template_kwargs: Mapping[str, Any] | None = None) -> SpecReport:
    """Check sftdata's output for ``conversation`` (policy ``exact``, every assistant turn
    trained) against ``spec``'s ground truth.

    ``rows_or_error``: the rows (tree or linear ``EncodedExample`` s, anything with
    ``input_ids``, ``labels``, ``parent``) or the :class:`~sftdata.errors.RowError` raised.
    ``now``: the clock reading sftdata gave the template (``Encoder.now``).

    Checks: a reject only when the spec expects one, with an expected reason; otherwise every
    expected turn ``k`` is exactly one trained run whose context is ``tokens(P_k)`` and whose
    tokens are ``tokens(expected text)``, and no trained token lies outside those runs.

    Raises:
        AssertionError: naming the turn, the expected text and what the rows hold.
    """
    expected = spec.expected(conversation)
    rejects = {t.reject for t in expected if t.reject}
    if isinstance(rows_or_error, RowError):
        reason = rows_or_error.reason.value
        assert reason in rejects, (
            f"unexpected reject {reason} ({rows_or_error}); expected "
            + (f"one of {sorted(rejects)}" if rejects else "rows for every turn")
        )
        return SpecReport(rejected=reason)
    rows = list(rows_or_error)
    runs = _runs(rows)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    dec = lambda x: tok.backend_tokenizer.decode(list(x), skip_special_tokens=False)  # noqa: E731
    assert not rejects, (
        f"rows written, but expected a reject: {[(t.k, t.reject, t.why) for t in expected if t.reject]}; "
        f"trained (context tail, run): {[(dec(c)[-40:], dec(r)) for c, r in runs]}"
    )
    unmatched = list(range(len(runs)))
    for t in expected:
        p_text = prompt_text(tok, spec, conversation, t.k, now=now, template_kwargs=template_kwargs)
        ctx, want = ids(p_text), ids(t.text)
        hit = next((n for n in unmatched if runs[n][0] == ctx and runs[n][1] == want), None)
        if hit is None:
            same_ctx = [dec(runs[n][1]) for n in unmatched if runs[n][0] == ctx]
            others = [(dec(runs[n][0])[-40:], dec(runs[n][1])) for n in unmatched if runs[n][0] != ctx]
            raise AssertionError(
                f"turn {t.k}: no trained run is tokens(P_k) + tokens({t.text!r}); "
                f"runs after P_k: {same_ctx}; other runs (context tail, run): {others}; P_k tail: {p_text[-60:]!r}"
            )
        unmatched.remove(hit)
    assert not unmatched, (
        "trained tokens outside every expected turn: "
        + str([(dec(runs[n][0])[-40:], dec(runs[n][1])) for n in unmatched])
    )
    return SpecReport(turns=len(expected))


def spec_fields() -> tuple[str, ...]:
    """The names of :class:`TemplateSpec`'s fields (for tables)."""
    return tuple(f.name for f in fields(TemplateSpec))
