"""Memoised loop iterations (sftdata.masking.render_memo): every render equals jinja's plain rendering.

For every vendored template (``sftdata/testing/templates``, the real templates, trl's), generated
templates (``sftdata.testing.template_gen``) and adversarial hand-written ones, a drawn conversation
is rendered prefix by prefix — ``m[:k]`` with and without the generation prompt, ``m[:k]`` plus a
modified copy of ``m[k]``, ``m[:k+1]`` plus a probe message — in the order masking asks for them
and in drawn orders, by a memoising :class:`~sftdata.masking.template.ChatTemplate` and by a plain one
(``memo=False``); text (or error reason and message) must be equal, character for character.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.errors import RowError
from sftdata.masking.render_limits import RenderLimits
from sftdata.masking.template import ChatTemplate
from sftdata.testing.real_templates import REAL_TEMPLATES, read_real_template, real_template_names, template_inputs
from sftdata.testing.strategies import conversations, conversations_for
from sftdata.testing.template_gen import spec_conversations, template_specs
from sftdata.testing.tokenizers import FAMILIES, family_caps, family_template
from sftdata.testing.trl_templates import trl_template_families

from render_memo_helpers import ADVERSARIAL, _outcome, _pair

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _split_outcome(t: ChatTemplate, msgs: list, tools, gp: bool, count: int, base: str):
    try:
        return t.render_split(msgs, tools, base=base, add_generation_prompt=gp, prepared=True, count=count)
    except RowError as e:
        return ("error", e.reason, str(e))


def _perturbed(m: dict) -> dict:
    out = dict(m)
    out["content"] = (m["content"] + "~") if isinstance(m.get("content"), str) else "~"
    return out


def _requests(n: int) -> list[tuple[int, str]]:
    """The renders masking asks for, in its order: (k, kind)."""
    reqs = []
    for k in range(n):
        reqs += [(k, "gp"), (k + 1, "plain"), (k, "perturbed"), (k + 1, "probe")]
    return reqs


def _list(msgs: list, k: int, kind: str) -> tuple[list, bool]:
    if kind == "gp":
        return msgs[:k], True
    if kind == "perturbed":
        return msgs[:k] + [_perturbed(msgs[k])], False
    if kind == "probe":
        return msgs[:k] + [{"role": "user", "content": "probe"}], False
    return msgs[:k], False


def _check(plain: ChatTemplate, memo: ChatTemplate, msgs: list, tools, order: list[tuple[int, str]], spans: bool = False) -> None:
    msgs = ChatTemplate.prepare_messages(msgs)  # one dict per message for the whole conversation
    plain.new_conversation()
    memo.new_conversation()
    # the training rendering first, as the renderer does: later renders replay its iterations as
    # slices of it (render_split), or copy them (render)
    base = _outcome(memo, msgs, tools, False, count=len(msgs), training=True)
    assert base == _outcome(plain, msgs, tools, False)
    for k, kind in order:
        lst, gp = _list(msgs, k, kind)
        want = _outcome(plain, lst, tools, gp, spans)
        # a prefix of the conversation is rendered as the renderer asks for it: the one list and a
        # count (the memo then knows two renders' lists share their leading items)
        got = _outcome(memo, msgs, tools, gp, spans, count=k) if kind in ("gp", "plain") else _outcome(memo, lst, tools, gp, spans)
        assert got == want, f"render {kind} of m[:{k}] differs"
        if kind in ("gp", "plain") and isinstance(base, str) and not spans:
            split = _split_outcome(memo, msgs, tools, gp, k, base)
            if isinstance(want, str):
                shared = len(os.path.commonprefix([want, base]))
                assert split == (shared, want[shared:]), f"render_split {kind} of m[:{k}] differs"
            else:
                assert split == want, f"render_split {kind} of m[:{k}] fails differently"


def _orders(data, n: int) -> list[list[tuple[int, str]]]:
    masking = _requests(n)
    drawn = data.draw(st.permutations(masking))
    return [masking, drawn]


# ---- vendored templates ----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=15, **_SETTINGS)
@given(data=st.data())
def test_family_templates(family, data):
    plain, memo = _pair(family_template(family))
    conv = data.draw(conversations_for(family_caps(family)))
    msgs, tools = conv.template_messages(), conv.template_tools()
    for order in _orders(data, len(msgs)):
        _check(plain, memo, msgs, tools, order)


@pytest.mark.parametrize("name", real_template_names())
@settings(max_examples=6, **_SETTINGS)
@given(data=st.data())
def test_real_templates(name, data):
    rt = REAL_TEMPLATES[name]
    plain, memo = _pair(read_real_template(name), dict(rt.template_kwargs) or None)
    conv = data.draw(conversations_for(rt.caps))
    msgs, tools = template_inputs(conv, rt.caps)
    for order in _orders(data, len(msgs)):
        _check(plain, memo, msgs, tools, order)


_TRL = trl_template_families()


@pytest.mark.skipif(not _TRL, reason="trl not installed")
@pytest.mark.parametrize("name", sorted(_TRL))
@settings(max_examples=5, **_SETTINGS)
@given(data=st.data())
def test_trl_templates(name, data):
    t = _TRL[name]
    plain, memo = _pair(t.tokenizer.chat_template)
    conv = data.draw(conversations_for(t.caps))
    msgs, tools = template_inputs(conv, t.caps)
    spans = "generation" in t.tokenizer.chat_template
    for order in _orders(data, len(msgs)):
        _check(plain, memo, msgs, tools, order, spans=spans)


@settings(max_examples=60, **_SETTINGS)
@given(data=st.data())
def test_generated_templates(data):
    spec = data.draw(template_specs())
    plain, memo = _pair(spec.source())
    conv = data.draw(spec_conversations(spec))
    msgs, tools = conv.template_messages(), conv.template_tools()
    for order in _orders(data, len(msgs)):
        _check(plain, memo, msgs, tools, order)


# ---- adversarial templates -------------------------------------------------------------------



@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@settings(max_examples=25, **_SETTINGS)
@given(data=st.data())
def test_adversarial_templates(name, data):
    source = ADVERSARIAL[name]
    plain, memo = _pair(source)
    conv = data.draw(conversations(system=True, tools=True, reasoning=True, max_turns=4))
    msgs, tools = conv.template_messages(), conv.template_tools()
    for order in _orders(data, len(msgs)):
        _check(plain, memo, msgs, tools, order, spans="generation" in source)


def test_skip_after_longer_render_with_other_namespace_value():
    """Bug found by test_real_templates (Nemotron 3): a render that replayed a prefix holding
    iterations which read a namespace attribute must pass that on to its own trace; the next,
    shorter render (another ``ns.last_user``) then re-runs those iterations."""
    source = ADVERSARIAL["ns_read_only_combined"]
    plain, memo = _pair(source, {"flag": True})
    msgs = [{"role": r, "content": str(i)} for i, r in enumerate(["user", "assistant", "user", "assistant", "user"])]
    order = [(4, "perturbed"), (1, "gp"), (2, "plain"), (3, "gp"), (4, "gp"), (2, "gp")]
    _check(plain, memo, msgs, None, order)


def test_fallback_rule():
    """Stateful or unanalysable bodies are not memoised (they run as jinja compiles them)."""
    for name in ("changed", "break", "continue", "macro_top_vars", "joiner", "nested_messages_loop"):
        t = ChatTemplate(ADVERSARIAL[name], memo=True)
        assert not any(p.memoised for p in t.loop_plans), name
    for name in ("counter", "next_by_index", "loop_attrs", "generation", "reverse"):
        t = ChatTemplate(ADVERSARIAL[name], memo=True)
        assert t.loop_plans and t.loop_plans[-1].memoised, name


def test_memo_off_switches(monkeypatch):
    t = ChatTemplate(ADVERSARIAL["counter"], memo=False)
    assert t.loop_plans == []
    monkeypatch.setenv("SFTDATA_RENDER_MEMO", "0")
    assert ChatTemplate(ADVERSARIAL["counter"]).loop_plans == []
    monkeypatch.setenv("SFTDATA_RENDER_MEMO", "1")
    assert ChatTemplate(ADVERSARIAL["counter"]).loop_plans[0].memoised


def test_size_limit_same_error():
    """The render size limit stops a memoised render with the plain render's error."""
    source = "{% for m in messages %}{% for i in range(50) %}{{ m.content }}{% endfor %}{% endfor %}"
    plain, memo = _pair(source, limits=RenderLimits(max_chars=3000))
    msgs = [{"role": "user", "content": "x" * 7} for _ in range(12)]
    _check(plain, memo, msgs, None, _requests(len(msgs)))


def test_memo_hits_on_default_templates():
    """The memo is not vacuous: rendering every prefix of a long chat hits it."""
    from sftdata.masking.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    memo = ChatTemplate(tok.chat_template, memo=True)
    plain = ChatTemplate(tok.chat_template, memo=False)
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(40)]
    _check(plain, memo, msgs, None, _requests(len(msgs)))
    assert sum(lm.hits for lm in memo._memo.loops.values()) > 0


def _long_chat(n: int, tools: bool = False) -> list[dict]:
    msgs: list[dict] = []
    for i in range(n):
        if i % 2 == 0:
            msgs.append({"role": "user", "content": f"q{i}"} if not (tools and i % 4 == 2) else {"role": "tool", "content": f"r{i}"})
        elif tools and i % 4 == 1:
            msgs.append({"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"i": i}}}]})
        else:
            msgs.append({"role": "assistant", "content": f"<think>t{i}</think>a{i}"})
    return msgs


def test_loop_turned_off_renders_plainly():
    """A loop whose iterations keep missing (a reverse scan: its items move with the prefix
    length) is turned off for the conversation; its plain body gives the same text."""
    plain, memo = _pair(ADVERSARIAL["reverse"])
    _check(plain, memo, _long_chat(70), None, _requests(70))
    assert memo._memo.off[0]  # (the forward loop after it reads what the scan found: it is judged on its skips)


def test_a_loop_that_skips_stays_on():
    """The skip judge keeps a loop that skips: the embedded default template's main loop replays
    runs of iterations on a long chat in masking order (more than half its iterations) and stays
    on, with the plain text (``_check``)."""
    from sftdata.masking.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    memo = ChatTemplate(tok.chat_template, memo=True)
    plain = ChatTemplate(tok.chat_template, memo=False)
    _check(plain, memo, _long_chat(120), None, _requests(120))
    main = [lm for lm in memo._memo.loops.values() if lm.lookups > 100]
    assert main and all(not lm.disabled and lm.skipped * 2 > lm.lookups for lm in main)


@pytest.mark.parametrize("template", ["qwen3", "default"])
@pytest.mark.parametrize("tools", [False, True])
def test_long_conversations_masking_order(template, tools):
    """Qwen3's real template and the embedded default over 120 messages, every render masking asks
    for (the skip over unchanged iterations, the loop.index0 > ns.last_query_index intervals)."""
    if template == "qwen3":
        from sftdata.testing.qwen3 import qwen3_tokenizer

        source = qwen3_tokenizer().chat_template
    else:
        from sftdata.masking.tokenizer import load_tokenizer

        source = load_tokenizer(None).chat_template
    plain, memo = _pair(source)
    msgs = _long_chat(120, tools)
    schema = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}] if tools else None
    _check(plain, memo, msgs, schema, _requests(len(msgs)))


def test_default_template_renders_short_conversations_plainly_and_long_ones_through_the_memo():
    """The default ChatTemplate (memo on, ``memo_min_messages`` = MEMO_MIN_MESSAGES) gives the
    plain text below and above the threshold, in masking order, in one conversation."""
    from sftdata.masking.template import MEMO_MIN_MESSAGES
    from sftdata.masking.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    default = ChatTemplate(tok.chat_template, dict(tok.special_tokens_map))
    plain = ChatTemplate(tok.chat_template, dict(tok.special_tokens_map), memo=False)
    assert default.memo_min_messages == MEMO_MIN_MESSAGES > 0
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(2 * MEMO_MIN_MESSAGES)]
    default.new_conversation()
    for k in range(1, len(msgs) + 1):
        for gp in (True, False):
            assert default.render(msgs[:k], add_generation_prompt=gp) == plain.render(msgs[:k], add_generation_prompt=gp)


def test_conversation_length_decides_the_memo_for_every_render():
    """``new_conversation(messages=N)``: every render of a conversation of at least
    MEMO_MIN_MESSAGES messages goes through the memo, its short prefixes too, and none of a shorter
    conversation's does, even one of a longer list; the text is the plain rendering's either way."""
    from sftdata.masking.template import MEMO_MIN_MESSAGES
    from sftdata.masking.tokenizer import load_tokenizer

    tok = load_tokenizer(None)
    default = ChatTemplate(tok.chat_template, dict(tok.special_tokens_map))
    plain = ChatTemplate(tok.chat_template, dict(tok.special_tokens_map), memo=False)
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(2 * MEMO_MIN_MESSAGES)]
    for size, memoised in ((len(msgs), True), (MEMO_MIN_MESSAGES - 1, False)):
        default.new_conversation(size)
        before = default._memo.seq
        for k in (1, 2, MEMO_MIN_MESSAGES - 1, len(msgs)):
            assert default.render(msgs[:k], add_generation_prompt=True) == plain.render(msgs[:k], add_generation_prompt=True)
        assert default._memo.seq - before == (4 if memoised else 0)


def test_positional_reads_skip_on_tool_traces():
    """Qwen3's tool grouping reads ``messages[loop.index0 - 1]`` / ``[loop.index0 + 1]``: such
    positional observations let a render skip the iterations whose neighbours both renders share,
    so a long tool trace in masking order replays most iterations (and stays on), with the plain
    text."""
    from sftdata.testing.qwen3 import qwen3_tokenizer

    source = qwen3_tokenizer().chat_template
    plain, memo = _pair(source)
    msgs = _long_chat(160, tools=True)
    schema = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    _check(plain, memo, msgs, schema, _requests(len(msgs)))
    main = max(memo._memo.loops.values(), key=lambda lm: lm.lookups)
    assert not main.disabled and main.skipped * 2 > main.lookups
