"""Render a conversation with its chat template into text with trained character spans.

This is the first half of masking (the second, :mod:`sftdata.encode`, maps the
character spans onto tokens and checks them). It never uses hand-written per-model
templates nor ``{% generation %}`` tags; it asks the template itself what the model
generates at each turn.

Definitions, for a trained assistant message ``k`` of conversation ``m``::

    P_k  = render(m[:k], add_generation_prompt=True)     # the prompt at inference
    F_k  = render(m[:k+1])                               # turn k rendered as the last turn
    G_k  = F_k[len(P_k):] cut after the first end-of-turn token   # what the model generates
    F    = render(m[:K+1])                               # K = last trained message

    P_k: "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"
    G_k:                                             "Hello!<|im_end|>"
    F_k: "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n"
                                                                         ^ not trained

The turn is *consistent* when ``P_k + G_k`` is a prefix of ``F``: then the tokens the
model generates at inference appear verbatim in the single rendering ``F`` and can be
trained in place. Templates that rewrite history break this (Qwen3 drops the reasoning
of earlier turns and adds an empty ``<think>`` block only to the final turn; some
templates append EOS only at the very end). :class:`TurnPolicy` says what to do then.

If ``F_k`` does not start with ``P_k`` because the generation prompt differs from how
the template renders the turn (Qwen3 with ``enable_thinking=False`` on a turn that has
reasoning), the prompt is cut where the two diverge. If they diverge earlier, inside the
history (adding turn k rewrites earlier turns), the row is rejected (``turn_not_located``).

For trained non-assistant messages (``train_roles`` or ``train=True``), the prompt is
``render(m[:k])`` without a generation prompt, so the whole rendered message including
its header is trained, up to its end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from os.path import commonprefix
from typing import Sequence

from .control_tokens import MARK_START
from .errors import Reason, RowError
from .schema import Conversation
from .template import ChatTemplate


class TurnPolicy(str, Enum):
    """How trained turns are placed into examples.

    * ``exact`` (default): every trained token is exactly what the model generates at
      that turn at inference. Consistent turns train in place in one rendering of the
      conversation; each inconsistent turn becomes an extra example ``P_k + G_k``.
    * ``all``: train every assistant turn as it appears in one rendering of the whole
      conversation (rewritten turns are located in that rendering; no extra examples).
    * ``last``: train only the final trained turn.
    """

    EXACT = "exact"
    ALL = "all"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class Span:
    """A trained character range ``[start, end)`` of a segment's text.

    Attributes:
        message: index of the message this turn comes from.
        masked: character sub-ranges inside the span that stay untrained
            (reasoning text with ``train_reasoning=False``).
        turn: the turn rendered on its own (``prompt``, ``generated``), used to turn an
            in-place span into an extra example when tokenization does not align.
    """

    start: int
    end: int
    message: int
    masked: tuple[tuple[int, int], ...] = ()
    turn: "TurnRendering | None" = None


@dataclass(frozen=True, slots=True)
class Segment:
    """Text encoded on its own; examples concatenate the token ids of their segments."""

    text: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedExample:
    """One training example before tokenization.

    ``kind`` is ``"conversation"`` (one segment: the full rendering ``F``) or
    ``"expanded_turn"`` (two segments: ``P_k`` untrained, ``G_k`` trained).
    """

    kind: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class TurnRendering:
    """What the template says the model generates at one turn."""

    message: int
    prompt: str  # P_k (cut where F_k diverges, if it does)
    generated: str  # G_k
    masked: tuple[tuple[int, int], ...] = ()  # relative to `generated`


@dataclass
class RenderStats:
    """Counters of one rendering, summed into ``stats.json``."""

    expanded_turns: int = 0
    in_place_turns: int = 0
    located_turns: int = 0  # policy `all`: rewritten turns located in F
    generation_prompt_mismatch: int = 0
    no_end_of_turn: int = 0
    reasoning_not_rendered: int = 0
    trimmed_trailing_messages: int = 0
    content_none_as_empty: int = 0
    history_rewritten: int = 0  # turns whose addition rewrites earlier turns (always extra examples)


def _find_all(text: str, sub: str, marked: bool = False) -> list[int]:
    """Start indices of every occurrence of ``sub`` in ``text`` that the template wrote
    (with ``marked``, occurrences marked as plain text from content,
    ``\ue000<|im_end|>\ue001``, are skipped)."""
    out, i = [], text.find(sub)
    while i >= 0:
        if not (marked and i > 0 and text[i - 1] == MARK_START):
            out.append(i)
        i = text.find(sub, i + 1)
    return out


def _first_end_of_turn(text: str, eot: Sequence[str], start: int = 0, marked: bool = False) -> int:
    """End index (exclusive) of the first end-of-turn token in ``text[start:]``, or -1
    (with ``marked``, control-token text marked as plain text is not a turn end)."""
    best = -1
    for tok in eot:
        i = text.find(tok, start)
        while marked and i > 0 and text[i - 1] == MARK_START:
            i = text.find(tok, i + 1)
        if i >= 0 and (best < 0 or i + len(tok) < best):
            best = i + len(tok)
    return best


class Renderer:
    """Renders conversations into :class:`PlannedExample` lists under a :class:`TurnPolicy`.

    Args:
        template: the compiled chat template.
        end_of_turn: end-of-turn token strings (see :func:`sftdata.tokenizer.end_of_turn_tokens`).
        policy: the turn policy.
        train_roles: roles trained by default (``{"assistant"}``); per-message ``train`` wins.
        train_reasoning: if False, the reasoning text inside a trained turn is masked.
        trim_trailing: drop messages after the last trained turn (default True).
        control_tokens: control-token strings of the tokenizer (never in content; used
            to recognise a turn's own header).
        marked: content went through :func:`sftdata.control_tokens.mark_control_tokens`
            (``special_tokens_in_content="text"``): marked control-token text is not structure.
    """

    def __init__(
        self,
        template: ChatTemplate,
        end_of_turn: Sequence[str],
        *,
        policy: TurnPolicy | str = TurnPolicy.EXACT,
        train_roles: Sequence[str] = ("assistant",),
        train_reasoning: bool = True,
        trim_trailing: bool = True,
        control_tokens: Sequence[str] = (),
        marked: bool = False,
    ) -> None:
        self.template = template
        self.control = tuple(control_tokens)
        self.marked = marked
        self.eot = tuple(end_of_turn)
        self.policy = TurnPolicy(policy)
        self.train_roles = frozenset(train_roles)
        self.train_reasoning = train_reasoning
        self.trim_trailing = trim_trailing

    # -- public -------------------------------------------------------------------

    def trained_messages(self, conv: Conversation) -> list[int]:
        """Indices of messages whose turn is trained (role default, overridden by ``train``)."""
        out = []
        for i, m in enumerate(conv.messages):
            trained = m.train if m.train is not None else m.role in self.train_roles
            if trained:
                out.append(i)
        return out

    def plan(self, conv: Conversation, stats: RenderStats | None = None) -> list[PlannedExample]:
        """Render ``conv`` into examples with trained character spans.

        Raises:
            RowError: ``no_trained_turn``, ``template_error`` (with the template's own
                message), or ``turn_not_located``.
        """
        stats = stats if stats is not None else RenderStats()
        trained = self.trained_messages(conv)
        if not trained:
            raise RowError(Reason.NO_TRAINED_TURN, "no message is trained (no assistant turn, or all have train=false)", field="messages")
        if self.policy is TurnPolicy.LAST:
            trained = trained[-1:]
        last = trained[-1]
        self.template.new_conversation()
        self._memo: dict[tuple[int, bool], str] = {}
        messages = self.template.prepare_messages(conv.template_messages())
        tools = conv.template_tools()
        end = last + 1 if self.trim_trailing else len(messages)
        stats.trimmed_trailing_messages += len(messages) - end
        try:
            full = self._render(messages, end, tools)
        except RowError:
            # Templates that index message['content'] fail on tool-call messages without
            # content (transformers drops None keys, so apply_chat_template fails too).
            # Rendering "" instead is faithful; anything else still fails loudly.
            if not any(m.get("content") is None for m in messages[:end]):
                raise
            messages = [{**m, "content": ""} if m.get("content") is None else m for m in messages]
            self._memo.clear()
            full = self._render(messages, end, tools)
            stats.content_none_as_empty += 1

        turns = [self._render_turn(conv, messages, tools, k, full if (k + 1 == end) else None, stats) for k in trained]

        spans: list[Span] = []
        expanded: list[PlannedExample] = []
        for t in turns:
            if full.startswith(t.prompt) and full.startswith(t.generated, len(t.prompt)):
                start = len(t.prompt)
                spans.append(Span(start, start + len(t.generated), t.message, tuple((a + start, b + start) for a, b in t.masked), t))
                stats.in_place_turns += 1
            elif self.policy is TurnPolicy.ALL:
                spans.append(self._locate(conv, messages, tools, full, t, spans))
                stats.located_turns += 1
            else:
                expanded.append(expand_turn(t))
                stats.expanded_turns += 1
        spans.sort(key=lambda s: s.start)
        for a, b in zip(spans, spans[1:]):
            if b.start < a.end:
                raise RowError(
                    Reason.TURN_NOT_LOCATED,
                    f"trained spans of messages {a.message} and {b.message} overlap in the rendering",
                    field=f"messages[{b.message}]",
                )
        out = []
        if spans:
            out.append(PlannedExample("conversation", (Segment(full, tuple(spans)),)))
        out.extend(expanded)
        return out

    # -- internals ----------------------------------------------------------------

    def _render_turn(self, conv: Conversation, messages: list[dict], tools, k: int, full_k: str | None, stats: RenderStats) -> TurnRendering:
        msg = conv.messages[k]
        is_assistant = msg.role == "assistant"
        if k == 0:
            prompt = self._safe_render(messages, 0, tools, is_assistant)
        else:
            prompt = self._render(messages, k, tools, is_assistant)
        if full_k is None:
            full_k = self._render(messages, k + 1, tools)
        if k == 0 and not is_assistant and not prompt:
            # Nothing renders before the first message on its own (render([]) fails on most
            # templates), but the template may add a preamble, e.g. a default system prompt:
            # the message starts after the last end-of-turn token that precedes its own.
            ends = sorted(i + len(t) for t in self.eot for i in _find_all(full_k, t, self.marked))
            cut = ends[-2] if len(ends) >= 2 else 0
            cut += len(full_k[cut:]) - len(full_k[cut:].lstrip())
            prompt = full_k[:cut]
        if full_k.startswith(prompt):
            cut = len(prompt)
        else:
            cut = len(commonprefix([prompt, full_k]))
            history = self._safe_render(messages, k, tools, False) if is_assistant else prompt
            if cut < len(history) or not prompt.startswith(history):
                # Adding turn k changes how the earlier turns render (Gemma 4 keeps reasoning
                # only on the last assistant turn). For an assistant turn whose generation
                # prompt holds a control token (which never occurs in content), the last
                # occurrence of that prompt in F_k is turn k's own header: the model sees P_k
                # and generates what follows it. Otherwise refuse rather than guess.
                header = prompt[len(history):] if prompt.startswith(history) else ""
                pos = full_k.rfind(header) if header and any(t in header for t in self.control) else -1
                if pos < 0:
                    raise RowError(
                        Reason.TURN_NOT_LOCATED,
                        "the chat template rewrites earlier turns when this turn is added; the turn's own text cannot be isolated",
                        field=f"messages[{k}]",
                    )
                stats.history_rewritten += 1
                return self._finish_turn(msg, k, prompt, full_k[pos + len(header):], stats)
            stats.generation_prompt_mismatch += 1
        return self._finish_turn(msg, k, full_k[:cut], full_k[cut:], stats)

    def _finish_turn(self, msg, k: int, prompt: str, raw: str, stats: RenderStats) -> TurnRendering:
        """Cut ``raw`` (what follows the prompt) after the turn's end-of-turn token."""
        end = _first_end_of_turn(raw, self.eot, marked=self.marked)
        if end < 0:
            stats.no_end_of_turn += 1
            end = len(raw.rstrip())
        generated = raw[:end]
        if not generated:
            raise RowError(
                Reason.TURN_NOT_LOCATED,
                "the chat template renders nothing for this turn (it drops the message)",
                field=f"messages[{k}]",
            )
        masked: tuple[tuple[int, int], ...] = ()
        if msg.reasoning and msg.reasoning.strip():
            r = msg.reasoning.strip()
            pos = generated.find(r)
            if pos < 0:
                stats.reasoning_not_rendered += 1
            elif not self.train_reasoning:
                masked = ((pos, pos + len(r)),)
        return TurnRendering(k, prompt, generated, masked)

    def _render(self, messages: list[dict], n: int, tools, add_generation_prompt: bool = False) -> str:
        """``render(messages[:n])``, memoised within one :meth:`plan` call."""
        key = (n, add_generation_prompt)
        out = self._memo.get(key)
        if out is None:
            out = self.template.render(messages[:n], tools, add_generation_prompt=add_generation_prompt, prepared=True)
            self._memo[key] = out
        return out

    def _safe_render(self, messages: list[dict], n: int, tools, add_generation_prompt: bool) -> str:
        try:
            return self._render(messages, n, tools, add_generation_prompt)
        except RowError:
            return ""

    def _locate(self, conv: Conversation, messages: list[dict], tools, full: str, t: TurnRendering, placed: list[Span]) -> Span:
        """Policy ``all``: find turn ``t`` as the template rendered it inside ``full``.

        The turn begins where the history before it ends (``render(m[:k])`` is a prefix
        of ``full``; if later messages rewrite that history, the header is searched for
        after the previous trained turn instead, longest candidate first). Its header is the part of the generation
        prompt that the history rendering shares, cut back to a line end or control token
        so that content starting like the prompt (``<b>`` vs ``<think>``) is never eaten.
        It ends at the first end-of-turn token. The located text must contain the
        message's content and tool-call names, or the row is rejected
        (``turn_not_located``) rather than trained on a guess.
        """
        k = t.message
        msg = conv.messages[k]
        history = self._render(messages, k, tools) if k else ""
        gen = t.prompt[len(history):] if t.prompt.startswith(history) else ""
        lo = max([s.end for s in placed if s.message < k] + [0])
        needles = [msg.content.strip()] if msg.content and msg.content.strip() else []
        needles += [c.name for c in msg.tool_calls]
        found = None
        if full.startswith(history) and len(history) >= lo:
            begin = len(history)
            shared = len(commonprefix([gen, full[begin : begin + len(gen)]]))
            if shared < len(gen):
                shared = self._boundary_before(gen, shared)
            start = begin + shared
            end = _first_end_of_turn(full, self.eot, start, marked=self.marked)
            if end > 0 and all(n in full[start:end] for n in needles):
                found = (start, end)
        else:
            # Later messages rewrite the history: search the header (the generation prompt
            # cut at line ends / control tokens, longest first) after the previous turn.
            cuts = sorted({self._boundary_before(gen, i) for i in range(len(gen), 0, -1)} - {0}, reverse=True)
            for header in (gen[:c] for c in cuts):
                pos = full.find(header, lo)
                while pos >= 0 and found is None:
                    start = pos + len(header)
                    end = _first_end_of_turn(full, self.eot, start, marked=self.marked)
                    if end > 0 and all(n in full[start:end] for n in needles):
                        found = (start, end)
                    pos = full.find(header, pos + 1)
                if found:
                    break
        if found is None:
            raise RowError(
                Reason.TURN_NOT_LOCATED,
                "the turn (with its content and tool calls) was not found in the full rendering",
                field=f"messages[{k}]",
            )
        start, end = found
        text = full[start:end]
        masked: tuple[tuple[int, int], ...] = ()
        if msg.reasoning and not self.train_reasoning:
            r = msg.reasoning.strip()
            p = text.find(r) if r else -1
            if p >= 0:
                masked = ((start + p, start + p + len(r)),)
        return Span(start, end, k, masked, None)

    def _boundary_before(self, text: str, limit: int) -> int:
        """Largest position <= limit that follows a newline or an end-of-turn/control token in ``text``."""
        best = text.rfind("\n", 0, limit) + 1
        for tok in self.eot + ("<|im_start|>", "<|start_header_id|>", "<|end_header_id|>", "<start_of_turn>", "[/INST]"):
            i = text.rfind(tok, 0, limit)
            if i >= 0 and i + len(tok) <= limit:
                best = max(best, i + len(tok))
        return best


def expand_turn(t: TurnRendering) -> PlannedExample:
    """The extra example for a turn: ``P_k`` (untrained) then ``G_k`` (trained)."""
    return PlannedExample(
        "expanded_turn",
        (Segment(t.prompt), Segment(t.generated, (Span(0, len(t.generated), t.message, t.masked, t),))),
    )
