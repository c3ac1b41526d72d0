"""Where a turn's generated text starts and ends in a rendering (used by :class:`~sftdata.masking.render.Renderer`).

* the end: the first token of the model's stop set, else the stop token the template writes
  right after the turn when the conversation goes on (the next message, or a probe user
  message); text of the message after its stop token is a split message (``turn_split``);
* the start, when adding the turn rewrites the history: after the history's closing markup
  and the generation prompt, before the first character rendered from the message's own fields
  (found by re-rendering with those fields changed); the text found must hold no other
  message's content (``turn_not_isolated``).

:class:`TurnLocation` is a mixin: it reads the renderer's ``stops``, ``control``, ``marked``,
``anchor_on_control``, ``template``, ``_messages``, ``_tools`` and ``_safe``.
"""

from __future__ import annotations

import json
from os.path import commonprefix
from typing import TYPE_CHECKING, Sequence

from .control_tokens import MARK_START
from ..errors import Reason, RowError
from ..schema import REASONING_KEYS

if TYPE_CHECKING:  # pragma: no cover
    from .rendered import RenderStats

#: Prefix given to message ``k``'s fields to find where the template renders them.
_PROBE = "\ue010"
#: Characters of a turn's end that must precede a stop token found after a rewritten turn.
_TAIL_CHARS = 8
#: Longest stretch compared when looking for a turn's end (characters).
_SUFFIX_CAP = 4096


def _find_unmarked(text: str, sub: str, start: int = 0, marked: bool = False) -> int:
    """Start of the first occurrence of ``sub`` in ``text[start:]`` the template wrote (not
    marked content), or -1."""
    i = text.find(sub, start)
    while marked and i > 0 and text[i - 1] == MARK_START:
        i = text.find(sub, i + 1)
    return i


def first_stop(text: str, stops: Sequence[str], start: int = 0, marked: bool = False) -> int:
    """End (exclusive) of the first stop token in ``text[start:]`` written by the template, or -1."""
    ends = [i + len(tok) for tok in stops if (i := _find_unmarked(text, tok, start, marked)) >= 0]
    return min(ends, default=-1)


def _perturbed(message: dict) -> dict:
    """``message`` with every text field of its own changed at its first character."""
    out = dict(message)
    for key in ("content",) + REASONING_KEYS:
        if isinstance(out.get(key), str):
            out[key] = _PROBE + out[key]
    if out.get("tool_calls"):
        calls = []
        for c in out["tool_calls"]:
            fn = dict(c.get("function", {}))
            if isinstance(fn.get("name"), str):
                fn["name"] = _PROBE + fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str):
                fn["arguments"] = " " + args
            elif isinstance(args, dict):
                fn["arguments"] = {_PROBE: 0, **args}
            calls.append({**c, "function": fn})
        out["tool_calls"] = calls
    return out


def _next_probe(message: dict) -> dict:
    """The message that follows ``message`` when the conversation goes on: the result of its first
    tool call (a turn ending in tool calls is followed by their results), else a user message."""
    calls = message.get("tool_calls") or ()
    if calls:
        fn = calls[0].get("function") or {}
        out = {"role": "tool", "content": _PROBE}
        if calls[0].get("id") is not None:
            out["tool_call_id"] = calls[0]["id"]
        if isinstance(fn.get("name"), str):
            out["name"] = fn["name"]
        return out
    return {"role": "user", "content": _PROBE}


def _own_texts(message: dict) -> list[str]:
    """Text of a message's own fields (content, reasoning, tool-call names and arguments)."""
    out = [message.get(k) for k in ("content",) + REASONING_KEYS]
    for c in message.get("tool_calls") or ():
        fn = c.get("function") or {}
        args = fn.get("arguments")
        out += [fn.get("name")] + ([args] if isinstance(args, str) else
                                   [json.dumps(args, ensure_ascii=a, separators=sep) for a in (True, False) for sep in (None, (",", ":"))])
    return [t.strip() for t in out if isinstance(t, str) and t.strip()]


#: Another message's content shorter than this is not looked for in an isolated turn (short
#: strings occur by chance).
_MIN_FOREIGN_TEXT = 8



class TurnLocation:
    """Turn boundaries in renderings (see the module docstring)."""

    def _preamble(self, full_0: str) -> str:
        """What the template writes before the first message when that message is trained (a
        default system prompt): everything up to the last stop token before the message's own."""
        ends = sorted(i + len(t) for t in self.stops for i in _find_all(full_0, t, self.marked))
        cut = ends[-2] if len(ends) >= 2 else 0
        return full_0[: cut + len(full_0[cut:]) - len(full_0[cut:].lstrip())]

    def _cut_at_stop(self, k: int, full_k: str, start: int, stats: RenderStats) -> tuple[str, int]:
        """``(text, end)``: the turn ends after its stop token (see the module doc)."""
        end = first_stop(full_k, self.stops, start, self.marked)
        if end >= 0:
            rest = full_k[end:]
            for t in self.control:
                rest = rest.replace(t, "")
            if rest.strip() and self._renders_own_fields_after(k, full_k, end):
                raise RowError(
                    Reason.TURN_SPLIT,
                    "the chat template renders more of this message after the stop token that ends the turn "
                    f"({full_k[end:end + 60]!r}…); no generation at inference produces it",
                    field=f"messages[{k}]",
                )
            return full_k, end
        found = self._stop_after(k, full_k, start)
        if found:
            stats.stop_token_from_next_message += 1
            text = found[1] + found[0]
            return text, len(text)
        stats.no_stop_token += 1
        return full_k, len(full_k.rstrip())

    def _perturbed_rendering(self, k: int) -> str | None:
        """``render(m[:k] + [m[k] with its own fields changed])`` (memoised per turn), or ``None``
        when the template refuses it."""
        if getattr(self, "_alt", None) is None:
            msgs = self._messages
            try:
                self._alt = self.template.render(msgs[:k] + [_perturbed(msgs[k])], self._tools, prepared=True)
            except RowError:
                self._alt = ""
        return self._alt or None

    def _first_own(self, k: int, full_k: str) -> int:
        """Where ``full_k`` first renders something of message ``k``'s own fields (content,
        reasoning, tool calls): where it parts from the rendering with those fields changed;
        ``len(full_k)`` when nothing of them is rendered, -1 when the template refuses the change."""
        alt = self._perturbed_rendering(k)
        return len(commonprefix([full_k, alt])) if alt is not None else -1

    def _renders_own_fields_after(self, k: int, full_k: str, end: int) -> bool:
        """Whether text after the turn's stop token (at ``end``) is rendered from message ``k``'s
        own fields (a message split in two blocks), rather than written after every message
        (a constant suffix, the next header, a generation prompt the template always ends with)."""
        alt = self._perturbed_rendering(k)
        tail = len(full_k) - end
        if alt is None or tail > len(alt):
            return True
        return alt[len(alt) - tail :] != full_k[end:] or _PROBE in alt[len(alt) - tail :]

    def _generation_start(self, k: int, prompt: str, history: str, full_k: str) -> int:
        """Start of turn ``k``'s generated text in ``full_k`` when ``full_k`` does not start with
        the prompt ``P_k`` (see the module doc of :mod:`sftdata.masking.render`).

        The model saw ``P_k`` = the history + the generation prompt ``gp`` (``P_k`` after
        ``render(m[:k])``; for a template that writes ``gp`` at the end of every rendering, ``P_k``
        after its last stop token), and generates what the template renders for message ``k``
        after ``gp``. In ``full_k`` the turn is: a header that is a piece of ``gp`` between two of
        its cut points (its start, its end, and after each control token or newline: a separator
        or suffix around it, as ``"\n<|im_start|>"``, is not part of the header; ``<think>\n``
        after it may be missing), then template text the model generates (``<tool_call>``,
        ``</think>``), then the message's own fields. The header is the longest such piece found
        after the shared history and before the first character rendered from the message's own
        fields with no stop token in between (else it belongs to an earlier message); of equal
        pieces the closest. When the history agrees and no header is rendered, the turn starts
        right after the history.

        Raises:
            RowError: ``turn_not_isolated`` when no header is found.
        """
        first = self._first_own(k, full_k)
        if prompt.startswith(history) and len(prompt) > len(history):
            gp = prompt[len(history):]
        else:  # a generation prompt written at the end of every rendering: what P_k and F_k both end with
            last = max((i + len(t) for t in self.stops if (i := _rfind_unmarked(prompt, t, len(prompt), self.marked)) >= 0), default=-1)
            gp = prompt[last:] if last >= 0 and full_k.endswith(prompt[last:]) else ""
        if not gp.strip():  # no generation prompt marks the turn: the history's closing markup does
            if not k or not prompt.startswith(history):
                raise self._not_isolated(k)
            return self._isolate(k, history, "", full_k)
        if history.endswith(gp) and len(prompt) <= len(history):
            history = history[: len(history) - len(gp)]  # the history proper, without the prompt it always ends with
        agrees = full_k.startswith(history)
        # the header lies after everything the history and full_k share: in a rewritten history,
        # a header before the first rewritten character belongs to an earlier message (a template
        # that merges consecutive messages into one block writes no header of its own for turn k)
        lo = len(history) if agrees else len(commonprefix([history, full_k]))
        hi = first if first >= 0 else len(full_k)
        own = 0 <= first < len(full_k)
        cuts = _header_cuts(gp, self.control)
        # a header starts where gp does, or at gp's first control token (after a suffix or separator
        # the template writes before it), and holds that token: "<think>\n" alone is no header
        c0 = min((i for t in self.control if (i := gp.find(t)) >= 0), default=-1)
        starts = [0] if c0 <= 0 else [0, c0]
        best: tuple[int, int, int, int] | None = None  # (length, end, start in full_k, start in gp)
        for a in starts:
            for b in cuts:
                if b <= a or (best is not None and b - a < best[0]) or not gp[a:b].strip() or (c0 >= 0 and b <= c0):
                    continue  # a header has visible text and holds gp's first control token
                pos = _rfind_unmarked(full_k, gp[a:b], hi, self.marked)
                end = pos + b - a
                if pos < 0 or end <= lo:  # ends inside the shared history (which may end inside a token)
                    continue
                if own and first_stop(full_k[end:first], self.stops, 0, self.marked) >= 0:
                    continue
                if best is None or (b - a, end) > best[:2]:
                    best = (b - a, end, pos, a)
        if best is None:
            if agrees and k:  # the turn follows the history directly (a block left open, as Apertus'
                return lo     # assistant block after tool outputs)
            raise RowError(
                Reason.TURN_NOT_ISOLATED,
                "the chat template does not render this turn after (a piece of) its generation prompt "
                f"{gp[:60]!r}, so where the model's generation starts cannot be told",
                field=f"messages[{k}]",
            )
        length, end, pos, a = best
        if pos + len(commonprefix([gp[a:], full_k[pos:]])) == len(full_k):
            return len(full_k)  # the rendering ends inside the header: nothing is generated
        # the rest of gp the header did not match may end with control text the turn repeats (the
        # prompt ends "<think></think>", the history form writes "</think>"): the model saw it, so
        # it does not generate it
        rest = gp[a + length :]
        for i in sorted({j for t in self.control for j in _find_all(rest, t)}):
            if full_k.startswith(rest[i:], end) and (not own or end + len(rest) - i <= first):
                return end + len(rest) - i
        return end

    def _stop_after(self, k: int, full_k: str, start: int) -> tuple[str, str] | None:
        """The stop token the template writes right after turn ``k`` when the conversation goes on.

        The rendering with the next message (or a probe user message after the last one) holds
        the turn followed by that token. When the next message rewrites the turn's beginning
        (GLM drops the reasoning of turns before the last user message), the turn's end is found
        by its last characters, before the next message's own text.

        Returns:
            ``(stop token, the turn's text it follows)`` (``full_k``, or ``full_k`` without its
            trailing whitespace when found by its end), or ``None``.
        """
        msgs = self._messages
        if k + 1 < len(msgs):
            found = self._stop_in(self._safe(k + 2), None, full_k, start)
            if found is not None:
                return found
        try:  # the next message as a probe, whose own text marks where it starts
            nxt = self.template.render(msgs[: k + 1] + [_next_probe(msgs[k])], self._tools, prepared=True)
        except RowError:
            return None
        return self._stop_in(nxt, nxt.rfind(_PROBE), full_k, start)

    def _stop_in(self, nxt: str | None, limit: int | None, full_k: str, start: int) -> tuple[str, str] | None:
        """The stop token right after turn ``k`` in ``nxt``, the rendering with the next message
        (``limit``: where a probe next message's own text starts, if known); see :meth:`_stop_after`."""
        if nxt is None:
            return None
        if nxt.startswith(full_k):
            stop = next((t for t in self.stops if nxt.startswith(t, len(full_k))), None)
            return (stop, full_k) if stop else None
        # the stop token right after the longest stretch of the turn's end
        base = full_k.rstrip()
        need = min(_TAIL_CHARS, len(base) - start)
        end = len(nxt) if limit is None or limit < 0 else limit
        rev = base[: -_SUFFIX_CAP - 1 : -1]  # the turn's last characters, reversed (bounded)
        best: tuple[int, str] | None = None
        for t in self.stops:
            i = nxt.rfind(t, 0, end)
            while i >= 0:
                n = len(commonprefix([rev, nxt[max(0, i - _SUFFIX_CAP) : i][::-1]]))
                if n >= need > 0 and (best is None or n > best[0]):
                    best = (n, t)
                i = nxt.rfind(t, 0, i)
        if best:
            return best[1], base
        if limit is not None and limit > 0:
            # the next message rewrites the whole turn (reasoning dropped before a user message, and no
            # content left to find): the stop token is the one that opens the probe message
            lo = len(commonprefix([nxt, full_k]))  # the token may share its first characters with the turn
            opens = [(i, t) for t in self.stops if (i := nxt.rfind(t, 0, limit)) >= 0 and i + len(t) > lo]
            if opens:
                return max(opens)[1], full_k
        return None

    def _isolate(self, k: int, history: str, header: str, full_k: str) -> int:
        """Start of turn ``k``'s generated text in ``full_k`` when adding it rewrites the history.

        The template renders messages in order, so ``full_k`` is the rewritten history followed
        by the turn. The turn's first own character is where ``full_k`` and a rendering with
        message ``k``'s fields changed part (``first``); the history ends, before it, with the
        same closing markup as ``render(m[:k])`` (its last control token and what follows it);
        the generation prompt ``header`` (possibly empty) comes next, and the model generates
        the rest.
        """
        first = self._first_own(k, full_k)
        closes = [(_rfind_unmarked(history, t, len(history), self.marked), t) for t in self.control] if self.anchor_on_control else []
        closes = [c for c in closes if c[0] >= 0]
        anchor = history[max(closes)[0]:] if closes else ""
        pos = _rfind_unmarked(full_k, anchor, first, self.marked) if anchor and 0 < first < len(full_k) else -1
        start = pos + len(anchor)
        if pos < 0 or not full_k.startswith(header, start) or start + len(header) > first:
            raise RowError(
                Reason.TURN_NOT_ISOLATED,
                "the chat template rewrites earlier turns when this turn is added, and the turn's own text "
                "cannot be told apart from them",
                field=f"messages[{k}]",
            )
        return start + len(header)

    def _check_isolated(self, k: int, generated: str) -> None:
        """The text found for a turn whose history was rewritten must hold no other message's
        content (a template that merges messages into one block, e.g. Apertus' tool outputs)."""
        own = _own_texts(self._messages[k])
        for j, m in enumerate(self._messages):
            text = m.get("content").strip() if j != k and isinstance(m.get("content"), str) else ""
            if len(text) >= _MIN_FOREIGN_TEXT and text in generated and not any(text in o for o in own):
                raise RowError(
                    Reason.TURN_NOT_ISOLATED,
                    f"the text found for this turn also holds messages[{j}]'s text ({text[:40]!r}); the template "
                    "merges several messages into one block, so the turn cannot be trained on its own",
                    field=f"messages[{k}]",
                )



def _header_cuts(gp: str, control: Sequence[str]) -> list[int]:
    """Lengths of the prefixes of a generation prompt a template may render as a turn's header:
    the whole prompt, and the prompt cut after a control token or a newline; longest first."""
    cuts = {len(gp)}
    for sub in tuple(control) + ("\n",):
        i = gp.find(sub)
        while i >= 0:
            cuts.add(i + len(sub))
            i = gp.find(sub, i + 1)
    return sorted((c for c in cuts if c > 0), reverse=True)


def _rfind_unmarked(text: str, sub: str, end: int, marked: bool) -> int:
    """Start of the last occurrence of ``sub`` in ``text[:end]`` the template wrote (not marked content)."""
    i = text.rfind(sub, 0, end)
    while marked and i > 0 and text[i - 1] == MARK_START:
        i = text.rfind(sub, 0, i)
    return i


def _find_all(text: str, sub: str, marked: bool = False) -> list[int]:
    """Start of every occurrence of ``sub`` the template wrote (marked content skipped)."""
    out, i = [], _find_unmarked(text, sub, 0, marked)
    while i >= 0:
        out.append(i)
        i = _find_unmarked(text, sub, i + 1, marked)
    return out
