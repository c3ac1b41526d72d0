"""``quotes_text``: the one-scan search for quoted argument texts gives the answer of searching for
each quoted form on its own."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.masking import argument_probe
from sftdata.masking.argument_probe import quotes_text

_ALPHABET = st.sampled_from(list('ab{}[]":,\\ é\n') + ['{"a": 1}'])
_TEXT = st.lists(_ALPHABET, max_size=12).map("".join)


def _naive(rendered: str, texts: list[str]) -> bool:
    return any(json.dumps(t, ensure_ascii=a) in rendered for t in texts for a in (False, True))


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_TEXT, min_size=1, max_size=8), parts=st.lists(st.one_of(_TEXT, _TEXT.map(json.dumps)), max_size=12))
def test_scan_equals_one_search_per_form(texts, parts):
    """Both paths (one search per form, and the scan of quote characters) agree with the plain
    definition, on renderings built from fragments, quoted texts among them."""
    rendered = "".join(parts)
    want = _naive(rendered, texts)
    saved = argument_probe._SEARCH_EACH_MAX
    try:
        for limit in (saved, 0):  # 0: always the scan
            argument_probe._SEARCH_EACH_MAX = limit
            assert quotes_text(rendered, texts) == want
    finally:
        argument_probe._SEARCH_EACH_MAX = saved


def test_long_trace_found_and_not_found():
    """A long rendering with many texts takes the scan: a quoted text near the end is found; none
    quoted is not."""
    texts = [json.dumps({"id": i, "query": "x" * 20}) for i in range(3000)]
    plain = "".join(f"<call>{t}</call>\n" for t in texts)
    assert not quotes_text(plain, texts)
    assert quotes_text(plain + json.dumps(texts[-1]), texts)
