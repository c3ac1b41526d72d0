"""Render a conversation with its chat template: the training rendering and, for every trained
turn, the text the model sees and the text it generates there.

This is the first half of masking; :mod:`sftdata.masking.encode` tokenizes these texts, decides on
tokens whether each turn is trained in place, and merges the sequences into a prefix tree.
Nothing here uses hand-written per-model templates or ``{% generation %}`` tags: the template
itself says what the model generates. For a trained assistant message ``k`` of ``m``::

    P_k = render(m[:k], add_generation_prompt=True)    # what the model sees at inference
    F_k = render(m[:k+1])                              # turn k rendered as the last turn
    G_k = F_k[len(P_k):] cut after the first stop token    # what the model generates
    F   = render(m[:K+1])                              # the training rendering (K = last trained)

    P_k: "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"
    G_k:                                             "Hello!<|im_end|>"
    F_k: "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n"
                                                                         ^ not trained

Where the turn starts (``Turn.mode``, counted in ``stats.json``): the model saw ``P_k``, the
history + the generation prompt ``gp``, and generates what the template renders for message ``k``
after ``gp``. The turn is located by what it is made of, not by where two renderings differ:

* ``prefix``: ``F_k`` starts with ``P_k``; ``G_k`` follows it.
* ``prompt_mismatch`` (the history agrees) and ``history_rewritten`` (adding turn ``k`` changes
  how earlier turns render: gpt-oss drops the analysis of tool calls once a final answer
  follows; Mistral-Nemo moves the system prompt out of the user message): the first character
  rendered from message ``k``'s own fields is found by re-rendering with those fields changed;
  before it ``F_k`` holds the turn's header, ``gp`` or a prefix of it cut after a control token or
  a newline, taken at its occurrence closest to the fields (a separator written before every
  header, as ``"\n<|im_start|>"``, is not part of it; with no header and the history agreeing, the
  turn follows the history). The model generates the rest: template text such as QwQ's
  ``<tool_call>`` or GLM's ``</think>``, then the fields. Between header and fields there may be
  no stop token, and the turn may hold no other message's text (``turn_not_isolated``).

The stop token: ``G_k`` ends at the first token of the model's stop set
(:mod:`sftdata.masking.stop_tokens`). If ``F_k`` holds none after the turn, the token the template
writes right after the turn when the conversation continues (the next message, or a probe
user message after the last one) is used when it is a stop token (GLM's ``<|observation|>``
and ``<|user|>``, Apertus' ``<|assistant_end|>``); otherwise the turn is trained without one
(``no_stop_token``). Text of the turn that the template renders after the stop token from the
message's own fields (a message split in two, as Nemotron-Nano-v2 does with content and tool
calls) rejects the row (``turn_split``): no inference-time generation produces it. Text written
after every message (a constant suffix, the next header, a generation prompt the template always
ends with) is not the turn's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ..errors import Reason, RowError
from ..invariants import InvariantError
from ..schema import Conversation
from .template import ChatTemplate
from .argument_probe import quotes_text, with_probe_arguments
from .render_split import common_prefix_chars, split_from, split_startswith, split_text  # noqa: F401 - common_prefix_chars: public here too
from .rendered import RenderStats, Rendered, Turn, TurnPolicy  # noqa: F401 - public here too
from .turn_location import TurnLocation, first_stop


def _calls_without_schema(conv: Conversation, end: int) -> int:
    """Tool calls of ``conv.messages[:end]`` naming a tool that ``conv.tools`` has no schema for."""
    names = {(t.get("function") or t).get("name") for t in conv.tools or () if isinstance(t, Mapping)}
    return sum(1 for m in conv.messages[:end] for c in m.tool_calls if c.name not in names)


class Renderer(TurnLocation):
    """Renders conversations into :class:`Rendered` texts under a :class:`TurnPolicy`.

    Args:
        template: the compiled chat template.
        stop_tokens: the model's stop set (:func:`sftdata.masking.stop_tokens.resolve_stop_tokens`).
        policy: the turn policy.
        train_roles: roles trained by default (``{"assistant"}``); per-message ``train`` wins.
        train_reasoning: if False, reasoning text inside trained turns stays untrained.
        trim_trailing: drop messages after the last trained turn (default True).
        control_tokens: control-token strings of the tokenizer (a rewritten history's closing
            markup is anchored on them; text after a turn's stop token made of them alone is
            template decoration, not part of the turn).
        anchor_on_control: control-token text in content is rejected or marked, so the template's
            own control tokens can anchor a turn (``special_tokens_in_content`` not ``allow``).
        marked: content carries plain-text markers (``special_tokens_in_content="text"``).
        tool_arguments: ``auto`` | ``dict`` | ``json`` (see :meth:`sftdata.schema.ToolCall.to_template`).
    """

    def __init__(
        self,
        template: ChatTemplate,
        stop_tokens: Sequence[str],
        *,
        policy: TurnPolicy | str = TurnPolicy.EXACT,
        train_roles: Sequence[str] = ("assistant",),
        train_reasoning: bool = True,
        trim_trailing: bool = True,
        control_tokens: Sequence[str] = (),
        anchor_on_control: bool = True,
        marked: bool = False,
        tool_arguments: str = "auto",
    ) -> None:
        if tool_arguments not in ("auto", "dict", "json"):
            raise ValueError(f"tool_arguments must be 'auto', 'dict' or 'json', got {tool_arguments!r}")
        self.template = template
        self.stops = tuple(stop_tokens)
        self.policy = TurnPolicy(policy)
        self.train_roles = frozenset(train_roles)
        self.train_reasoning = train_reasoning
        self.trim_trailing = trim_trailing
        self.control = tuple(control_tokens)
        self.anchor_on_control = anchor_on_control
        self.marked = marked
        self.tool_arguments = tool_arguments

    # -- public -------------------------------------------------------------------
    def trained_messages(self, conv: Conversation) -> list[int]:
        """Indices of messages whose turn is trained (role default, overridden by ``train``)."""
        return [i for i, m in enumerate(conv.messages) if (m.train if m.train is not None else m.role in self.train_roles)]

    def render(self, conv: Conversation, stats: RenderStats | None = None) -> Rendered:
        """Render ``conv`` into the training text and its trained turns.

        Raises:
            RowError: ``no_trained_turn``; ``template_error`` (the template's own message);
                ``turn_not_isolated`` / ``turn_split`` (see the module doc).
        """
        stats = stats if stats is not None else RenderStats()
        trained = self.trained_messages(conv)
        if not trained:
            raise RowError(Reason.NO_TRAINED_TURN, "no message is trained (no assistant turn, or all have train=false)", field="messages")
        if self.policy is TurnPolicy.LAST:
            trained = trained[-1:]
        end = trained[-1] + 1 if self.trim_trailing else len(conv.messages)
        if self.template.budget is not None:
            self.template.budget.start(messages=len(conv.messages))
        stats.trimmed_trailing_messages += len(conv.messages) - end
        unknown = _calls_without_schema(conv, end)
        stats.tool_calls_without_schema += unknown
        stats.rows_with_calls_without_schema += int(unknown > 0)
        self.template.new_conversation(end)
        self._memo: dict[tuple[int, bool], str] = {}
        self._split_memo: dict[tuple[int, bool], tuple[int, str]] = {}
        self._messages: list[dict] | None = None  # set once the training rendering is made
        self._messages, full = self._first_rendering(conv, end, stats)
        self._full = full
        spans = None
        if self.policy is TurnPolicy.ALL and self.template.has_generation_markers:
            text, found = self.template.render_generation_spans(self._messages[:end], self._tools, prepared=True)
            if text != full:
                raise RowError(Reason.TEMPLATE_ERROR, "the template renders differently with generation blocks tracked", field="messages")
            spans = tuple(found)
        turns = tuple(t for t in (self._turn(conv, k, stats) for k in trained) if t is not None)
        if not turns:
            raise RowError(Reason.NO_TRAINED_TURN, "the chat template renders nothing for any trained turn", field="messages")
        stats.turns += len(turns)
        return Rendered(full, turns, spans)

    # -- renderings ---------------------------------------------------------------
    def _first_rendering(self, conv: Conversation, end: int, stats: RenderStats) -> tuple[list[dict], str]:
        """Template messages and ``F``, with the fallbacks a template may need: ``""`` for a
        missing content beside tool calls (templates that index ``message['content']``), and
        the other form of tool-call arguments (``auto``: a template that fails on dict
        arguments may render JSON text, and vice versa)."""
        self._tools = conv.template_tools()
        attempts = [self.tool_arguments]
        texts = [c.arguments_text for m in conv.messages[:end] for c in m.tool_calls if c.arguments_text is not None]
        if self.tool_arguments == "auto" and conv.has_tool_calls:
            attempts.append("dict" if texts else "json")
        error: RowError | None = None
        quoted: tuple[list[dict], str, bool] | None = None  # rendered, but with arguments quoted
        for i, mode in enumerate(attempts):
            messages = self.template.prepare_messages(conv.template_messages(mode))
            for fill in (False, True):
                if fill:
                    if not any(m.get("content") is None for m in messages[:end]):
                        break
                    messages = [{**m, "content": ""} if m.get("content") is None else m for m in messages]
                self._memo.clear()
                try:
                    full = self._render(messages, end, training=True)
                except RowError as e:
                    error = error or e.detached()  # kept: no traceback holding this frame
                    continue
                if mode == "auto" and texts and len(attempts) > 1 and quotes_text(full, texts) and self._quotes_arguments(messages, end):
                    # the template serialises arguments itself (``arguments|tojson``): given JSON
                    # text it would write a quoted string, so pass the objects, as serving stacks do
                    quoted = (messages, full, fill)
                    break
                stats.content_none_as_empty += int(fill)
                stats.tool_arguments_converted += int(i > 0)
                return messages, full
        if quoted is not None:  # the objects do not render: keep the text as given
            messages, full, fill = quoted
            self._memo.clear()
            self._memo[(end, False)] = full  # rendered already, from these messages
            stats.content_none_as_empty += int(fill)
            return messages, full
        if error is None:
            raise InvariantError("a failed rendering has an error", "no attempt rendered and none raised")
        raise error

    def _quotes_arguments(self, messages: list[dict], end: int) -> bool:
        """Whether the template serialises JSON-text arguments itself (``arguments|tojson`` on a
        string), writing them as a quoted string: decided on a rendering whose arguments are
        distinct probe objects, so text elsewhere in the conversation (a ``"{}"`` in a tool
        output) cannot pass for a quoted argument."""
        probed, probes = with_probe_arguments(messages[:end])
        try:
            text = self.template.render(probed, self._tools, prepared=True)
        except RowError:
            return False
        return any(json.dumps(p, ensure_ascii=a) in text for p in probes for a in (False, True))

    def _render(self, messages: list[dict], n: int, add_generation_prompt: bool = False, training: bool = False) -> str:
        """``render(messages[:n])``, memoised within one conversation (built from its split form when
        :meth:`_render_split` made that one)."""
        key = (n, add_generation_prompt)
        out = self._memo.get(key)
        if out is None:
            split = self._split_memo.get(key) if messages is self._messages else None
            if split is not None:
                out = split_text(self._full, *split)
            else:
                out = self.template.render(
                    messages, self._tools, add_generation_prompt=add_generation_prompt, prepared=True, count=n, training=training
                )
            self._memo[key] = out
        return out

    def _render_split(self, n: int, add_generation_prompt: bool = False) -> tuple[int, str]:
        """``render(m[:n])`` as ``(shared, tail)`` against ``F`` (:mod:`sftdata.masking.render_split`),
        memoised within one conversation."""
        key = (n, add_generation_prompt)
        out = self._split_memo.get(key)
        if out is None:
            out = self.template.render_split(
                self._messages, self._tools, base=self._full, add_generation_prompt=add_generation_prompt, prepared=True, count=n
            )
            self._split_memo[key] = out
        return out

    def _safe(self, n: int, add_generation_prompt: bool = False) -> str | None:
        try:
            return self._render(self._messages, n, add_generation_prompt)
        except RowError:
            return None

    # -- one turn -----------------------------------------------------------------
    @staticmethod
    def _not_isolated(k: int) -> RowError:
        return RowError(
            Reason.TURN_NOT_ISOLATED,
            "the chat template renders earlier turns differently once this turn is added, and no generation "
            "prompt of its own marks where the turn starts",
            field=f"messages[{k}]",
        )

    def _turn(self, conv: Conversation, k: int, stats: RenderStats) -> Turn | None:
        msgs = self._messages
        msg = conv.messages[k]
        assistant = msg.role == "assistant"
        for memo in (self._memo, self._split_memo):
            for key in [key for key in memo if key[0] < k]:  # turns come in order: never asked again
                del memo[key]
        self._alt = None  # the rendering of ``m[:k+1]`` with message k's fields changed, made on demand
        if assistant and k and not self.marked:
            turn = self._prefix_turn(k, msg, stats)
            if turn is not _NOT_PREFIX:
                return turn
        full_k = self._render(msgs, k + 1)
        if assistant:
            prompt = self._render(msgs, k, True) if k else (self._safe(0, True) or "")
        else:
            prompt = self._preamble(full_k) if k == 0 else self._render(msgs, k)
        if full_k.startswith(prompt):
            mode, start = "prefix", len(prompt)
        elif assistant:
            # the generation prompt is not how the template renders the turn, or adding the turn
            # rewrites the history: the turn is located by what it is made of (its own fields)
            history = (self._safe(k) or "") if k else ""
            mode = "prompt_mismatch" if full_k.startswith(history) else "history_rewritten"
            start = self._generation_start(k, prompt, history, full_k)
            if mode == "prompt_mismatch":
                stats.prompt_mismatch += 1
            else:
                stats.history_rewritten += 1
        else:
            raise self._not_isolated(k)
        full, end = self._cut_at_stop(k, full_k, start, stats)
        if mode != "prefix":
            self._check_isolated(k, full[start:end])
        base = self._full
        shared = len(prompt) if base.startswith(prompt) else common_prefix_chars(prompt, base)
        return self._finish_turn(k, msg, mode, shared, prompt[shared:], full, start, end, stats)

    def _prefix_turn(self, k: int, msg, stats: RenderStats) -> Turn | None | object:
        """Turn ``k`` (an assistant message) when ``F_k`` starts with ``P_k``, both held against ``F``
        (:meth:`_render_split`): O(the turn and the renders' tails), not O(length). Returns
        ``_NOT_PREFIX`` when ``F_k`` does not start with ``P_k`` (the caller locates the turn on the
        whole texts)."""
        base = self._full
        sf, tf = self._render_split(k + 1)
        sp, tp = self._render_split(k, True)
        if not split_startswith(base, sf, tf, sp, tp):
            return _NOT_PREFIX
        start = sp + len(tp)
        turn_text = split_from(base, sf, tf, start)  # F_k from the end of P_k on
        if first_stop(turn_text, self.stops, 0, False) >= 0:
            full, end = self._cut_at_stop(k, turn_text, 0, stats)
        else:  # the stop token is looked for after the turn: on the whole text, as the caller does
            full, end = self._cut_at_stop(k, split_text(base, sf, tf), start, stats)
            full, end = full[start:], end - start
        return self._finish_turn(k, msg, "prefix", sp, tp, full, 0, end, stats)

    def _finish_turn(self, k: int, msg, mode: str, shared: int, prompt_tail: str, full: str, start: int, end: int,
                     stats: RenderStats) -> Turn | None:
        """The :class:`Turn` whose generated text is ``full[start:end]`` (reasoning masked when not
        trained), or ``None`` when the template renders nothing for it."""
        masked: tuple[tuple[int, int], ...] = ()
        if msg.reasoning and msg.reasoning.strip():
            r = msg.reasoning.strip()
            pos = full.find(r, start, end)
            if pos < 0:
                stats.reasoning_not_rendered += 1
            elif not self.train_reasoning:
                masked = ((pos, pos + len(r)),)
        if end <= start:  # the template drops the message (an empty turn): nothing to train
            stats.turns_not_rendered += 1
            return None
        masked = tuple((a - start, b - start) for a, b in masked)
        return Turn(k, mode, self._full, shared, prompt_tail, full[start:end], masked)


#: :meth:`Renderer._prefix_turn`'s answer when ``F_k`` does not start with ``P_k``
_NOT_PREFIX = object()
