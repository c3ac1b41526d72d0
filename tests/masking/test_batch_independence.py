"""A conversation's rows do not depend on the other conversations of its batch.

Regression: ``ConversationEncoder.encode_many`` kept "leading tokens of this prompt known to
equal the rendering's" per prompt *text* for the whole batch. A neighbour whose rendering
starts with the same prompt made the shortcut apply to a conversation whose own rendering does
not (gpt-oss drops earlier analysis once a final answer follows), and the prefix tree grafted
that conversation's branch at the wrong place: a silently wrong row that still decoded per turn.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata import Encoder
from sftdata.testing.real_templates import real_template_tokenizer
from sftdata.testing.strategies import texts

TOK = real_template_tokenizer("openai-gpt-oss-120b")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
COLUMNS = ("input_ids", "labels", "parent", "position_ids", "reject")


def _pair(question: str, thought1: str, result: str, thought2: str, answer: str) -> tuple[dict, dict]:
    """Two conversations that share everything up to the second assistant turn: one ends with a
    tool call (the template keeps the first analysis), one with a final answer (it drops it)."""
    call = lambda i, city: {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}  # noqa: E731
    head = [{"role": "user", "content": question},
            {"role": "assistant", "reasoning": thought1, "content": None, "tool_calls": [call(1, "Paris")]},
            {"role": "tool", "tool_call_id": "c1", "content": result}]
    with_call = {"messages": head + [{"role": "assistant", "reasoning": thought2, "content": None, "tool_calls": [call(2, "Lyon")]}],
                 "tools": TOOLS}
    with_answer = {"messages": head + [{"role": "assistant", "reasoning": thought2, "content": answer}], "tools": TOOLS}
    return with_call, with_answer


def _rows(batch: list[dict]) -> list[dict]:
    """Each output row's columns; a reject's record without its row index (which is the position
    in the batch, so it differs by design between a batch and a conversation alone)."""
    out = Encoder(TOK).map_batch({"raw": [json.dumps(r) for r in batch], "source_index": list(range(len(batch)))})
    rows = [{k: out[k][i] for k in COLUMNS} for i in range(len(out["input_ids"]))]
    for r in rows:
        if r["reject"] is not None:
            r["reject"] = {k: v for k, v in json.loads(r["reject"]).items() if k != "row"}
    return rows


def test_gpt_oss_final_answer_row_is_the_same_after_a_tool_call_neighbour():
    with_call, with_answer = _pair("What is the weather in Paris today?", "I should call the weather tool for Paris.",
                                   "Sunny, 21 degrees.", "Now answer.", "It is sunny and 21 degrees in Paris.")
    alone = _rows([with_answer])
    # the final rendering drops the first analysis, so it trains no turn of its own: the row is
    # the final turn's own sequence (P_k holding the call as generated), not the rendering
    assert len(alone) == 1 and not alone[0]["parent"]
    assert _rows([with_call, with_answer])[1:] == alone


_TEXT = texts(min_pieces=1, max_pieces=6, whitespace="stripped").filter(str.strip)


@settings(max_examples=25, deadline=None)
@given(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT, st.booleans())
def test_rows_do_not_depend_on_the_batch(question, thought1, result, thought2, answer, answer_first):
    with_call, with_answer = _pair(question, thought1, result, thought2, answer)
    batch = [with_answer, with_call] if answer_first else [with_call, with_answer]
    assert _rows(batch) == _rows(batch[:1]) + _rows(batch[1:])
