"""sftdata.masking.tree_fit: a tree over the limit is split into sub-trees that fit, never dropped whole."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata.masking.tree import IGNORE_INDEX, TrieBuilder, check_tree, depths, unroll
from sftdata.masking.tree_fit import FIT_RULES, fit_tree


@st.composite
def spanned_trees(draw, vocab: int = 9):
    """Tree rows whose sequences have several trained spans (turns) anywhere, not only a suffix."""
    tok = st.integers(1, vocab - 1)
    base = draw(st.lists(tok, min_size=1, max_size=30))
    b = TrieBuilder()
    seqs = [base] + [base[: draw(st.integers(0, len(base)))] + draw(st.lists(tok, min_size=1, max_size=12))
                     for _ in range(draw(st.integers(0, 4)))]
    for ids in seqs:
        flags = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
        b.add(ids, [t if f else IGNORE_INDEX for t, f in zip(ids, flags)])
    t = b.build()
    return {"input_ids": t.input_ids, "labels": t.labels, "parent": t.parent}


def _nodes(row):
    """Per token: (root path of tokens, depth, label, parent) of a row given as a dict/TreeRow."""
    ids = list(row["input_ids"] if isinstance(row, dict) else row.input_ids)
    lab = list(row["labels"] if isinstance(row, dict) else row.labels)
    par = list(row.get("parent", []) if isinstance(row, dict) else row.parent) or list(range(-1, len(ids) - 1))
    paths: list[tuple] = []
    for i in range(len(ids)):
        paths.append((paths[par[i]] if par[i] >= 0 else ()) + (ids[i],))
    return ids, lab, par, paths


def _turn_end_depth(lab, par, paths, i):
    """Depth of the last token of the trained run through token ``i`` (walking trained children)."""
    kids = {}
    for j, p in enumerate(par):
        if p >= 0 and lab[j] != IGNORE_INDEX:
            kids[p] = j
    while i in kids:
        i = kids[i]
    return len(paths[i]) - 1


def _owner_leaf_depth(par, paths, i):
    n = len(par)
    j = i
    while j + 1 < n and par[j + 1] == j:
        j += 1
    return len(paths[j]) - 1


@settings(max_examples=300, deadline=None)
@given(st.one_of(spanned_trees(), tree_rows(), linear_rows()), st.integers(1, 40), st.sampled_from(FIT_RULES))
def test_fit_tree_properties(row, L, rule):
    ids, lab, par, paths = _nodes(row)
    res = fit_tree(row["input_ids"], row["labels"], row.get("parent", []), L, rule)
    orig_nodes = Counter(paths)
    orig_trained = Counter((paths[i], lab[i]) for i in range(len(ids)) if lab[i] != IGNORE_INDEX and par[i] >= 0)
    out_trained: Counter = Counter()
    for r in res.rows:
        assert len(r.input_ids) <= L  # every output row fits
        check_tree(r.input_ids, r.labels, r.parent, r.position_ids)
        if r.parent:
            assert list(r.position_ids) == depths(r.parent).tolist()
        rid, rlab, rpar, rpaths = _nodes(r)
        trained_here = [i for i in range(len(rid)) if rlab[i] != IGNORE_INDEX and rpar[i] >= 0]
        assert trained_here, "a row without a trained token"
        for p in rpaths:  # every path of a sub-tree is a prefix of a path of the original
            assert orig_nodes[p] > 0
        for i in trained_here:
            out_trained[(rpaths[i], rlab[i])] += 1
    # each kept trained token keeps its path (tokens and depth) and label, and is trained once
    assert not (out_trained - orig_trained)
    assert sum(out_trained.values()) == res.trained_kept
    # which trained tokens must be kept
    trained_idx = [i for i in range(len(ids)) if lab[i] != IGNORE_INDEX and par[i] >= 0]
    if len(ids) <= L:
        expect = trained_idx
    elif rule == "truncate":
        expect = [i for i in trained_idx if len(paths[i]) - 1 < L]
    elif rule == "turns":
        expect = [i for i in trained_idx if _turn_end_depth(lab, par, paths, i) < L]
    else:
        expect = [i for i in trained_idx if _owner_leaf_depth(par, paths, i) < L]
    assert res.trained_kept == len(expect)
    assert Counter((paths[i], lab[i]) for i in expect) == out_trained
    assert res.keepable == sum(1 for i in trained_idx if len(paths[i]) - 1 < L)
    assert res.tokens_out == sum(len(r.input_ids) for r in res.rows)


def test_long_trunk_keeps_its_short_branches():
    """The bug of issue 17: a tree whose first (DFS) path is over L lost every branch."""
    trunk = list(range(1, 21))  # 20 tokens, untrained
    b = TrieBuilder()
    b.add(trunk, [IGNORE_INDEX] * 20)
    b.add(trunk[:4] + [30, 31], [IGNORE_INDEX] * 4 + [30, 31])  # a turn at depth 4..5
    b.add(trunk[:6] + [40, 41], [IGNORE_INDEX] * 6 + [40, 41])  # a turn at depth 6..7
    t = b.build()
    res = fit_tree(t.input_ids, t.labels, t.parent, 10, "turns")
    assert res.trained_kept == res.trained_in == 4
    assert len(res.rows) == 1 and len(res.rows[0].input_ids) == 6 + 2 + 2  # the trunk's untrained tail is gone
    res = fit_tree(t.input_ids, t.labels, t.parent, 8, "turns")  # both branches no longer fit in one row
    assert res.split and res.trained_kept == 4
    assert sorted(r.input_ids for r in res.rows) == [[1, 2, 3, 4, 5, 6, 40, 41], [1, 2, 3, 4, 30, 31]]


def test_split_repeats_the_shared_context():
    prefix = [1, 2, 3, 4]
    b = TrieBuilder()
    b.add(prefix + [10, 11, 12], [IGNORE_INDEX] * 4 + [10, 11, 12])
    b.add(prefix + [20, 21, 22], [IGNORE_INDEX] * 4 + [20, 21, 22])
    t = b.build()
    res = fit_tree(t.input_ids, t.labels, t.parent, 8, "turns")
    assert [r.input_ids for r in res.rows] == [prefix + [10, 11, 12], prefix + [20, 21, 22]]
    assert res.split and res.trained_kept == 6 and not res.truncated


def test_turn_over_the_limit_is_cut_whole():
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    labels = [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5, 6, 7, IGNORE_INDEX]
    res = fit_tree(ids, labels, [], 6, "turns")
    assert [r.input_ids for r in res.rows] == [[1, 2, 3]]
    assert res.truncated and res.trained_kept == 2 and res.keepable == 4
    assert fit_tree(ids, labels, [], 6, "truncate").rows[0].input_ids == [1, 2, 3, 4, 5, 6]
    assert fit_tree(ids, labels, [], 6, "drop").rows == []


def test_bad_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        fit_tree([1, 2], [IGNORE_INDEX, 2], [], 1, "cut")


@settings(max_examples=100, deadline=None)
@given(st.one_of(spanned_trees(), tree_rows()), st.integers(1, 40), st.sampled_from(FIT_RULES))
def test_fit_tree_counts(row, L, rule):
    res = fit_tree(row["input_ids"], row["labels"], row["parent"], L, rule)
    assert res.tokens_unique <= len(row["input_ids"]) and res.tokens_out >= res.tokens_unique
    assert res.trained_kept <= res.keepable <= res.trained_in or rule != "truncate"
    assert res.trained_kept <= res.trained_in
    if len(row["input_ids"]) <= L and res.trained_in:
        assert res.leaves_cut == 0 and res.tokens_out == len(row["input_ids"])


def test_prepare_splits_a_tree_like_pack():
    """prepare's max_length applies the same fit_tree: a tree over the limit comes back as sub-trees."""
    from sftdata import Conversation, Encoder, Message
    from sftdata.masking.encode import EncodeStats
    from sftdata.testing.tokenizers import build_tokenizer

    qwen3 = build_tokenizer("qwen3")
    msgs = []
    for i in range(4):
        msgs += [Message("user", f"question {i} " * 4), Message("assistant", f"answer {i} " * 4)]
    conv = Conversation(tuple(msgs))
    (full,) = Encoder(qwen3).encode(conv)
    assert full.num_paths == 4
    longest = max(len(ids) for ids, _ in unroll(full))
    limit = longest  # every sequence fits, the tree does not
    assert len(full.input_ids) > limit
    cut = Encoder(qwen3, max_length=limit, truncation="turns").encode(conv)
    want = fit_tree(full.input_ids, full.labels, full.parent, limit, "turns")
    assert [(r.input_ids, r.labels, r.parent) for r in cut] == [(r.input_ids, r.labels, r.parent) for r in want.rows]
    assert len(cut) > 1 and all(len(r.input_ids) <= limit for r in cut)
    assert want.trained_kept == want.trained_in  # nothing trained is lost: the tree was split
    assert sum(sum(1 for y in r.labels if y != IGNORE_INDEX) for r in cut) == sum(1 for y in full.labels if y != IGNORE_INDEX)
