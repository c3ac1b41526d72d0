"""Renders held against the training rendering (``sftdata.masking.render_split``): the helpers
and :func:`~sftdata.masking.render_limits.collect_split` against their plain-string definitions."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.masking.render_limits import RenderLimitExceeded, collect, collect_split
from sftdata.masking.render_split import BaseSlice, common_prefix_chars, split_from, split_startswith, split_text

_TEXT = st.text(alphabet="ab<>\n", max_size=30)


@st.composite
def _split(draw, base: str):
    shared = draw(st.integers(0, len(base)))
    return shared, draw(_TEXT)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), base=_TEXT)
def test_helpers_equal_their_string_definitions(data, base):
    sa, ta = data.draw(_split(base))
    sb, tb = data.draw(_split(base))
    a, b = base[:sa] + ta, base[:sb] + tb
    assert split_text(base, sa, ta) == a
    assert split_startswith(base, sa, ta, sb, tb) == a.startswith(b)
    i = data.draw(st.integers(0, len(a) + 2))
    assert split_from(base, sa, ta, i) == a[i:]
    assert common_prefix_chars(a, base) == len(os.path.commonprefix([a, base]))


@st.composite
def _pieces(draw, base: str):
    """Output pieces: strings, and slices of ``base`` (anywhere, also where they do not line up)."""
    out = []
    for _ in range(draw(st.integers(0, 6))):
        if base and draw(st.booleans()):
            a = draw(st.integers(0, len(base)))
            b = draw(st.integers(a, len(base)))
            out.append(BaseSlice(base, a, b))
        else:
            out.append(draw(_TEXT))
    return out


@settings(max_examples=400, deadline=None)
@given(data=st.data(), base=_TEXT)
def test_collect_split_is_the_common_prefix_and_the_rest(data, base):
    """``collect_split`` gives ``(shared, tail)`` with ``shared`` the longest common prefix of the
    joined text with ``base``, whatever the pieces (slices of ``base`` that line up or not, slices
    of another string with the same characters, plain strings)."""
    pieces = data.draw(_pieces(base))
    if data.draw(st.booleans()):  # a base-like prefix made of the base's own slices
        cut = data.draw(st.integers(0, len(base)))
        pieces = [BaseSlice(base, 0, cut)] + pieces
    if data.draw(st.booleans()) and base:  # a slice of an equal string that is not base itself
        other = "".join(list(base))
        pieces = [BaseSlice(other, 0, len(other))] + pieces
    text = collect(iter(pieces), None)
    shared = len(os.path.commonprefix([text, base]))
    assert collect_split(iter(pieces), None, base) == (shared, text[shared:])


def test_collect_split_size_limit():
    """The size limit counts slices by their length, as ``collect`` does."""
    base = "x" * 100
    with pytest.raises(RenderLimitExceeded):
        collect_split(iter([BaseSlice(base, 0, 80), "y" * 30]), 100, base)
    with pytest.raises(RenderLimitExceeded):
        collect(iter([BaseSlice(base, 0, 80), "y" * 30]), 100)


def _tool_trace(n: int) -> list[dict]:
    """user, then rounds of an assistant tool call and its result, a reply, now and then a user."""
    msgs: list[dict] = []
    while len(msgs) < n:
        i = len(msgs)
        msgs.append({"role": "user", "content": f"question {i}"})
        for j in range(3):
            call = {"type": "function", "function": {"name": "lookup", "arguments": {"id": i + j}}}
            msgs.append({"role": "assistant", "content": "", "tool_calls": [call]})
            msgs.append({"role": "tool", "content": f"result {i + j}"})
        msgs.append({"role": "assistant", "content": f"answer {i}"})
    return msgs[:n]


@pytest.mark.parametrize("template, trace", [("default", "chat"), ("qwen3", "chat"), ("default", "tools"), ("qwen3", "tools")])
def test_prefix_renders_reuse_the_training_rendering(template, trace, monkeypatch):
    """After the training rendering of a long chat (or tool trace), ``render_split`` of every
    prefix in masking order gives ``(shared, tail)`` of the plain text, and the iterations the memo
    replays arrive as slices of the training rendering that are never copied
    (``BaseSlice.materialize`` unused). On Qwen3's tool traces the assistant turns after the last
    query render the same text under another memo key: the replay still comes as a slice (it was
    joined, O(length) per render, before)."""
    from sftdata.masking.template import ChatTemplate

    if template == "qwen3":
        from sftdata.testing.qwen3 import qwen3_tokenizer

        source = qwen3_tokenizer().chat_template
    else:
        from sftdata.masking.tokenizer import load_tokenizer

        source = load_tokenizer(None).chat_template
    memo, plain = ChatTemplate(source, memo=True), ChatTemplate(source, memo=False)
    if trace == "chat":
        msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(160)]
    else:
        msgs = _tool_trace(160)
    copied, made = [], []
    monkeypatch.setattr(BaseSlice, "materialize", lambda self: copied.append(len(self)) or self.text[self.start:self.stop])
    init = BaseSlice.__init__
    monkeypatch.setattr(BaseSlice, "__init__", lambda self, *a: made.append(a[2] - a[1]) or init(self, *a))
    memo.new_conversation()
    base = memo.render(msgs, prepared=True, count=len(msgs), training=True)
    turns = [k for k, m in enumerate(msgs) if m["role"] == "assistant"]
    for k in turns:
        for n, gp in ((k + 1, False), (k, True)):
            want = plain.render(msgs[:n], add_generation_prompt=gp)
            shared = len(os.path.commonprefix([want, base]))
            assert memo.render_split(msgs, base=base, add_generation_prompt=gp, prepared=True, count=n) == (shared, want[shared:])
    assert copied == []
    assert len(made) > len(turns) and max(made) > len(base) // 2  # long prefixes came as slices
