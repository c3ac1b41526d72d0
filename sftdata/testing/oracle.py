"""An oracle for masks, independent of sftdata's renderer: transformers' ``apply_chat_template``.

For every trained assistant turn ``k`` of a conversation ``m`` the oracle computes, with
transformers alone::

    P_k   = apply_chat_template(m[:k], add_generation_prompt=True, tokenize=True)   # token ids
    F_k   = apply_chat_template(m[:k+1], tokenize=False)

and checks the rows sftdata wrote (tree or linear) against them:

1. every trained token belongs to exactly one *trained run* of one root-to-leaf path, and every
   trained turn has exactly one run (no turn lost, none trained twice);
2. the context of a turn's run is its prompt: ``P_k`` itself, or (when the template's
   generation prompt is not how it renders the turn, ``prompt_mismatch``) a token prefix of
   ``P_k`` whose text, followed by the run's text, is a prefix of ``F_k``;
3. the run's text is what ``F_k`` renders for the turn: after the prompt (modes above), or a
   suffix block of ``F_k`` when adding the turn rewrites history; it ends with a stop token, or
   where ``F_k`` ends (counted ``no_stop``), or with the stop token the template writes next;
4. the run's tokens are ``tokenizer(run text)``: what the model generates, never a merge
   across the prompt boundary;
5. ``labels[i]`` is ``-100`` or ``input_ids[i]``, and the first root-to-leaf path of a tree
   (the training rendering) is ``apply_chat_template(m[:K+1], tokenize=True)`` or a prefix of it.

:func:`check_rows` returns a :class:`OracleReport` (turns checked per mode) or raises
``AssertionError`` naming the broken invariant. :func:`justified_refusal` says whether a
``RowError`` is one transformers' own rendering agrees with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os.path import commonprefix
from typing import Sequence

from ..errors import RowError
from ..schema import Conversation
from ..masking.tree import IGNORE_INDEX

__all__ = ["OracleReport", "check_rows", "justified_refusal", "trained_runs"]


@dataclass
class OracleReport:
    """What :func:`check_rows` checked: turns by how their prompt relates to ``F_k``."""

    turns: int = 0
    modes: dict = field(default_factory=dict)  # prefix | prompt_mismatch | history_rewritten -> count
    no_stop: int = 0
    not_rendered: int = 0

    def add(self, mode: str) -> None:
        """Count one checked turn under ``mode`` (``prefix``, ``prompt_mismatch`` or ``history_rewritten``)."""
        self.turns += 1
        self.modes[mode] = self.modes.get(mode, 0) + 1


def _decode(tok, ids: Sequence[int]) -> str:
    return tok.backend_tokenizer.decode(list(ids), skip_special_tokens=False)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def trained_runs(row) -> list[tuple[list[int], list[int]]]:
    """``(context ids, run ids)`` of every trained run of a row: a run starts at a trained token
    whose parent is untrained (or a root) and follows the unique trained child of each token
    (a tree row never gives a token two trained children); its context is the path of
    ancestors before it. On a single path these are the maximal runs of trained labels."""
    ids, labels = list(row.input_ids), list(row.labels)
    n = len(ids)
    parent = list(row.parent) if row.parent else list(range(-1, n - 1))
    child = [-1] * n  # the trained child of each token
    for i in range(n):
        if labels[i] != IGNORE_INDEX and parent[i] >= 0:
            assert child[parent[i]] == -1, f"(1) token {parent[i]} has two trained children"
            child[parent[i]] = i
    out = []
    for i in range(n):
        if labels[i] == IGNORE_INDEX or (parent[i] >= 0 and labels[parent[i]] != IGNORE_INDEX):
            continue
        ctx, p = [], parent[i]
        while p >= 0:
            ctx.append(ids[p])
            p = parent[p]
        run, j = [], i
        while j >= 0:
            run.append(ids[j])
            j = child[j]
        out.append((ctx[::-1], run))
    return out


def _render(tok, messages, tools, **kw):
    return tok.apply_chat_template(messages, tools=tools, return_dict=False, **kw)


def check_rows(tok, conv: Conversation, rows, stop_tokens: Sequence[str], *, trained: Sequence[int] | None = None,
               arguments: str = "auto", masked_reasoning: bool = False, template_kwargs: dict | None = None) -> OracleReport:
    """Check ``rows`` (``EncodedExample`` s of one conversation, policy ``exact`` or ``last``).

    Args:
        tok: the tokenizer (with its chat template).
        stop_tokens: the model's stop set.
        trained: indices of the trained assistant turns (default: every assistant message
            whose ``train`` is not False).
        arguments: how tool-call arguments were rendered (``auto``/``dict``/``json``).
        masked_reasoning: reasoning text was left untrained (runs may be split around it:
            only invariants 1, 2 and 5 are checked).

    Raises:
        AssertionError: naming the broken invariant.
    """
    kw = dict(template_kwargs or {})
    tools = conv.template_tools()
    if trained is None:
        trained = [k for k, m in enumerate(conv.messages) if m.role == "assistant" and m.train is not False]
    first_error: AssertionError | None = None
    for msgs in _served_forms(tok, conv, arguments, tools, kw):
        try:
            return _check(tok, conv, rows, stop_tokens, msgs, tools, kw, trained, masked_reasoning)
        except AssertionError as e:
            first_error = first_error or e
    if first_error is None:
        raise AssertionError("(5) apply_chat_template renders the conversation in no served form")
    raise first_error


def _served_forms(tok, conv: Conversation, arguments: str, tools, kw):
    """The message lists a serving stack may pass for ``conv``: tool-call arguments as given,
    as objects or as JSON text, and ``content: ""`` for a missing content; those the template
    renders, in that order."""
    seen = []
    for mode in dict.fromkeys((arguments, "auto", "dict", "json")):
        for fill in (False, True):
            msgs = [{k: v for k, v in m.items() if v is not None} for m in conv.template_messages(mode)]
            if fill:
                msgs = [{**m, "content": m.get("content", "")} for m in msgs]
            if msgs in seen:
                continue
            seen.append(msgs)
            try:
                _render(tok, msgs, tools, tokenize=False, **kw)
            except Exception:  # noqa: BLE001 - the template refuses this form
                continue
            yield msgs


def _check(tok, conv, rows, stop_tokens, msgs, tools, kw, trained, masked_reasoning) -> OracleReport:
    report = OracleReport()
    for r in rows:
        assert len(r.input_ids) == len(r.labels), "labels and input_ids differ in length"
        assert all(y == IGNORE_INDEX or y == i for i, y in zip(r.input_ids, r.labels)), "(5) a label is neither -100 nor its token"
    runs = [run for r in rows for run in trained_runs(r)]
    total = sum(1 for r in rows for y in r.labels if y != IGNORE_INDEX)
    assert sum(len(run) for _, run in runs) == total, "(1) a trained token is not on any trained run"
    unmatched = list(range(len(runs)))
    for k in trained:
        prompt = _render(tok, msgs[:k], tools, add_generation_prompt=True, tokenize=True, **kw) if k else []
        full_k = _render(tok, msgs[: k + 1], tools, tokenize=False, **kw)
        ptext = _decode(tok, prompt)
        empty = not full_k[len(commonprefix([ptext, full_k])):].strip()  # the template drops the message
        hit = None
        for n in unmatched:
            ctx, run = runs[n]
            text = _decode(tok, run)
            if ctx == prompt and prompt:
                ptext = _decode(tok, prompt)
                if (ptext + text) == full_k[: len(ptext) + len(text)] or _stop_appended(full_k, ptext + text, stop_tokens):
                    hit, mode = n, "prefix"
                elif text in full_k or _stop_appended_anywhere(full_k, text, stop_tokens):
                    hit, mode = n, "history_rewritten"
            elif ctx == prompt[: len(ctx)] and (ctx or not prompt):
                ctext = _decode(tok, ctx)
                if full_k.startswith(ctext + text) or _stop_appended(full_k, ctext + text, stop_tokens):
                    hit, mode = n, ("prefix" if ctx == prompt else "prompt_mismatch")
            if hit is not None:
                break
        if hit is None and empty:
            report.not_rendered += 1  # nothing rendered and no stop token written after it: nothing to train
            continue
        assert hit is not None, f"(1,2,3) no trained run of the rows is turn {k} after its prompt"
        unmatched.remove(hit)
        ctx, run = runs[hit]
        text = _decode(tok, run)
        if not masked_reasoning:
            assert run == _ids(tok, text), f"(4) turn {k}: the trained tokens are not tokenizer(their text)"
            if not any(text.endswith(s) for s in stop_tokens):
                report.no_stop += 1
        report.add(mode)
    if not masked_reasoning:
        assert not unmatched, f"(1) {len(unmatched)} trained run(s) belong to no trained turn: {[_decode(tok, runs[n][1])[:60] for n in unmatched]}"
    first = rows[0]
    # a single path is the training rendering (5), unless it is one turn's own sequence, P_k + run
    # (every turn of the rendering branched, so the rendering itself is not stored)
    own = any(first.input_ids == ctx + run for ctx, run in trained_runs(first))
    if first.kind == "conversation" and not first.parent and not own:
        last = max(trained) if trained else len(msgs) - 1
        f_ids = _render(tok, msgs[: last + 1], tools, tokenize=True, **kw)
        n = min(len(first.input_ids), len(f_ids))  # the row may go on with a stop token written next
        assert first.input_ids[:n] == f_ids[:n], "(5) the training rendering differs from apply_chat_template"
    return report


def _stop_appended(full: str, text: str, stops: Sequence[str]) -> bool:
    """``text`` is ``full``'s start plus one stop token the template writes after it."""
    return any(text.endswith(s) and full.startswith(text[: -len(s)]) and len(text) - len(s) >= len(full.rstrip()) for s in stops)


def _stop_appended_anywhere(full: str, text: str, stops: Sequence[str]) -> bool:
    return any(text.endswith(s) and text[: -len(s)] and full.rstrip().endswith(text[: -len(s)].rstrip()) for s in stops)


def justified_refusal(tok, conv: Conversation, error: RowError, stop_tokens: Sequence[str], *, lossless: bool = True,
                      control_pattern=None, template_kwargs: dict | None = None, trained: Sequence[int] | None = None) -> bool:
    """Whether transformers' own rendering agrees with sftdata's refusal of ``conv``.

    * ``template_error`` and ``render_limit``: ``apply_chat_template`` raises on the conversation
      (or on one of the prefixes sftdata renders); a ``render_limit`` that transformers renders
      through is a refusal the oracle cannot justify;
    * ``turn_not_isolated``: adding the turn changes how the earlier turns render;
    * ``turn_split``: ``F_k`` holds text after the turn's first stop token;
    * ``turn_rewritten``: the turn's prompt + generation is not a prefix of the rendering;
    * ``special_token_in_content``: some text spells a control token;
    * ``mask_check_failed``: only on a tokenizer that cannot round-trip text;
    * ``no_trained_turn``: the template renders nothing for any of the ``trained`` turns
      (default: every assistant turn not marked ``train=False``).
    """
    from ..masking.control_tokens import user_strings

    kw = dict(template_kwargs or {})
    reason = error.reason.value
    msgs, tools = conv.template_messages(), conv.template_tools()
    if reason in ("template_error", "render_limit"):  # transformers fails too (a render that recurses forever)
        for n in range(1, len(msgs) + 1):
            for gen in (False, True):
                try:
                    _render(tok, msgs[:n], tools, tokenize=False, add_generation_prompt=gen, **kw)
                except Exception:  # noqa: BLE001 - the template's own error, any type
                    return True
        return False
    if reason == "special_token_in_content":
        return control_pattern is not None and any(control_pattern.search(t) for _, t in user_strings(conv))
    if reason == "mask_check_failed":
        return not lossless
    if reason == "no_trained_turn":
        for k, m in enumerate(conv.messages):
            if m.role != "assistant" or m.train is False or (trained is not None and k not in trained):
                continue
            prompt = _render(tok, msgs[:k], tools, tokenize=False, add_generation_prompt=True, **kw) if k else ""
            full_k = _render(tok, msgs[: k + 1], tools, tokenize=False, **kw)
            if full_k[len(commonprefix([prompt, full_k])):].strip():
                return False  # this turn renders something
        return True
    k = int(error.field.split("[")[1].split("]")[0]) if error.field and error.field.startswith("messages[") else None
    if k is None:
        return False
    full_k = _render(tok, msgs[: k + 1], tools, tokenize=False, **kw)
    history = _render(tok, msgs[:k], tools, tokenize=False, **kw) if k else ""
    if reason == "turn_not_isolated":
        return not full_k.startswith(history)
    if reason == "turn_rewritten":
        prompt = _render(tok, msgs[:k], tools, tokenize=False, add_generation_prompt=True, **kw) if k else ""
        full = _render(tok, msgs, tools, tokenize=False, **kw)
        if not full_k.startswith(prompt) or not full.startswith(prompt):
            return True
        raw = full_k[len(prompt):]
        ends = [raw.find(s) + len(s) for s in stop_tokens if s in raw]
        gen = raw[: min(ends)] if ends else raw.rstrip()
        seq = _ids(tok, prompt) + _ids(tok, gen)
        return _ids(tok, full)[: len(seq)] != seq
    if reason == "turn_split":
        ends = [full_k.find(s, len(history)) + len(s) for s in stop_tokens if full_k.find(s, len(history)) >= 0]
        return bool(ends) and bool(full_k[min(ends):].strip())
    return False
