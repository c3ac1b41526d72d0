"""Masks v3 (issue 15): one definition of a trained turn, whatever the template does around it.

For every trained turn ``k`` the root-to-leaf path that ends in it is ``tokens(P_k)`` (the
inference prompt) followed by what the model generates there: what the template renders for
message ``k`` after the generation prompt, up to and including the stop token.
Each test here is the smallest hand-written template with one behaviour that broke that definition
before (separators, an always-written prompt, suffixes, clock reads, reasoning names, split
messages, argument quoting, a closed reasoning block, a trailing turn).
"""

from __future__ import annotations

import pytest

from sftdata.encoder import EncodeOptions, Encoder
from sftdata.errors import ConfigError
from sftdata.schema import Conversation, Message
from sftdata.testing.oracle import check_rows, trained_runs
from sftdata.masking.tree import IGNORE_INDEX, unroll

from masks_v3_helpers import (
    ALWAYS_PROMPT, CLOCK, REASONING, SEPARATOR, SPLIT, SUFFIX, _CHATML_STOP, _GEN, _LOOP, _conv, _encode,
    _tok, _trained_texts,
)


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


def test_reasoning_is_given_under_every_name_templates_read():
    tok, enc, conv, rows = _encode(REASONING, _conv(reasoning="think hard"))
    assert _trained_texts(tok, rows) == ["<think>think hard</think>hi friend<|im_end|>", "sure thing<|im_end|>"]
    assert enc.counters.render.reasoning_not_rendered == 0
    msg = _conv(reasoning="r").messages[1].to_template()
    assert msg["reasoning_content"] == msg["reasoning"] == msg["thinking"] == "r"


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
