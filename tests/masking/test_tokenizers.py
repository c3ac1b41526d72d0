"""Offline test tokenizers: every family renders, round-trips and keeps control tokens atomic."""

from __future__ import annotations

import functools
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import TemplateError

from sftdata.schema import Conversation, Message, ToolCall
from sftdata.testing import tokenizers as T
from sftdata.testing import trl_templates as TRL
from sftdata.testing.strategies import SPECIAL_STRINGS, conversations_for

TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
)


def rich_conversation(*, system=True, tools=True, parallel=True, reasoning=True) -> Conversation:
    """System, tools, (parallel) tool calls, tool results, reasoning, unicode, two user turns."""
    msgs = []
    if system:
        msgs.append(Message("system", "You are terse. Réponds en français."))
    msgs.append(Message("user", "Weather in Paris and 東京? 🌦"))
    if tools:
        calls = (ToolCall("get_weather", {"city": "Paris"}, id="call_1"),)
        if parallel:
            calls += (ToolCall("get_weather", {"city": "東京", "units": ["C", None, 1.5]}, id="call_2"),)
        msgs.append(Message("assistant", None, reasoning="I need the tool." if reasoning else None, tool_calls=calls))
        msgs += [Message("tool", f'{{"temp": {18 + i}}}', tool_call_id=c.id, name=c.name) for i, c in enumerate(calls)]
    msgs.append(Message("assistant", "Paris: 18C. Tokyo: 19C.", reasoning="Both known." if reasoning else None))
    msgs.append(Message("user", "Merci !"))
    msgs.append(Message("assistant", "De rien 😀", reasoning="Be polite." if reasoning else None))
    return Conversation(tuple(msgs), TOOLS if tools else None)


def render(tok, conv: Conversation, **kw) -> str:
    return tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=False, **kw)


def spec_tokens(spec: T.TokenizerSpec) -> tuple[str, ...]:
    return spec.special_tokens + spec.added_tokens


def assert_tokens_atomic(tok, spec: T.TokenizerSpec, text: str) -> list[int]:
    """Every added token occurring in ``text`` is encoded as its own single id, once per occurrence."""
    ids = tok.encode(text, add_special_tokens=False)
    for t in spec_tokens(spec):
        tid = tok.convert_tokens_to_ids(t)
        assert tok.encode(t, add_special_tokens=False) == [tid], t
        assert ids.count(tid) == text.count(t), (t, text)
    return ids


# patterns of control-looking strings our own templates could emit
_CONTROL_LIKE = re.compile(
    r"<\|[^<>|\s]+\|>|\[/?[A-Z_]+\]|</?(?:s|bos|eos|think|tool_call|tool_response)>|<(?:start|end)_of_turn>"
)


@functools.lru_cache(maxsize=None)
def _family_tokenizer(family: str):
    return T.build_tokenizer(family)


@pytest.fixture(scope="module", params=T.FAMILIES)
def family(request):
    return request.param


def test_families_and_templates_exist():
    assert T.FAMILIES == ("chatml", "qwen3", "llama3", "mistral", "gemma")
    for f in T.FAMILIES:
        assert (T.TEMPLATES_DIR / f"{f}.jinja").is_file()
        assert T.build_tokenizer(f).chat_template == T.family_template(f)
    with pytest.raises(ValueError):
        T.build_tokenizer("nope")


def test_family_renders_rich_conversation(family):
    tok = T.build_tokenizer(family)
    spec = T.family_spec(family)
    conv = rich_conversation()
    if family == "gemma":
        with pytest.raises(TemplateError, match="System role not supported"):
            render(tok, conv)
        with pytest.raises(TemplateError, match="not supported"):
            render(tok, rich_conversation(system=False))
        conv = rich_conversation(system=False, tools=False)
    text = render(tok, conv)
    # tokenize=True gives the same ids as encoding the text without extra specials
    ids = tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=True, return_dict=False)
    assert ids == assert_tokens_atomic(tok, spec, text)
    assert tok.decode(ids) == text
    # every control-looking string the template wrote is an added token
    vocab_added = set(tok.get_added_vocab())
    for m in set(_CONTROL_LIKE.findall(text)):
        assert m in vocab_added, m
    for m in conv.messages:
        if m.content:
            shown = m.content.strip()
            if family == "mistral" and m.role == "tool":
                shown = json.dumps(shown, ensure_ascii=False)  # the tool result is a JSON string there
            assert shown in text


def test_roundtrip_and_single_ids(family):
    tok = T.build_tokenizer(family)
    spec = T.family_spec(family)
    samples = [
        "plain text",
        "  leading and trailing  \n\n",
        "中文、日本語、한국어, emoji 👩‍💻🇫🇷, combining e\u0301 \u0301, nbsp\u00a0, ls\u2028",
        '{"a": [1, 2.5, null, true], "b": "x\\ny"}\r\n\tdef f():\n    return 1',
        "".join(spec_tokens(spec)) + " between " + " ".join(spec_tokens(spec)),
    ]
    for s in samples:
        ids = tok.encode(s, add_special_tokens=False)
        assert tok.decode(ids) == s
    assert_tokens_atomic(tok, spec, samples[-1])
    for t in spec.special_tokens:
        assert t in tok.all_special_tokens or t in tok.get_added_vocab()
    for t in T.end_of_turn_tokens(family):
        assert t in spec.special_tokens


def test_special_token_attributes(family):
    tok = T.build_tokenizer(family)
    spec = T.family_spec(family)
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        spec.bos_token,
        spec.eos_token,
        spec.pad_token,
        spec.unk_token,
    )
    plain = tok.encode("hi", add_special_tokens=False)
    with_specials = tok.encode("hi")
    if spec.add_bos:
        assert with_specials == [tok.bos_token_id] + plain
        # a rendered chat (which writes bos_token itself) tokenized by apply_chat_template has one BOS
        conv = rich_conversation(system=family != "gemma", tools=family != "gemma")
        ids = tok.apply_chat_template(
            conv.template_messages(), tools=conv.template_tools(), tokenize=True, return_dict=False
        )
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    else:
        assert with_specials == plain


def test_generation_prompts():
    conv = Conversation((Message("user", "hi"),))
    msgs = conv.template_messages()
    expect = {
        "chatml": "<|im_start|>assistant\n",
        "qwen3": "<|im_start|>assistant\n",
        "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "mistral": "[INST] hi[/INST]",  # no generation prompt: the answer follows [/INST]
        "gemma": "<start_of_turn>model\n",
    }
    for f, tail in expect.items():
        tok = T.build_tokenizer(f)
        assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True).endswith(tail), f
    q = T.build_tokenizer("qwen3")
    out = q.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert out.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_chatml_default_system_and_grouped_tool_results():
    tok = T.build_tokenizer("chatml")
    text = render(tok, Conversation((Message("user", "x"),)))
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    text = render(tok, rich_conversation())
    assert text.count("<tool_response>") == 2
    assert "</tool_response>\n<tool_response>" in text  # both results in one user turn
    assert '{"name": "get_weather", "arguments": {"city": "東京", "units": ["C", null, 1.5]}}' in text


def test_qwen3_reasoning_rules():
    tok = T.build_tokenizer("qwen3")
    text = render(tok, rich_conversation())
    # reasoning before the last real user query is dropped, the final turn keeps it
    assert "I need the tool." not in text and "Both known." not in text
    assert text.endswith("<|im_start|>assistant\n<think>\nBe polite.\n</think>\n\nDe rien 😀<|im_end|>\n")
    # a final assistant turn without reasoning gets an empty think block
    conv = Conversation((Message("user", "a"), Message("assistant", "b")))
    assert render(tok, conv).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nb<|im_end|>\n")
    # reasoning of turns after the last query (a tool-calling round) is kept
    conv = Conversation(
        (
            Message("user", "q"),
            Message("assistant", None, reasoning="r1", tool_calls=(ToolCall("get_weather", {"city": "P"}, id="1"),)),
            Message("tool", "ok", tool_call_id="1", name="get_weather"),
            Message("assistant", "done", reasoning="r2"),
        ),
        TOOLS,
    )
    text = render(tok, conv)
    assert "<think>\nr1\n</think>\n\n<tool_call>" in text and "<think>\nr2\n</think>\n\ndone" in text
    # <think> written in the content is parsed
    conv = Conversation((Message("user", "a"), Message("assistant", "<think>\nhm\n</think>\n\nok")))
    assert render(tok, conv).endswith("<think>\nhm\n</think>\n\nok<|im_end|>\n")


def test_mistral_layout_and_role_order():
    tok = T.build_tokenizer("mistral")
    text = render(tok, rich_conversation())
    assert text.startswith("<s>[INST] Weather in Paris")
    assert "[AVAILABLE_TOOLS] [" in text and text.index("[AVAILABLE_TOOLS]") > text.index("[TOOL_RESULTS]")
    assert "[INST] You are terse. Réponds en français.\n\nMerci ![/INST]" in text
    assert '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}, ' in text
    assert '[TOOL_RESULTS] {"content": "{\\"temp\\": 18}", "call_id": "call_1"}[/TOOL_RESULTS]' in text
    assert text.endswith(" De rien 😀</s>")
    bad = Conversation((Message("user", "a"), Message("user", "b")))
    with pytest.raises(TemplateError, match="alternate"):
        render(tok, bad)


def test_llama3_layout():
    tok = T.build_tokenizer("llama3")
    text = render(tok, rich_conversation())
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n")
    assert '{"name": "get_weather", "parameters": {"city": "Paris"}}\n{"name": "get_weather"' in text
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 18}<|eot_id|>" in text
    text = render(tok, Conversation((Message("user", "  padded  "),)), date_string="1 Jan 2025")
    assert "Today Date: 1 Jan 2025" in text and "\n\npadded<|eot_id|>" in text


def test_gemma_refusals():
    tok = T.build_tokenizer("gemma")
    ok = Conversation((Message("user", " hi "), Message("assistant", "yo")))
    assert render(tok, ok) == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n"
    with pytest.raises(TemplateError, match="alternate"):
        render(tok, Conversation((Message("assistant", "x"),)))


def test_bpe_training_is_deterministic_and_cached():
    assert T.base_tokenizer_json() is T.base_tokenizer_json()
    assert T.train_bpe_json(T.training_corpus(), T.TEST_VOCAB_SIZE) == T.base_tokenizer_json()
    assert 1000 <= len(T.build_tokenizer("chatml")) <= 2500


def test_build_returns_fresh_objects():
    a, b = T.build_tokenizer("qwen3"), T.build_tokenizer("qwen3")
    a.chat_template = "x"
    assert b.chat_template == T.family_template("qwen3")


# ---- templates bundled with trl ----------------------------------------------------------

trl_dir = TRL.trl_templates_dir()
needs_trl = pytest.mark.skipif(trl_dir is None, reason="trl not installed")


@pytest.fixture(scope="module")
def trl_templates():
    return TRL.trl_template_families()


def caps_conversation(caps: T.TemplateCaps) -> Conversation:
    return rich_conversation(system=caps.system, tools=caps.tools, parallel=caps.parallel_calls, reasoning=caps.reasoning)


@needs_trl
def test_trl_templates_all_accounted_for(trl_templates):
    files = {p.stem for p in trl_dir.glob("*.jinja")}
    skipped = TRL.trl_skipped_templates()
    assert files == set(trl_templates) | set(skipped)
    for must in ("qwen3", "qwen2_5", "llama3_1", "phi3", "gemma3", "qwen3_training", "gptoss"):
        assert must in trl_templates, must
    assert {"idefics3", "smolvlm", "llava_next"} <= set(skipped)
    assert trl_templates["qwen3_training"].caps.generation_markers
    assert not trl_templates["qwen3"].caps.generation_markers


_TRL_CONTROL_LIKE = re.compile(r'<\|[^<>|\s]*\|>|<\|[a-z_"]+>|<[a-z_"]+\|>|<｜[^｜]+｜>|\[/?[A-Za-z_]+\]|<sop>|<eop>')


@needs_trl
def test_trl_templates_render_caps_conversation(trl_templates):
    for name, t in trl_templates.items():
        conv = caps_conversation(t.caps)
        if t.caps.tools and not t.caps.none_content:
            conv = Conversation(
                tuple(Message(m.role, m.content if m.content is not None else "", reasoning=m.reasoning,
                              tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, name=m.name)
                      for m in conv.messages),
                conv.tools,
            )
        text = render(t.tokenizer, conv, date_string="26 Jul 2024")
        ids = assert_tokens_atomic(t.tokenizer, t.spec, text)
        if t.spec.lossless:
            assert t.tokenizer.decode(ids) == text, name
        # control-looking strings the template wrote are added tokens (XML-ish tags such as
        # <tools> or Qwen2.5's <tool_response> are plain text in the real tokenizers too)
        added = set(t.tokenizer.get_added_vocab())
        assert set(_TRL_CONTROL_LIKE.findall(text)) <= added, (name, set(_TRL_CONTROL_LIKE.findall(text)) - added)
        for m in conv.messages:
            if m.role in ("user", "tool") and m.content:
                shown = m.content.strip()
                # some templates write tool results as JSON strings (gptoss, llama3_1)
                assert shown in text or json.dumps(shown, ensure_ascii=False) in text or (
                    m.role == "tool" and not t.caps.tools
                ), (name, shown)
            if m.role == "assistant" and m.content and m is conv.messages[-1]:
                assert m.content in text, name
        if t.caps.tools:
            assert "Paris" in text, name
        if t.caps.reasoning:
            assert "Be polite." in text, name


_TRL_NAMES = TRL.trl_template_names()


@needs_trl
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_trl_templates_render_generated_conversations(trl_templates, data):
    name = data.draw(st.sampled_from(_TRL_NAMES), label="template")
    t = trl_templates[name]
    conv = data.draw(conversations_for(t.caps, special_strings=SPECIAL_STRINGS + spec_tokens(t.spec)), label="conv")
    text = render(t.tokenizer, conv, date_string="26 Jul 2024")
    ids = assert_tokens_atomic(t.tokenizer, t.spec, text)
    if t.spec.lossless:
        assert t.tokenizer.decode(ids) == text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_families_render_generated_conversations(data):
    family = data.draw(st.sampled_from(T.FAMILIES), label="family")
    tok = _family_tokenizer(family)
    spec = T.family_spec(family)
    conv = data.draw(conversations_for(T.family_caps(family), special_strings=SPECIAL_STRINGS + spec_tokens(spec)))
    text = render(tok, conv)
    ids = assert_tokens_atomic(tok, spec, text)
    assert tok.decode(ids) == text


# ---- the embedded default tokenizer -----------------------------------------------------


def test_default_tokenizer_asset():
    from sftdata.assets import DEFAULT_TOKENIZER_SIZE, default_tokenizer_path, load_default_tokenizer

    path = default_tokenizer_path()
    assert sum(p.stat().st_size for p in path.iterdir()) < 1_000_000
    cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    # the template is stored inline (every transformers version) and as chat_template.jinja
    assert cfg["chat_template"] == (path / "chat_template.jinja").read_text(encoding="utf-8")

    tok = load_default_tokenizer()
    assert len(tok) == DEFAULT_TOKENIZER_SIZE == 6144
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    spec = T.TokenizerSpec(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        added_tokens=("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
    )
    assert set(tok.all_special_tokens) == set(spec.special_tokens)
    assert max(tok.convert_tokens_to_ids(list(spec_tokens(spec)))) == len(tok) - 1
    conv = rich_conversation()
    text = render(tok, conv)
    ids = assert_tokens_atomic(tok, spec, text)
    assert tok.decode(ids) == text
    assert tok.encode("hi") == tok.encode("hi", add_special_tokens=False)  # no BOS
    assert "<tool_call>" in text and "<tool_response>" in text and "<think>\nBe polite.\n</think>" in text


def test_prefix_preserving_probe():
    assert TRL.is_prefix_preserving(T.build_tokenizer("llama3"), T.family_caps("llama3"))
    assert TRL.is_prefix_preserving(T.build_tokenizer("gemma"), T.family_caps("gemma"))
    # grouped tool results / dropped reasoning / system moved to the last user turn
    for f in ("chatml", "qwen3", "mistral"):
        assert not TRL.is_prefix_preserving(T.build_tokenizer(f), T.family_caps(f)), f
    conv = Conversation((Message("user", "a"), Message("assistant", "b"), Message("user", "c")))
    assert TRL.is_prefix_preserving(T.build_tokenizer("chatml"), T.family_caps("chatml"), conv)
