"""Mask invariants on every template family, the real templates bundled with trl, and the
real agent templates vendored in sftdata.testing (when present), checked by an oracle built on
transformers' ``apply_chat_template`` alone (:mod:`sftdata.testing.oracle`).

A refusal is accepted only when transformers' rendering agrees with it
(:func:`sftdata.testing.oracle.justified_refusal`). Every template counts its checked turns
and refusals; a template whose conversations are mostly refused, or whose turns the oracle
cannot check, fails (skips are never silent).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from sftdata import Encoder, RowError
from sftdata.schema import Conversation
from sftdata.testing.oracle import check_rows, justified_refusal, trained_runs
from sftdata.testing.strategies import conversations_for
from sftdata.testing.tokenizers import FAMILIES, build_tokenizer, family_caps
from sftdata.testing.trl_templates import trl_template_families
from sftdata.masking.tokenizer import control_token_pattern, control_tokens
from sftdata.masking.tree import IGNORE_INDEX, unroll

try:  # vendored real agent templates (sftdata/testing/real_templates.py)
    from sftdata.testing.real_templates import REAL_TEMPLATES, real_template_tokenizer
except ImportError:  # pragma: no cover - older checkouts
    REAL_TEMPLATES, real_template_tokenizer = {}, None

_TRL = trl_template_families()
TRL_NAMES = sorted(_TRL)
REAL_NAMES = sorted(f"real:{n}" for n in REAL_TEMPLATES)
ALL_NAMES = list(FAMILIES) + TRL_NAMES + REAL_NAMES
#: templates allowed to refuse most generated conversations, with the reason
MOSTLY_REFUSED: dict[str, str] = {
    # renders a last message holding content and tool calls as two assistant blocks; no
    # generation produces the second one (turn_split), and the strategies draw such messages often
    "real:NVIDIA-Nemotron-Nano-v2": "turn_split",
}


def _settings(name: str, families: int = 12, others: int = 4):
    n = families if name in FAMILIES else others
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    return settings(max_examples=n, deadline=None, phases=phases, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=None)
def _fixture(name: str):
    """(tokenizer, caps, stop tokens or None, template kwargs, lossless)."""
    if name in FAMILIES:
        return build_tokenizer(name), family_caps(name), None, {}, True
    if name.startswith("real:"):
        t = REAL_TEMPLATES[name[5:]]
        return real_template_tokenizer(t.name), t.caps, tuple(t.stop_tokens), dict(t.template_kwargs), t.spec.lossless
    t = _TRL[name]
    return t.tokenizer, t.caps, None, {}, t.spec.lossless


@lru_cache(maxsize=None)
def _encoder(name: str, policy: str, **kw) -> Encoder:
    tok, _, stops, tk, _ = _fixture(name)
    return Encoder(tok, turn_policy=policy, stop_tokens=stops, template_kwargs=tk, **kw)


@lru_cache(maxsize=None)
def _pattern(name: str):
    tok = _fixture(name)[0]
    return control_token_pattern(control_tokens(tok, tok.chat_template))


def _served(name: str, conv: Conversation) -> Conversation:
    """``conv`` as the model is served with: JSON-text arguments and flat tool schemas where the
    real template needs them (see ``sftdata.testing.real_templates.template_inputs``)."""
    caps = _fixture(name)[1]
    if getattr(caps, "string_arguments", False) and conv.has_tool_calls:
        msgs = tuple(
            replace(m, tool_calls=tuple(replace(c, arguments_text=json.dumps(dict(c.arguments), ensure_ascii=False)) for c in m.tool_calls))
            for m in conv.messages
        )
        conv = Conversation(msgs, conv.tools)
    if getattr(caps, "flat_tool_schemas", False) and conv.tools:
        conv = Conversation(conv.messages, tuple(t["function"] if isinstance(t.get("function"), dict) else t for t in conv.tools))
    return conv


def _encode_or_refuse(name, conv, policy, tally, **kw):
    tok, _, _, tk, lossless = _fixture(name)
    enc = _encoder(name, policy, **kw)
    assistants = [k for k, m in enumerate(conv.messages) if m.role == "assistant" and m.train is not False]
    trained = assistants[-1:] if policy == "last" else None
    try:
        rows = enc.encode(conv)
    except RowError as e:
        assert justified_refusal(tok, conv, e, enc.stop.tokens, lossless=lossless, control_pattern=_pattern(name),
                                 template_kwargs=tk, trained=trained), (
            f"unjustified refusal: {e}"
        )
        tally[f"refused:{e.reason.value}"] += 1
        return None
    tally["encoded"] += 1
    return rows


def _assert_tally(name, tally):
    done = tally["encoded"]
    refused = sum(v for k, v in tally.items() if k.startswith("refused:"))
    if name in MOSTLY_REFUSED:
        allowed = MOSTLY_REFUSED[name]
        assert all(k in ("encoded", f"refused:{allowed}", "refused:no_trained_turn", "refused:template_error") or not k.startswith("refused:")
                   for k in tally), f"{name}: refused for another reason than {allowed}: {dict(tally)}"
    elif done + refused >= 4:
        assert done >= 1, f"{name}: every generated conversation was refused: {dict(tally)}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_exact_policy_matches_the_oracle(name):
    tok, caps, _, tk, _ = _fixture(name)
    tally: Counter = Counter()

    @_settings(name)
    @given(conversations_for(caps, ends_with="assistant", max_turns=3))
    def check(conv):
        conv = _served(name, conv)
        rows = _encode_or_refuse(name, conv, "exact", tally)
        if rows is None:
            return
        assert len(rows) == 1  # the tree layout: one row per conversation
        report = check_rows(tok, conv, rows, _encoder(name, "exact").stop.tokens, template_kwargs=tk)
        tally.update(report.modes)

    check()
    _assert_tally(name, tally)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_linear_layout_is_the_unrolled_tree(name):
    """Every root-to-leaf path of the tree is one linear row; each trained token once."""
    tally: Counter = Counter()

    @_settings(name, 6, 2)
    @given(conversations_for(_fixture(name)[1], ends_with="assistant", max_turns=3))
    def check(conv):
        conv = _served(name, conv)
        tree = _encode_or_refuse(name, conv, "exact", tally)
        if tree is None:
            return
        linear = _encoder(name, "exact", layout="linear").encode(conv)
        paths = [(ids, lab) for ids, lab in unroll({"input_ids": tree[0].input_ids, "labels": tree[0].labels, "parent": tree[0].parent})
                 if any(y != IGNORE_INDEX for y in lab)]
        assert [(r.input_ids, r.labels) for r in linear] == paths
        assert all(not r.parent for r in linear)
        assert sum(len(r.input_ids) for r in linear) <= tree[0].linear_length
        assert sum(r.num_trained for r in linear) == tree[0].num_trained

    check()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_last_policy_trains_only_the_final_turn(name):
    tok, caps, _, tk, _ = _fixture(name)
    tally: Counter = Counter()

    @_settings(name, 6, 2)
    @given(conversations_for(caps, ends_with="assistant", max_turns=3))
    def check(conv):
        conv = _served(name, conv)
        rows = _encode_or_refuse(name, conv, "last", tally)
        if rows is None:
            return
        last = max(k for k, m in enumerate(conv.messages) if m.role == "assistant" and m.train is not False)
        check_rows(tok, conv, rows, _encoder(name, "last").stop.tokens, trained=[last], template_kwargs=tk)
        assert len([run for r in rows for run in trained_runs(r)]) == 1

    check()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_all_policy_is_one_rendering(name):
    """``all``: the single rendering, every turn it holds verbatim trained, or a justified refusal."""
    tok, caps, _, tk, _ = _fixture(name)
    tally: Counter = Counter()

    @_settings(name, 6, 2)
    @given(conversations_for(caps, ends_with="assistant", max_turns=3))
    def check(conv):
        conv = _served(name, conv)
        rows = _encode_or_refuse(name, conv, "all", tally)
        if rows is None:
            return
        (row,) = rows
        assert row.parent == []
        msgs, tools = conv.template_messages(), conv.template_tools()
        f_ids = tok.apply_chat_template(msgs, tools=tools, tokenize=True, return_dict=False, **tk)
        assert row.input_ids[: len(f_ids)] == f_ids  # possibly followed by the stop token the template writes next
        assert len(row.input_ids) - len(f_ids) in (0, 1)
        if _encoder(name, "all")._renderer(bool(tools))[0].template.has_generation_markers:
            # transformers' return_assistant_tokens_mask semantics
            out = tok.apply_chat_template(msgs, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **tk)
            assert [y != IGNORE_INDEX for y in row.labels] == [bool(x) for x in out["assistant_masks"]]
            return
        exact = _encoder(name, "exact").encode(conv)[0]
        assert exact.parent == [] and exact.labels == row.labels  # nothing rewritten: both policies agree

    check()


@pytest.mark.parametrize("name", ["chatml", "qwen3", "llama3"])
def test_header_and_user_tokens_never_trained(name):
    """No token of a user/system/tool message's own text is trained."""
    tok, caps, _, _, _ = _fixture(name)
    tally: Counter = Counter()

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(conversations_for(caps, ends_with="assistant", max_turns=3, whitespace="stripped"))
    def check(conv):
        conv = _served(name, conv)
        rows = _encode_or_refuse(name, conv, "exact", tally)
        if rows is None:
            return
        runs = [tok.backend_tokenizer.decode(run, skip_special_tokens=False) for r in rows for _, run in trained_runs(r)]
        own = "".join((x.content or "") + (x.reasoning or "") + str([c.arguments for c in x.tool_calls]) for x in conv.messages if x.role == "assistant")
        for m in conv.messages:
            if m.role in ("user", "system", "tool") and m.content and len(m.content.strip()) >= 12 and m.content.strip() not in own:
                assert all(m.content.strip() not in t for t in runs)

    check()


@given(conversations_for(family_caps("qwen3"), ends_with="assistant", reasoning=True, whitespace="stripped"))
@settings(max_examples=10, deadline=None, phases=[Phase.generate, Phase.shrink], suppress_health_check=[HealthCheck.too_slow])
def test_no_train_reasoning_masks_reasoning_text(conv):
    tok = _fixture("qwen3")[0]
    with_r = _encoder("qwen3", "exact").encode(conv)
    without = _encoder("qwen3", "exact", train_reasoning=False).encode(conv)
    for a, b in zip(with_r, without):
        assert a.input_ids == b.input_ids and a.parent == b.parent
        trained_b = "\x00".join(tok.backend_tokenizer.decode(run, skip_special_tokens=False) for _, run in trained_runs(b))
        other = " ".join(
            (x.content or "") + " ".join(c.name + json.dumps(c.arguments, ensure_ascii=False) for c in x.tool_calls)
            for x in conv.messages
        )
        for m in conv.messages:
            r = (m.reasoning or "").strip()
            if m.role == "assistant" and len(r) > 3 and r not in other and r not in tok.chat_template:
                assert r not in trained_b
        assert b.num_trained <= a.num_trained
