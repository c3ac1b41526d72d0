"""The vendored real chat templates (``sftdata/testing/templates/real``) and their offline tokenizers.

For every template: the file is the vendored one (README lists it with its git blob); the
tokenizer builds; conversations drawn from ``conversations_for(caps)`` render (with and without a
generation prompt); every control token in a rendering is one id and encode/decode is exact;
every stop token is an added token; every marker the template writes is either a token of the
spec or declared plain text; and each capability flag matches what the template does (a flag
that is on renders its part, a flag that is off drops it or raises).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sftdata.schema import Conversation, Message, ToolCall
from sftdata.testing.real_templates import (
    REAL_TEMPLATES,
    REAL_TEMPLATES_DIR,
    read_real_template,
    real_template_names,
    real_template_tokenizer,
    template_inputs,
)
from sftdata.testing.strategies import SPECIAL_STRINGS, conversations_for

NAMES = real_template_names()
_SETTINGS = settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# markup a template could write: <|x|>, <｜x｜>, [X], [/X], <x>, </x>, <x=, MiniMax's and GLM's markers
_MARKUP = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|<｜[^<>｜]{1,40}｜>|\[/?[A-Z_]{2,30}\]|</?[A-Za-z_:]{2,30}>|<[a-z_]+="
    r"|\]~!?b\[|\]~b\]|\[e~\[|\]!p~\[|\[[gs]?MASK\]"
)


@lru_cache(maxsize=None)
def _tokenizer(name: str):
    """One tokenizer per template for the read-only tests (building one compiles nothing, but saves time)."""
    return real_template_tokenizer(name)


@lru_cache(maxsize=None)
def _conversations(name: str):
    rt = REAL_TEMPLATES[name]
    # keep every token and marker of this template out of generated text
    specials = tuple(dict.fromkeys(SPECIAL_STRINGS + rt.control_tokens + rt.plain_markers))
    return conversations_for(rt.caps, special_strings=specials)


def _render(name: str, conv: Conversation, **kw) -> str:
    rt = REAL_TEMPLATES[name]
    messages, tools = template_inputs(conv, rt.caps)
    return _tokenizer(name).apply_chat_template(messages, tools=tools, tokenize=False, **{**rt.template_kwargs, **kw})


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ---- files and README ----------------------------------------------------------------------


def test_every_vendored_file_has_an_entry_and_a_readme_row():
    files = sorted(p.stem for p in REAL_TEMPLATES_DIR.glob("*.jinja"))
    assert files == NAMES
    readme = (REAL_TEMPLATES_DIR / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        rt = REAL_TEMPLATES[name]
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}.jinja` |")), None)
        assert row is not None, f"README has no row for {name}.jinja"
        # the row names the model, the llama.cpp commit and the git blob of the file as vendored
        assert rt.model in row and rt.commit in row
        assert _git_blob(rt.path.read_bytes()) in row, f"{name}.jinja differs from the blob the README records"


def test_read_real_template_and_unknown_names():
    assert read_real_template("Qwen-Qwen3-0.6B").startswith("{%- if tools %}")
    with pytest.raises(ValueError, match="Qwen-Qwen3-0.6B"):
        read_real_template("no-such-template")
    with pytest.raises(ValueError, match="unknown real template"):
        real_template_tokenizer("qwen3")


def test_entries_are_consistent():
    for name, rt in REAL_TEMPLATES.items():
        assert rt.name == name and "/" in rt.model and rt.stop_tokens and rt.stop_source
        assert not set(rt.control_tokens) & set(rt.plain_markers), name
        assert len(set(rt.control_tokens)) == len(rt.control_tokens), f"{name}: duplicate tokens"
        if not rt.caps.tools:  # nothing about tool calls can be claimed without them
            assert not (rt.caps.parallel_calls or rt.caps.call_content or rt.caps.none_content), name
        assert rt.caps.reasoning_field in ("reasoning_content", "thinking"), name


# ---- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_stop_tokens_and_control_tokens_are_single_added_tokens(name):
    rt, tok = REAL_TEMPLATES[name], _tokenizer(name)
    added = tok.get_added_vocab()
    for t in rt.control_tokens:
        assert t in added and tok(t, add_special_tokens=False)["input_ids"] == [added[t]], (name, t)
    for t in rt.stop_tokens:
        assert t in rt.control_tokens, f"{name}: stop token {t!r} is not an added token of the spec"
    special = set(tok.all_special_tokens)
    assert set(rt.spec.special_tokens) <= special and not set(rt.spec.added_tokens) & special, name
    for t in rt.plain_markers:  # ordinary text, as in the real vocabulary
        assert t not in added, (name, t)
    ids = tok("hello", add_special_tokens=True)["input_ids"]
    assert (ids[0] == tok.bos_token_id) == rt.spec.add_bos, f"{name}: BOS behaviour differs from the spec"


@pytest.mark.parametrize("name", NAMES)
def test_every_marker_the_template_writes_is_a_token_or_declared_plain(name):
    rt = REAL_TEMPLATES[name]
    text = re.sub(r"\{#.*?#\}", "", read_real_template(name), flags=re.S)  # comments are not rendered
    for var in ("bos_token", "eos_token", "pad_token"):  # tokens taken from variables must be tokens too
        if var in text:
            assert getattr(rt.spec, var) in rt.control_tokens, f"{name}: {var} is not set in the spec"
    unknown = sorted(set(_MARKUP.findall(text)) - set(rt.control_tokens) - set(rt.plain_markers))
    assert not unknown, f"{name}: markup neither in the spec nor declared plain: {unknown}"


# ---- rendering drawn conversations ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@_SETTINGS
@given(data=st.data())
def test_drawn_conversations_render_with_single_id_control_tokens(name, data):
    rt, tok = REAL_TEMPLATES[name], _tokenizer(name)
    conv = data.draw(_conversations(name), label="conversation")
    generation_prompt = data.draw(st.booleans(), label="add_generation_prompt")
    text = _render(name, conv, add_generation_prompt=generation_prompt)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if rt.spec.lossless:
        assert tok.decode(ids) == text
    # every control token in the text is exactly one id, and no control id appears otherwise
    longest_first = sorted(rt.control_tokens, key=len, reverse=True)
    found = Counter(re.findall("|".join(map(re.escape, longest_first)), text))
    vocab = tok.get_added_vocab()
    counts = Counter(i for i in ids if i in set(vocab[t] for t in rt.control_tokens))
    assert counts == Counter({vocab[t]: n for t, n in found.items()})


# ---- capability flags match the template ---------------------------------------------------

_TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
)


def _probe(caps, *, parallel=False, reasoning=None, beside="", tools=True) -> Conversation:
    def call_id(k: int) -> str:
        return f"c{k:0{caps.call_id_length - 1}d}" if caps.call_id_length else f"call_{k}"

    msgs = [Message("user", "USERMARK")]
    if tools:
        calls = (ToolCall("get_weather", {"city": "PARISMARK"}, id=call_id(1)),)
        if parallel:
            calls += (ToolCall("get_weather", {"city": "LYONMARK"}, id=call_id(2)),)
        msgs.append(Message("assistant", beside, tool_calls=calls))
        msgs += [Message("tool", "RESULTMARK", tool_call_id=c.id, name=c.name) for c in calls]
    msgs.append(Message("assistant", "ANSWERMARK", reasoning=reasoning))
    return Conversation(tuple(msgs), _TOOLS if tools else None)


def _observed(name: str, conv: Conversation, marker: str | None, **kw) -> bool | str:
    """True/False: the marker is (not) in the rendering; a string: the template raised."""
    try:
        text = _render(name, conv, **kw)
    except Exception as e:  # noqa: BLE001 - the template's own refusal is an observation
        return f"raises {type(e).__name__}"
    return True if marker is None else marker in text


@pytest.mark.parametrize("name", NAMES)
def test_caps_match_what_the_template_renders(name):
    """A capability that is on is rendered; one that is off is dropped or raises (caps are exact)."""
    caps = REAL_TEMPLATES[name].caps
    sys_conv = Conversation(
        (Message("system", "SYSMARK"), Message("user", "USERMARK")), _TOOLS if caps.tools else None
    )
    observed = {  # the system prompt is checked in the prompt of the first assistant turn
        "system": _observed(name, sys_conv, "SYSMARK", add_generation_prompt=True),
        "tools": _observed(name, _probe(caps), "PARISMARK"),
        "reasoning": _observed(name, _probe(caps, tools=caps.tools, reasoning="REASONMARK"), "REASONMARK"),
    }
    if caps.tools:
        observed["parallel_calls"] = _observed(name, _probe(caps, parallel=True), "LYONMARK")
        observed["call_content"] = _observed(name, _probe(caps, beside="BESIDEMARK"), "BESIDEMARK")
        observed["none_content"] = _observed(name, _probe(caps, beside=None), None)
    wrong = {k: v for k, v in observed.items() if getattr(caps, k) is not (v is True)}
    assert not wrong, f"{name}: caps disagree with the template: {wrong}"
    if caps.reasoning:  # the template reads reasoning from the declared key alone
        conv = _probe(caps, tools=False)
        messages, tools = template_inputs(conv, caps)
        messages[-1][caps.reasoning_field] = "KEYMARK"
        text = _tokenizer(name).apply_chat_template(messages, tools=tools, tokenize=False, **REAL_TEMPLATES[name].template_kwargs)
        assert "KEYMARK" in text


def test_template_inputs_serves_string_arguments_and_flat_schemas():
    caps = REAL_TEMPLATES["Apertus-8B-Instruct"].caps
    conv = _probe(caps)
    messages, tools = template_inputs(conv, caps)
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "PARISMARK"}'
    assert tools == [_TOOLS[0]["function"]]
    # other templates get the canonical dict arguments and OpenAI-shaped schemas unchanged
    plain = REAL_TEMPLATES["Qwen-Qwen3-0.6B"].caps
    assert template_inputs(conv, plain) == (conv.template_messages(), conv.template_tools())
    # the template itself refuses dict arguments and OpenAI-shaped schemas
    with pytest.raises(Exception):
        _tokenizer("Apertus-8B-Instruct").apply_chat_template(
            conv.template_messages(), tools=conv.template_tools(), tokenize=False
        )


@_SETTINGS
@given(conv=conversations_for(REAL_TEMPLATES["mistralai-Mistral-Nemo-Instruct-2407"].caps, ends_with="tool"))
def test_mistral_call_ids_are_nine_alphanumerics(conv):
    ids = [c.id for m in conv.messages for c in m.tool_calls]
    assert ids and all(len(i) == 9 and i.isascii() and i.isalnum() for i in ids)
    assert len(set(ids)) == len(ids)
    _render("mistralai-Mistral-Nemo-Instruct-2407", conv)  # the template accepts them
