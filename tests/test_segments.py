"""SegmentEncoder gives exactly tokenizer(text, add_special_tokens=False), prefixes included."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.control_tokens import MARK_END, MARK_START
from sftdata.segments import SegmentEncoder
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
