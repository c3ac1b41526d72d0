"""Masks v3 (issue 15): the check of the definition and the options around it: the prepare-time
turn check (sftdata.masking.turn_check), a row breaking the definition rejected, the clock
reading recorded and set (API, CLI, pipeline), the max_length warning, the per-row render budget.

For every trained turn ``k`` the root-to-leaf path that ends in it is ``tokens(P_k)`` (the
inference prompt) followed by what the model generates there: what the template renders for
message ``k`` after the generation prompt, up to and including the stop token.
"""

from __future__ import annotations

import pytest

from sftdata.encoder import EncodeOptions, Encoder
from sftdata.errors import ConfigError
from sftdata.schema import Conversation, Message
from sftdata.masking.tree import IGNORE_INDEX

from masks_v3_helpers import CLOCK, SUFFIX, _CHATML_STOP, _conv, _encode, _tok


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
