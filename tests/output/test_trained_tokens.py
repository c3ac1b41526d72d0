"""One definition of a trained token (issue 19): a label ``!= IGNORE_INDEX`` that some position
predicts (``sftdata.masking.tree_arrays.trained_mask`` / ``count_trained``), counted the same by
``prepare``'s stats, ``pack``'s report, ``show`` and the collators."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sftdata import prepare
from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator, num_trained_tokens
from sftdata.packing import pack_dataset
from sftdata.show import render_html, tree_paths
from sftdata.output.stats import StatsPart
from sftdata.testing.tokenizers import build_tokenizer
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata.masking.tree_arrays import IGNORE_INDEX, count_trained, shift_labels, trained_mask


@st.composite
def packed_forest(draw):
    """A packed row of linear units: ``parent`` ``-1`` at every unit start, ``i - 1`` elsewhere,
    every label free (a trained label at a unit start is not a trained token)."""
    units = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    parent, start = [], 0
    for n in units:
        parent += [-1] + list(range(start, start + n - 1))
        start += n
    ids = draw(st.lists(st.integers(1, 9), min_size=start, max_size=start))
    labels = [t if draw(st.booleans()) else IGNORE_INDEX for t in ids]
    return {"input_ids": ids, "labels": labels, "parent": parent}


def _flat(rows, key):
    values = np.asarray([x for r in rows for x in r[key]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(r[key]) for r in rows])]).astype(np.int64)
    return values, offsets


@given(st.lists(st.one_of(linear_rows(), tree_rows(), packed_forest()), min_size=1, max_size=6))
def test_count_trained_is_the_per_row_mask_and_the_shifted_targets(rows):
    rows = [{**r, "parent": r.get("parent", [])} for r in rows]
    lab, off = _flat(rows, "labels")
    par, par_off = _flat(rows, "parent")
    counts = count_trained(lab, off, par, par_off)
    assert counts.dtype == np.int64 and counts.shape == (len(rows),)
    for r, c in zip(rows, counts.tolist()):
        assert c == int(trained_mask(r["labels"], r["parent"]).sum())
        targets = shift_labels(r["input_ids"], r["labels"], r["parent"])
        assert c == int((targets != IGNORE_INDEX).sum())  # what a causal-LM loss sums over
    if not any(r["parent"] for r in rows):
        assert np.array_equal(count_trained(lab, off), counts)


@given(st.lists(st.one_of(linear_rows(), tree_rows()), min_size=1, max_size=4))
def test_stats_and_collated_batches_count_the_same_tokens(rows):
    lab, off = _flat(rows, "labels")
    par, par_off = _flat([{"parent": r.get("parent", [])} for r in rows], "parent")
    expected = int(count_trained(lab, off, par, par_off).sum())
    part = StatsPart()
    part.add_examples(np.diff(off), lab, ["chat"] * len(rows), [False] * len(rows), parent=(par, par_off))
    assert part.tokens_trained == expected
    assert num_trained_tokens(PaddingFreeCollator()(rows)) == expected
    linear = [r for r in rows if not r.get("parent")]
    if linear:
        lab, off = _flat(linear, "labels")
        assert num_trained_tokens(PaddingCollator(pad_token_id=0)(linear)) == int(count_trained(lab, off).sum())


def test_show_counts_trained_tokens_by_the_same_rule():
    tok = build_tokenizer("chatml")
    ids, labels = [5, 6, 7, 8], [5, IGNORE_INDEX, 7, 8]  # the label at position 0 is never a target
    assert "4 tokens, 2 trained" in render_html(tok, ids, labels)
    assert [p.trained for p in tree_paths(labels, [])] == [2]


def test_a_trained_first_token_is_not_counted_by_prepare_or_pack(tmp_path):
    """Example (found while unifying the rules): a text row on a tokenizer without BOS trains
    its first token's label. Before, ``stats.json`` counted that label (11 trained tokens) and
    ``sftdata pack`` did not (10); nothing predicts position 0, so 10 is right."""
    tok = build_tokenizer("chatml")
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "hello world, this is text"}) + "\n")
    ds = prepare(str(tmp_path / "in.jsonl"), tok, str(tmp_path / "out"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    labels = ds[0]["labels"]
    assert labels[0] != IGNORE_INDEX  # the case: a trained label at position 0
    _, report = pack_dataset(ds, 64)
    assert stats["tokens_trained"] == report.trained_tokens_in == sum(1 for y in labels[1:] if y != IGNORE_INDEX)
    assert stats["tokens_trained"] == sum(1 for y in labels if y != IGNORE_INDEX) - 1
