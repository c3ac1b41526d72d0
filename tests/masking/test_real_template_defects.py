"""Regression tests for the mask defects found on real agent templates (issue "Masks v2"), each
built from the vendored template (sftdata/testing/templates/real, sources in its README)."""

from __future__ import annotations

import json

import pytest

from sftdata import Encoder, RowError
from sftdata.schema import Conversation, Message, ToolCall
from sftdata.testing.oracle import check_rows, trained_runs
from sftdata.testing.real_templates import REAL_TEMPLATES, real_template_tokenizer

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _runs_of(tok, row, needle):
    """The trained runs whose text holds ``needle``."""
    return [r for r in _runs(tok, row) if needle in r]


def _served(name, conv):
    """Apertus takes flat tool schemas (``caps.flat_tool_schemas``)."""
    if REAL_TEMPLATES[name].caps.flat_tool_schemas and conv.tools:
        return Conversation(conv.messages, tuple(t["function"] for t in conv.tools))
    return conv


def _enc(name, **kw):
    rt = REAL_TEMPLATES[name]
    tok = real_template_tokenizer(name)
    return tok, Encoder(tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), **kw)


def _runs(tok, row):
    return [tok.backend_tokenizer.decode(run, skip_special_tokens=False) for _, run in trained_runs(row)]


def _agent(call_content=None, reasoning=None, final_reasoning=None, args='{"city": "Paris"}', call_id="abcdefghi"):
    return Conversation(
        (
            Message("user", "Weather in Paris?"),
            Message("assistant", call_content, reasoning=reasoning,
                    tool_calls=(ToolCall("get_weather", json.loads(args), call_id, args),)),
            Message("tool", "18C and sunny", tool_call_id=call_id, name="get_weather"),
            Message("assistant", "It is 18C and sunny in Paris.", reasoning=final_reasoning),
        ),
        (WEATHER,),
    )


def test_gpt_oss_turns_end_at_call_and_return_not_end():
    """Defect 1: <|end|> only closes the analysis message; generation stops at <|call|> / <|return|>."""
    tok, enc = _enc("openai-gpt-oss-120b")
    conv = _agent(reasoning="I need the weather tool.", final_reasoning="The tool said 18C.")
    (row,) = enc.encode(conv)
    runs = _runs(tok, row)
    assert len(runs) == 2
    call, final = runs
    assert call.endswith("<|call|>") and "get_weather" in call and "I need the weather tool." in call
    assert final.endswith("<|return|>") and "It is 18C and sunny in Paris." in final
    check_rows(tok, conv, [row], enc.stop.tokens)


def test_gpt_oss_final_turn_keeps_its_analysis_when_history_is_rewritten():
    """Defect 2: adding the final answer drops the tool call's analysis from history; the final
    turn (a branch after the prompt that still holds that analysis) trains its own analysis."""
    tok, enc = _enc("openai-gpt-oss-120b")
    conv = _agent(reasoning="I need the weather tool.", final_reasoning="The tool said 18C.")
    (row,) = enc.encode(conv)
    assert enc.counters.render.history_rewritten == 1
    # the rendering drops the call's analysis, so it trains no turn of its own and is not stored:
    # the final turn's sequence (the prompt holding the call as generated) carries both turns
    assert row.num_paths == 1
    final = _runs(tok, row)[1]
    assert final.startswith("<|channel|>analysis<|message|>The tool said 18C.<|end|><|start|>assistant<|channel|>final")
    # its context is the prompt the model saw: the tool call's analysis still in it
    ctx = tok.backend_tokenizer.decode(trained_runs(row)[1][0], skip_special_tokens=False)
    assert "I need the weather tool." in ctx and ctx.endswith("<|start|>assistant")


def test_apertus_never_trains_a_tool_result():
    """Defect 2: Apertus' assistant block spans calls and tool outputs; a turn after the outputs
    starts after them (no header search back to the block start)."""
    tok, enc = _enc("Apertus-8B-Instruct")
    conv = _served("Apertus-8B-Instruct", _agent(call_content="Let me check."))
    (row,) = enc.encode(conv)
    runs = _runs(tok, row)
    assert len(runs) == 2 and all("18C and sunny]" not in r and "[18C" not in r for r in runs)
    (final,) = _runs_of(tok, row, "Paris.")
    assert final.startswith("It is 18C")
    check_rows(tok, conv, [row], enc.stop.tokens)


@pytest.mark.parametrize(
    "name,token",
    [("Qwen-QwQ-32B", "<tool_call>"), ("Apertus-8B-Instruct", "<|tools_prefix|>"), ("GLM-4.7-Flash", "</think>")],
)
def test_prompt_is_never_cut_inside_a_control_token(name, token):
    """Defect 3: where the generation prompt differs from the rendered turn, the prompt is cut
    between tokens: the control token is trained whole, not split between prompt and target."""
    tok, enc = _enc(name)
    conv = _served(name, _agent(call_content="Let me check."))
    (row,) = enc.encode(conv)
    assert enc.counters.render.prompt_mismatch >= 1
    tid = tok.convert_tokens_to_ids(token)
    firsts = [run[0] for _, run in trained_runs(row)]
    assert tid in [i for _, run in trained_runs(row) for i in run]
    for (ctx, run), text in zip(trained_runs(row), _runs(tok, row)):
        if token in text:
            assert tid in run  # one id, never characters of it on both sides
    assert firsts  # at least one turn
    check_rows(tok, conv, [row], enc.stop.tokens)


def test_nemotron_split_final_message_is_rejected_with_its_own_reason():
    """Defect 4: Nemotron-Nano-v2 renders a last message with content and tool calls as two
    blocks; no generation produces the second one: turn_split, never a half-trained turn."""
    tok, enc = _enc("NVIDIA-Nemotron-Nano-v2")
    conv = Conversation((Message("user", "Weather?"), Message("assistant", "Let me check.", tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),))), (WEATHER,))
    with pytest.raises(RowError) as ei:
        enc.encode(conv)
    assert ei.value.reason.value == "turn_split" and ei.value.field == "messages[1]"
    # content-only and call-only turns are trained
    ok = Conversation((Message("user", "Weather?"), Message("assistant", None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),
                       Message("tool", "18C", tool_call_id="c1"), Message("assistant", "18C.")), (WEATHER,))
    (row,) = enc.encode(ok)
    assert [r.endswith("<SPECIAL_12>") for r in _runs(tok, row)] == [True, True]


@pytest.mark.parametrize("name,stop", [("Apertus-8B-Instruct", "<|assistant_end|>"), ("GLM-4.7-Flash", "<|observation|>"), ("GLM-4.7-Flash", "<|user|>")])
def test_stop_token_written_after_the_turn_is_trained(name, stop):
    """Defect 5: the stop token the template writes right after a generated turn (in the next
    message's rendering) is the turn's last trained token."""
    tok, enc = _enc(name)
    conv = Conversation(tuple(_agent(call_content="Let me check.").messages) + (Message("user", "Thanks!"), Message("assistant", "You are welcome.")), (WEATHER,))
    conv = _served(name, conv)
    (row,) = enc.encode(conv)
    runs = _runs(tok, row)
    assert any(r.endswith(stop) for r in runs), runs
    assert enc.counters.render.stop_token_from_next_message >= 1
    check_rows(tok, conv, [row], enc.stop.tokens)


def test_all_policy_refuses_rewritten_turns_and_never_trains_headers():
    """Defect 6: `all` trains a turn only where the one rendering holds it verbatim; a header
    token like GLM's <|assistant|> is never trained; a later turn is never taken for an earlier one."""
    tok, enc = _enc("GLM-4.7-Flash", turn_policy="all")
    conv = _agent(call_content="Let me check.")
    # GLM's generation prompt ends with <think>; the rendering writes </think> after <|assistant|>
    # instead: the turn's text is there, its context is not what the model saw -> not in place
    with pytest.raises(RowError) as ei:
        enc.encode(conv)
    assert ei.value.reason.value == "turn_rewritten" and ei.value.field == "messages[1]"
    (row,) = _enc("GLM-4.7-Flash")[1].encode(conv)
    header = tok.convert_tokens_to_ids("<|assistant|>")
    assert all(y != header for y in row.labels)
    q_tok, q_enc = _enc("Qwen-Qwen3-0.6B", turn_policy="all", trim_trailing=False)
    multi = Conversation((Message("user", "a"), Message("assistant", "first"), Message("user", "b"), Message("assistant", "second", train=False)))
    with pytest.raises(RowError) as ei:  # Qwen3 rewrites "first" once "b" follows
        q_enc.encode(multi)
    assert ei.value.reason.value == "turn_rewritten" and ei.value.field == "messages[1]"


def test_hermes_turn_is_what_the_template_renders_beside_tool_calls():
    """Defect 6: Hermes-3 drops content beside tool calls; the turn is what the template renders,
    not rejected for lacking the content. (Hermes-3 also renders a tool message differently once
    a message follows it, so the final turn is a branch, and `all` refuses the row.)"""
    tok, enc = _enc("NousResearch-Hermes-3-Llama-3.1-8B-tool_use")
    conv = _agent(call_content="I will look it up.")
    (row,) = enc.encode(conv)
    (call,) = _runs_of(tok, row, "get_weather")
    assert "I will look it up." not in call


@pytest.mark.parametrize("name", ["mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506"])
def test_mistral_system_prompt_in_last_user_message_is_trained_exactly(name):
    """Defect 7: Mistral-Nemo / Small-3.2 move the system prompt and tools into the last user
    message and have no generation prompt: every turn is trained (as branches), none rejected."""
    tok, enc = _enc(name)
    conv = Conversation((Message("system", "Be brief."),) + tuple(_agent().messages) + (Message("user", "And Lyon?"), Message("assistant", "Also 18C.")), (WEATHER,))
    (row,) = enc.encode(conv)
    runs = _runs(tok, row)
    assert len(runs) == 3 and len(_runs_of(tok, row, "Also 18C.")) == 1
    assert any('[ARGS]{"city": "Paris"}' in r or '"arguments": {"city": "Paris"}' in r for r in runs)  # never a quoted string
    check_rows(tok, conv, [row], enc.stop.tokens)


def test_string_concatenating_template_gets_json_text_arguments():
    """Defect 8: DeepSeek-V3.1's template concatenates arguments as strings and fails on dicts;
    the row is rendered with JSON-text arguments (counted), as the model is served."""
    tok, enc = _enc("deepseek-ai-DeepSeek-V3.1")
    conv = Conversation(tuple(_agent().messages[:1]) + (Message("assistant", None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),)
                        + tuple(_agent().messages[2:]), (WEATHER,))
    (row,) = enc.encode(conv)
    assert enc.counters.render.tool_arguments_converted == 1
    assert _runs_of(tok, row, 'get_weather<｜tool▁sep｜>{"city": "Paris"}')


@pytest.mark.parametrize("args", ['{"email":"a@b.c"}', '{"n": 1e5}', '{"x": 1.10}', '{"name": "\\u00e9t\\u00e9"}', '{ "k" :  1 }'])
def test_json_string_arguments_are_rendered_verbatim(args):
    """Defect 9: arguments given as JSON text (what the model generated) are rendered as that
    exact text, as apply_chat_template does with the same data; never parsed and re-serialised."""
    tok, enc = _enc("Qwen-Qwen3-0.6B")
    conv = _agent(args=args, call_content="Checking.")
    (row,) = enc.encode(conv)
    assert _runs_of(tok, row, args)
    msgs = conv.template_messages()
    assert msgs[1]["tool_calls"][0]["function"]["arguments"] == args
    assert args in tok.apply_chat_template(msgs, tools=conv.template_tools(), tokenize=False)
    check_rows(tok, conv, [row], enc.stop.tokens)
    # and --tool-arguments dict re-serialises on purpose
    _, as_dict = _enc("Qwen-Qwen3-0.6B", tool_arguments="dict")
    (row2,) = as_dict.encode(conv)
    assert bool(_runs_of(tok, row2, args)) == (args == json.dumps(json.loads(args), ensure_ascii=False))


def test_stop_token_found_when_the_next_message_rewrites_the_turn():
    """GLM drops the reasoning of turns before the last user message, so the rendering with the
    next (probe) user message does not start with the turn: the stop token is found after the
    turn's end instead (regression: such last turns were trained without <|user|>)."""
    tok, enc = _enc("GLM-4.6")
    conv = Conversation((Message("user", "Weather in Paris?"), Message("assistant", "It is 18C.", reasoning="Check memory.")))
    (row,) = enc.encode(conv)
    (run,) = _runs(tok, row)
    assert run.endswith("It is 18C.<|user|>") and "Check memory." in run
    check_rows(tok, conv, [row], enc.stop.tokens)
