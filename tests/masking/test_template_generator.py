"""Generated chat templates against their known ground truth (issue 15).

``sftdata.testing.template_gen`` writes chat templates from behaviours real templates have and
knows, from the behaviour flags alone, what the model generates at every assistant turn. Each
test encodes drawn conversations with ``sftdata.Encoder`` (policy ``exact``, tree layout, the
template's stop tokens) and checks the rows with ``check_against_spec``: every turn's path is
``tokens(P_k)`` (transformers' ``apply_chat_template(m[:k], add_generation_prompt=True)``)
followed by ``tokens(generated text)``, nothing else is trained, and a row is rejected only
where the generated text is not determined, with that reason.

Behaviours that fail on the current core are listed in :data:`KNOWN_FAILING` (each with a
minimal template and conversation in :data:`FOUND_EXAMPLES`): their cases are marked
``xfail(strict=False)`` and the other tests draw templates without them, so that each
failure is named by its behaviour. Remove an entry once the core handles it.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sftdata import Encoder, RowError
from sftdata.schema import Conversation, Message, ToolCall
from sftdata.testing.template_gen import (
    BEHAVIOURS,
    TemplateSpec,
    check_against_spec,
    spec_conversations,
    spec_tokenizer,
    template_specs,
)

#: behaviour -> why it fails on the current core (issue 15); see FOUND_EXAMPLES
KNOWN_FAILING: dict[str, str] = {}  # every behaviour the generator found failing is fixed (see FOUND_EXAMPLES)
AVOID = tuple(KNOWN_FAILING)

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                        HealthCheck.filter_too_much])


@lru_cache(maxsize=512)
def _encoder(spec: TemplateSpec) -> tuple:
    tok = spec_tokenizer(spec)
    return tok, Encoder(tok, stop_tokens=spec.stop_tokens())


def _check(spec: TemplateSpec, conv: Conversation):
    tok, enc = _encoder(spec)
    try:
        out = enc.encode(conv)
    except RowError as e:
        out = e
    return check_against_spec(tok, spec, conv, out, now=enc.now)


# ---- drawn templates ---------------------------------------------------------------------------


@settings(max_examples=150, **_SETTINGS)
@given(st.data())
def test_generated_templates_match_their_ground_truth(data):
    """Any combination of the behaviours that the core handles: the rows are the ground truth."""
    spec = data.draw(template_specs(avoid=AVOID), label="spec")
    conv = data.draw(spec_conversations(spec), label="conversation")
    _check(spec, conv)


def _case(name: str):
    marks = [pytest.mark.xfail(strict=False, reason=KNOWN_FAILING[name])] if name in KNOWN_FAILING else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("behaviour", [_case(n) for n in BEHAVIOURS])
def test_each_behaviour_matches_its_ground_truth(behaviour):
    """Templates that all have ``behaviour`` (the known failures of other behaviours left out)."""

    # a known failure is reported without shrinking (shrinking it costs a minute per run)
    phases = [Phase.explicit, Phase.reuse, Phase.generate] if behaviour in KNOWN_FAILING else list(Phase)

    @settings(max_examples=8, phases=phases, **_SETTINGS)
    @given(st.data())
    def check(data):
        spec = data.draw(template_specs(behaviour, avoid=[a for a in AVOID if a != behaviour]), label="spec")
        assert BEHAVIOURS[behaviour].holds(spec)
        conv = data.draw(spec_conversations(spec), label="conversation")
        _check(spec, conv)

    check()


# ---- the generator itself ----------------------------------------------------------------------


@settings(max_examples=40, **_SETTINGS)
@given(st.data())
def test_ground_truth_is_what_transformers_renders_after_the_turn_header(data):
    """The generator's ground truth, checked against transformers (not against sftdata): for an
    explicit end, ``F_k`` (transformers' rendering of ``m[:k+1]``) ends with the expected
    generated text followed by what the template writes after the stop token; for ``end="next"``
    it ends with the expected text without its stop token, and the stop token is the next
    message's header."""
    spec = data.draw(template_specs(), label="spec")
    conv = data.draw(spec_conversations(spec), label="conversation")
    tok = spec_tokenizer(spec)
    msgs = [{k: v for k, v in m.items() if v is not None} for m in conv.template_messages(spec.served_arguments())]
    render = lambda n: tok.apply_chat_template(msgs[:n], tools=conv.template_tools(), tokenize=False)  # noqa: E731
    after = {"stop": "", "stop_nl": "\n", "nl_stop": "\n", "next": ""}[spec.end] + spec.suffix
    after += spec.after_last_message()  # a trailing system turn, a generation prompt always written
    for t in spec.expected(conv):
        if t.reject:
            continue
        full = render(t.k + 1)
        if spec.end == "next":
            stop = next(s for s in spec.stop_tokens() if t.text.endswith(s))
            assert full.endswith(t.text[: -len(stop)]), (t, full[-200:])
            if t.k + 1 < len(msgs) and spec.drop == "none":  # (a dropped reasoning block rewrites F_k)
                assert render(t.k + 2)[len(full):].startswith(stop)
        else:
            assert full.endswith(t.text + after), (t, full[-200:])


def test_specs_reject_incompatible_flags_and_unknown_behaviours():
    with pytest.raises(ValueError, match="end='next'"):
        TemplateSpec(header="chatml", end="next")
    with pytest.raises(ValueError, match="drop"):
        TemplateSpec(reasoning="none", drop="before_last_user")
    with pytest.raises(ValueError, match="unknown behaviour"):
        template_specs("no_such_behaviour")


def test_oracle_catches_a_wrong_mask():
    """The oracle fails on rows whose trained tokens are not the ground truth (it can fail)."""
    spec = TemplateSpec(tools=False)
    conv = Conversation((Message("user", "hi"), Message("assistant", "hello there")))
    tok, enc = _encoder(spec)
    (row,) = enc.encode(conv)
    check_against_spec(tok, spec, conv, [row], now=enc.now)
    first = next(i for i, y in enumerate(row.labels) if y != -100)
    header_trained = type(row)(**{**row.__dict__, "labels": [*row.labels[: first - 1], row.input_ids[first - 1], *row.labels[first:]]}) \
        if hasattr(row, "__dict__") else None
    if header_trained is None:  # slotted dataclass
        from dataclasses import replace

        header_trained = replace(row, labels=[*row.labels[: first - 1], row.input_ids[first - 1], *row.labels[first:]])
    with pytest.raises(AssertionError):
        check_against_spec(tok, spec, conv, [header_trained], now=enc.now)
    with pytest.raises(AssertionError, match="unexpected reject"):
        from sftdata.errors import Reason

        check_against_spec(tok, spec, conv, RowError(Reason.TURN_SPLIT, "x"), now=enc.now)


# ---- explicit examples -------------------------------------------------------------------------

_U = lambda c: Message("user", c)  # noqa: E731
_A = lambda c, **k: Message("assistant", c, **k)  # noqa: E731
_CALL = ToolCall("f", {"a": 1}, id="c1")

#: issue 15's measured defects that the generator checks: they pass on the current core
FIXED_EXAMPLES = {
    "separator_before_headers": (TemplateSpec(sep_before=True, tools=False),
                                 Conversation((_U("hi"), _A("one"), _U("again"), _A("two")))),
    "always_generation_prompt": (TemplateSpec(always_gen=True, tools=False),
                                 Conversation((_U("hi"), _A("one"), _U("again"), _A("two")))),
    "clock": (TemplateSpec(clock=True, tools=False), Conversation((Message("system", "be brief"), _U("hi"), _A("one")))),
    "reasoning_key_reasoning": (TemplateSpec(reasoning="think", reasoning_key="reasoning", tools=False),
                                Conversation((_U("hi"), _A("one", reasoning="because")))),
    "arguments_string": (TemplateSpec(args="string"), Conversation((
        _U("hi"), _A("", tool_calls=(ToolCall("f", {"a": 1}, id="c1", arguments_text='{"a":1}'),)),
        Message("tool", "r", tool_call_id="c1", name="f"), _A("done")), (
        {"type": "function", "function": {"name": "f", "description": "", "parameters": {"type": "object"}}},))),
}

#: minimal failures the generator found (spec, conversation), each fixed in the core since: regressions
FOUND_EXAMPLES = {
    "always_gen+reasoning_opener": (TemplateSpec(gen_think=True, always_gen=True, tools=False),
                                    Conversation((_U("hi"), _A("one"), _A("two")))),
    "separator+reasoning_opener+tool_call_without_content": (
        TemplateSpec(sep_before=True, sep_before_gen=True, gen_think=True),
        Conversation((_U("hi"), _A(None, tool_calls=(_CALL,)), Message("tool", "r", tool_call_id="c1", name="f"), _A("done")))),
    "merged_assistant_messages": (TemplateSpec(merge="assistant", tools=False), Conversation((_U("hi"), _A("one"), _A("two")))),
    "stop_from_next_message+final_tool_call": (TemplateSpec(header="roletok", end="next"),
                                               Conversation((_U("hi"), _A("", tool_calls=(_CALL,))))),
    "stop_from_next_message+reasoning_dropped": (
        TemplateSpec(header="roletok", end="next", tools=False, reasoning="think", drop="before_last_user"),
        Conversation((_U("hi"), _A("one", reasoning="r1"), _U("again"), _A("two")))),
    "stop_from_next_message+reasoning_opener+empty_turn": (
        TemplateSpec(header="roletok", end="next", gen_think=True, tools=False), Conversation((_U("hi"), _A("")))),
    "separator+empty_think_block+analysis_dropped": (
        TemplateSpec(sep_before=True, sep_before_gen=True, reasoning="think", think_always=True, drop="after_final", tools=False),
        Conversation((_U("hi"), _A("one"), _U("x"), _A("two")))),
}


@pytest.mark.parametrize("name", sorted(FIXED_EXAMPLES))
def test_fixed_examples(name):
    spec, conv = FIXED_EXAMPLES[name]
    report = _check(spec, conv)
    assert report.rejected is None and report.turns >= 1


@pytest.mark.parametrize("name", sorted(FOUND_EXAMPLES))
def test_examples_the_generator_found(name):
    spec, conv = FOUND_EXAMPLES[name]
    _check(spec, conv)


def test_expected_rejects():
    """The ground truth expects a reject where the generated text is not determined."""
    split = TemplateSpec(split=True)
    conv = Conversation((_U("hi"), _A("let me look", tool_calls=(_CALL,))))
    assert [t.reject for t in split.expected(conv)] == ["turn_split"]
    assert _check(split, conv).rejected == "turn_split"
    merged = TemplateSpec(merge="assistant", tools=False)
    assert [t.reject for t in merged.expected(Conversation((_U("hi"), _A("one"), _A("two"))))] == [None, "turn_not_isolated"]
