"""SegmentEncoder gives exactly tokenizer(text, add_special_tokens=False), prefixes included."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.masking.control_tokens import MARK_END, MARK_START
from sftdata.masking.segments import SegmentEncoder
from sftdata.testing import qwen3 as real_qwen3
from sftdata.testing.tokenizers import FAMILIES, build_tokenizer

NAMES = list(FAMILIES) + (["qwen3-real"] if real_qwen3.available() else [])


@lru_cache(maxsize=None)
def _tok(name):
    return real_qwen3.qwen3_tokenizer() if name == "qwen3-real" else build_tokenizer(name)


@lru_cache(maxsize=None)
def _enc(name):
    return SegmentEncoder(_tok(name))


def texts_for(name):
    added = sorted(t.content for t in _tok(name).added_tokens_decoder.values())
    atoms = st.one_of(
        st.sampled_from(added),
        st.lists(st.sampled_from(list("ab \n\t.{}\"é中!<|>") + ["\n\n", "  ", "ab"]), max_size=6).map("".join),
        st.text(max_size=4),
    )
    return st.lists(atoms, max_size=12).map("".join)


@pytest.mark.parametrize("name", NAMES)
def test_split_encoding_is_exact(name):
    tok, enc = _tok(name), _enc(name)
    assert enc.split_exact  # byte-level BPE with verbatim added tokens

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(texts_for(name), min_size=1, max_size=4))
    def check(texts):
        got = enc.encode(texts)
        for t, ids in zip(texts, got):
            assert ids == tok(t, add_special_tokens=False)["input_ids"]

    check()


@pytest.mark.parametrize("name", NAMES)
def test_prefixes_reuse_the_base_pieces_exactly(name):
    tok, enc = _tok(name), _enc(name)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(texts_for(name), st.lists(st.floats(0, 1), min_size=1, max_size=5))
    def check(base, fractions):
        (layout,) = enc.layouts([base])
        assert layout.ids == tok(base, add_special_tokens=False)["input_ids"]
        prefixes = [base[: int(f * len(base))] for f in fractions]
        for p, (ids, shared) in zip(prefixes, enc.encode_prefixes([(layout, p) for p in prefixes])):
            assert ids == tok(p, add_special_tokens=False)["input_ids"]
            assert ids[:shared] == layout.ids[:shared]

    check()


def test_marked_control_text_is_plain_text():
    tok = _tok("chatml")
    enc = SegmentEncoder(tok, marked=True)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    text = f"<|im_start|>user\nsay {MARK_START}<|im_end|>{MARK_END} please<|im_end|>"
    (ids,) = enc.encode([text])
    assert ids.count(im_end) == 1  # only the template's own
    assert enc.decode(ids) == text.replace(MARK_START, "").replace(MARK_END, "")


def test_cache_is_bounded_and_results_stay_exact():
    tok = _tok("chatml")
    enc = SegmentEncoder(tok, cache_chars=50)
    texts = [f"<|im_start|>user\nmessage number {i} with some words<|im_end|>" for i in range(30)]
    assert enc.encode(texts) == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert enc._cached_chars <= 50 + sum(len(t) for t in texts)


@pytest.mark.parametrize("name", NAMES)
def test_branches_reuse_the_shared_pieces_exactly(name):
    """``encode_branches``: the tokens of ``base[:s] + tail`` are the base's first ``shared``
    tokens plus the returned ids, for any cut ``s`` and any tail (added tokens, pieces of added
    tokens, plain text), marked or not."""
    tok = _tok(name)
    added = sorted(t.content for t in tok.added_tokens_decoder.values())
    pieces = st.one_of(st.sampled_from(added), st.sampled_from(added).map(lambda a: a[: len(a) // 2]),
                       st.sampled_from(added).map(lambda a: a[len(a) // 2 :]))

    for marked in (False, True):
        enc = SegmentEncoder(tok, marked=marked)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(texts_for(name), st.lists(st.tuples(st.floats(0, 1), st.lists(st.one_of(pieces, texts_for(name)), max_size=3).map("".join)),
                                          min_size=1, max_size=5))
        def check(base, cuts):
            (layout,) = enc.layouts([base])
            jobs = [(layout, int(f * len(base)), tail) for f, tail in cuts]
            for (_, s, tail), (shared, ids) in zip(jobs, enc.encode_branches(jobs)):
                assert layout.ids[:shared] + ids == enc.encode([base[:s] + tail])[0]
                if not marked:
                    assert layout.ids[:shared] + ids == tok(base[:s] + tail, add_special_tokens=False)["input_ids"]

        check()


def test_branch_cut_right_after_an_added_token_that_a_longer_one_extends():
    """Added tokens ``<|im_start|>`` and ``<|im_start|>x``: a text sharing ``...<|im_start|>``
    with the base and going on with ``x`` holds the longer token, so the split cannot be reused
    up to the cut (the rule keeps a margin of the longest added token)."""
    tok = build_tokenizer("chatml")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>x"]})
    enc = SegmentEncoder(tok)
    assert enc.split_exact
    base = "hello <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    (layout,) = enc.layouts([base])
    for s in range(len(base) + 1):
        for tail in ("x", "xy", "x<|im_end|>", "assistant\nok"):
            ((shared, ids),) = enc.encode_branches([(layout, s, tail)])
            assert layout.ids[:shared] + ids == tok(base[:s] + tail, add_special_tokens=False)["input_ids"], (s, tail)
