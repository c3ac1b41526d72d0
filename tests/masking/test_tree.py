"""Properties of prefix-tree rows (sftdata.masking.tree): what is trained, and in which context."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.masking.tree import (
    common_prefix_len,
    IGNORE_INDEX,
    TrieBuilder,
    check_tree,
    depths,
    linear_length,
    parent_from_depths,
    shift_labels,
    subtree_end,
    unroll,
)


def _ancestors(parent, i):
    out = []
    while i >= 0:
        out.append(i)
        i = parent[i]
    return out[::-1]


def trained_pairs_of_sequences(seqs):
    """(context tokens, target token) of every trained position with a predictor."""
    out = Counter()
    for ids, labels in seqs:
        for t in range(1, len(ids)):
            if labels[t] != IGNORE_INDEX:
                out[(tuple(ids[:t]), ids[t])] += 1
    return out


def trained_pairs_of_tree(row):
    if not row.parent:
        return trained_pairs_of_sequences([(row.input_ids, row.labels)])
    out = Counter()
    for i, y in enumerate(row.labels):
        if y != IGNORE_INDEX and row.parent[i] >= 0:
            ctx = tuple(row.input_ids[k] for k in _ancestors(row.parent, row.parent[i]))
            out[(ctx, y)] += 1
    return out


@st.composite
def sequence_sets(draw):
    """Sequences sharing prefixes (as the renderings of one conversation do), each trained on a
    suffix or on nothing (the training rendering F is inserted untrained first)."""
    alphabet = st.integers(0, 5)
    base = draw(st.lists(alphabet, min_size=1, max_size=30))
    seqs = [(base, [IGNORE_INDEX] * len(base))]
    for _ in range(draw(st.integers(0, 5))):
        src = draw(st.sampled_from([s for s, _ in seqs]))
        cut = draw(st.integers(0, len(src)))
        tail = draw(st.lists(alphabet, min_size=0 if cut else 1, max_size=12))
        ids = src[:cut] + tail
        if not ids:
            continue
        start = draw(st.integers(0, len(ids)))
        labels = [IGNORE_INDEX] * start + ids[start:]
        seqs.append((ids, labels))
    return seqs


def _dedupe_training(seqs):
    """The builder trains every (context, token) once: drop repeated trainings from the input."""
    seen = set()
    out = []
    for ids, labels in seqs:
        lab = list(labels)
        for t in range(len(ids)):
            if lab[t] != IGNORE_INDEX:
                key = tuple(ids[: t + 1])
                if key in seen:
                    lab[t] = IGNORE_INDEX
                seen.add(key)
        out.append((ids, lab))
    return out


@settings(max_examples=300, deadline=None)
@given(sequence_sets())
def test_tree_trains_each_pair_once_in_its_context(seqs):
    seqs = _dedupe_training(seqs)
    b = TrieBuilder()
    for ids, labels in seqs:
        b.add(ids, labels)
    row = b.build()
    check_tree(row.input_ids, row.labels, row.parent, row.position_ids)
    assert trained_pairs_of_tree(row) == trained_pairs_of_sequences(seqs)
    # every inserted sequence is a root-to-node path of the tree
    paths = unroll(row)
    for ids, _ in seqs:
        assert any(p[: len(ids)] == ids for p, _ in paths)
    # the unrolled linear examples train exactly the same pairs
    assert trained_pairs_of_sequences(paths) == trained_pairs_of_tree(row)
    assert row.linear_length == sum(len(p) for p, _ in paths)
    assert row.num_paths == len(paths)
    assert len(row.input_ids) <= row.linear_length


@settings(max_examples=200, deadline=None)
@given(sequence_sets())
def test_tree_arrays_agree(seqs):
    seqs = _dedupe_training(seqs)
    b = TrieBuilder()
    for ids, labels in seqs:
        b.add(ids, labels)
    row = b.build()
    if not row.parent:
        assert subtree_end([], len(row.input_ids)).tolist() == [len(row.input_ids)] * len(row.input_ids)
        return
    par = row.parent
    assert depths(par).tolist() == row.position_ids
    end = subtree_end(par)
    n = len(par)
    # brute force: k is an ancestor-or-self of q  <=>  k <= q < end[k]
    for q in range(n):
        anc = set(_ancestors(par, q))
        for k in range(n):
            assert (k in anc) == (k <= q < end[k])
    shift = shift_labels(row.input_ids, row.labels, par)
    for i, y in enumerate(row.labels):
        if y != IGNORE_INDEX and par[i] >= 0:
            assert shift[par[i]] == y
    assert int((shift != IGNORE_INDEX).sum()) == sum(1 for i, y in enumerate(row.labels) if y != IGNORE_INDEX and par[i] >= 0)


def test_single_path_is_a_plain_row():
    b = TrieBuilder()
    b.add([1, 2, 3, 4], [IGNORE_INDEX] * 4)
    b.add([1, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, 3])  # a turn trained in place
    row = b.build()
    assert row.parent == [] and row.position_ids == []
    assert row.input_ids == [1, 2, 3, 4] and row.labels == [IGNORE_INDEX, IGNORE_INDEX, 3, IGNORE_INDEX]
    assert unroll(row) == [([1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, 3, IGNORE_INDEX])]


def test_branch_example_from_docstring():
    s = [10, 11, 10, 12, 1]
    b = TrieBuilder()
    b.add(s + [20, 1], [IGNORE_INDEX] * 7)  # the training rendering F, its turn rewritten later
    b.add(s + [21, 1, 2], [IGNORE_INDEX] * 5 + [21, 1, 2])  # P_k + G_k as the model generates it
    row = b.build()
    assert row.input_ids == s + [20, 1, 21, 1, 2]
    assert row.parent == [-1, 0, 1, 2, 3, 4, 5, 4, 7, 8]
    assert row.position_ids == [0, 1, 2, 3, 4, 5, 6, 5, 6, 7]
    assert subtree_end(row.parent).tolist() == [10, 10, 10, 10, 10, 7, 7, 10, 10, 10]
    assert row.linear_length == 7 + 8 and row.num_paths == 2


def test_node_trained_twice_branches_instead():
    b = TrieBuilder()
    b.add([1, 2, 3], [IGNORE_INDEX, 2, 3])
    b.add([1, 2, 3, 4], [IGNORE_INDEX, 2, 3, 4])  # would train 2 and 3 a second time
    row = b.build()
    check_tree(row.input_ids, row.labels, row.parent, row.position_ids)
    assert sum(1 for y in row.labels if y != IGNORE_INDEX) == 5


def test_two_trained_children_branch_above():
    b = TrieBuilder()
    b.add([1, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, 3])
    b.add([1, 2, 4], [IGNORE_INDEX, IGNORE_INDEX, 4])  # 2 would predict both 3 and 4
    row = b.build()
    check_tree(row.input_ids, row.labels, row.parent, row.position_ids)
    shift = shift_labels(row.input_ids, row.labels, row.parent)
    assert sorted(int(x) for x in shift if x != IGNORE_INDEX) == [3, 4]


@pytest.mark.parametrize(
    "parent,msg",
    [([0, 0], "earlier index"), ([-1, 0, 1, 0, 2], "pre-order"), ([-1, 0, 0], None)],
)
def test_check_tree_names_the_invariant(parent, msg):
    ids = list(range(len(parent)))
    if msg is None:
        check_tree(ids, [IGNORE_INDEX] * len(ids), parent)
        return
    with pytest.raises(ValueError, match=msg):
        check_tree(ids, [IGNORE_INDEX] * len(ids), parent)


def test_check_tree_rejects_two_trained_children():
    with pytest.raises(ValueError, match="two trained children"):
        check_tree([5, 6, 7], [IGNORE_INDEX, 6, 7], [-1, 0, 0])


def test_subtree_end_of_a_forest():
    # two roots: [0,1,2] and [3,4] (a packed row)
    par = np.array([-1, 0, 1, -1, 3])
    assert subtree_end(par).tolist() == [3, 3, 3, 5, 5]


@settings(max_examples=200, deadline=None)
@given(sequence_sets(), st.integers(0, 3))
def test_parent_from_depths_recovers_the_tree(seqs, n_linear):
    """Depths alone describe a DFS-ordered row (what a collator sees when a trainer drops `parent`),
    also when the row is packed with linear sequences."""
    b = TrieBuilder()
    for ids, labels in _dedupe_training(seqs):
        b.add(ids, labels)
    row = b.build()
    n = len(row.input_ids)
    par = np.asarray(row.parent) if row.parent else np.arange(n) - 1
    par[0] = -1
    pieces, offset = [], 0
    for k in [n] + [3 + i for i in range(n_linear)]:  # the tree, then linear sequences
        p = par.copy() if k == n and offset == 0 else np.arange(k) - 1
        p[0] = -1
        pieces.append(np.where(p >= 0, p + offset, -1))
        offset += k
    packed = np.concatenate(pieces)
    assert parent_from_depths(depths(packed)).tolist() == packed.tolist()
    assert linear_length(row.parent, n) == row.linear_length


def test_parent_from_depths_rejects_impossible_depths():
    assert parent_from_depths([0, 1, 2, 1, 2, 0, 1]).tolist() == [-1, 0, 1, 0, 3, -1, 5]
    with pytest.raises(ValueError, match="start at 0"):
        parent_from_depths([1, 2])
    with pytest.raises(ValueError, match="no parent"):
        parent_from_depths([0, 1, 3])


def test_subtree_end_cost_is_linear_in_sequences():
    """Regression: the child-run scan was quadratic in the number of runs (8,000 packed sequences
    took 0.15 s); runs without branches are now one vectorised pass. Checked by value here."""
    par = np.arange(8000 * 4) - 1
    par[::4] = -1
    end = subtree_end(par)
    assert end.tolist() == np.repeat(np.arange(4, 8000 * 4 + 1, 4), 4).tolist()
    assert depths(par).tolist() == np.tile(np.arange(4), 8000).tolist()


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.lists(st.integers(0, 3), max_size=300),
    a=st.lists(st.integers(0, 3), max_size=300),
    b=st.lists(st.integers(0, 3), max_size=300),
    data=st.data(),
)
def test_common_prefix_len_matches_a_scan(prefix, a, b, data):
    """The galloping/bisecting compare equals a token-by-token scan, from any known start
    up to the true common prefix (windows of 64 and more are crossed by the long prefixes)."""
    x, y = prefix + a, prefix + b
    true = _lcp(x, y)
    start = data.draw(st.integers(0, true), label="start")
    assert common_prefix_len(x, y, start) == true
    assert common_prefix_len(x, y) == true


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_joined_views_build_the_same_tree_as_lists(data):
    """A sequence given as ``Joined(F, shared, tail)`` (F's first tokens by reference) builds the
    same tree row as the same sequence given as a list, and ``Joined`` reads like its list."""
    from sftdata.masking.tree import Joined, TrieBuilder

    f = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=30))
    seqs = []
    for _ in range(data.draw(st.integers(1, 6))):
        shared = data.draw(st.integers(0, len(f)))
        prompt_tail = data.draw(st.lists(st.integers(0, 5), max_size=5))
        gen = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))
        seqs.append((shared, prompt_tail, gen))
    a, b = TrieBuilder(), TrieBuilder()
    a.add(f, [-100] * len(f), trained_from=len(f))
    b.add(f, [-100] * len(f), trained_from=len(f))
    for shared, prompt_tail, gen in seqs:
        n = shared + len(prompt_tail)
        ids = Joined(f, shared, prompt_tail + gen)
        labels = Joined(None, shared, [-100] * len(prompt_tail) + gen)
        assert ids.tolist() == f[:shared] + prompt_tail + gen and len(ids) == n + len(gen)
        lo, hi = sorted(data.draw(st.tuples(st.integers(-3, len(ids) + 3), st.integers(-3, len(ids) + 3))))
        assert ids[lo:hi] == ids.tolist()[lo:hi] and labels[lo:hi] == labels.tolist()[lo:hi]
        assert [ids[i] for i in range(-len(ids), len(ids))] == ids.tolist() * 2
        assert a.add(ids, labels, trained_from=n, known_prefix=shared) == b.add(ids.tolist(), labels.tolist(), trained_from=n)
    assert a.build() == b.build()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_turn_check_on_joined_sequences_equals_the_whole_compare(data):
    """``check_turn_paths`` gives the same verdict for sequences given as ``Joined`` views (the
    shared part checked through the nodes that agree with F) and as lists (compared whole), on
    correct rows and on rows with one token or label changed."""
    from sftdata.masking.tree import Joined, TreeRow, TrieBuilder
    from sftdata.masking.turn_check import check_turn_paths

    f = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=25))
    b = TrieBuilder()
    b.add(f, [-100] * len(f), trained_from=len(f))
    seqs = []
    for _ in range(data.draw(st.integers(1, 5))):
        shared = data.draw(st.integers(0, len(f)))
        prompt_tail = data.draw(st.lists(st.integers(0, 3), max_size=4))
        gen = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
        n = shared + len(prompt_tail)
        ids = Joined(f, shared, prompt_tail + gen)
        labels = Joined(None, shared, [-100] * len(prompt_tail) + gen)
        b.add(ids, labels, trained_from=n, known_prefix=shared)
        seqs.append((ids, labels, n))
    row = b.build()
    as_lists = [(i.tolist(), l.tolist(), n) for i, l, n in seqs]
    assert check_turn_paths(row, seqs) == check_turn_paths(row, as_lists)
    if data.draw(st.booleans()):  # break the row: one token (or one label) changed
        i = data.draw(st.integers(0, len(row.input_ids) - 1))
        ids, labels = list(row.input_ids), list(row.labels)
        if labels[i] != -100 and data.draw(st.booleans()):
            labels[i] = -100
        else:
            ids[i] = 9
            if labels[i] != -100:
                labels[i] = 9
        bad = TreeRow(ids, labels, row.parent, row.position_ids, row.linear_length, row.num_paths)
        assert (check_turn_paths(bad, seqs) is None) == (check_turn_paths(bad, as_lists) is None)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=0, max_size=8), data=st.data())
def test_last_nodes_of_a_path_given_as_runs(lengths, data):
    """turn_check._last_nodes: the last ``count`` indices of the path the runs spell, in order."""
    from sftdata.masking.turn_check import _last_nodes

    runs, start = [], 0
    for n in lengths:
        start += data.draw(st.integers(0, 3))  # runs need not be adjacent in the row
        runs.append((start, start + n))
        start += n
    path = [i for s, e in runs for i in range(s, e)]
    count = data.draw(st.integers(0, len(path) + 2))
    assert _last_nodes(runs, count) == path[max(0, len(path) - count):]


def test_build_serialises_deeply_nested_branches():
    """Each sequence branches off the previous one's own chain: 1,500 nested branches, past
    Python's recursion limit, serialise in pre-order (the builder used to recurse per chain)."""
    depth = 1500
    b = TrieBuilder()
    seqs = []
    for k in range(depth):
        ids = [1] + [2 * i + 3 for i in range(k)] + [2 * k + 2]
        labels = [IGNORE_INDEX] * (len(ids) - 1) + ids[-1:]
        b.add(ids, labels, trained_from=len(ids) - 1)
        seqs.append((ids, labels))
    row = b.build()
    check_tree(row.input_ids, row.labels, row.parent, row.position_ids)
    assert max(row.position_ids) == depth
    assert trained_pairs_of_tree(row) == trained_pairs_of_sequences(seqs)
    assert row.num_paths == depth


def test_built_tree_leaves_no_cycle_holding_the_builder():
    """After build() the builder (and the token lists it holds) is freed by reference counting,
    not left to the cyclic garbage collector (a recursive closure used to keep it alive)."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        b = TrieBuilder()
        b.add([1, 2, 3, 4], [IGNORE_INDEX] * 3 + [4], trained_from=3)
        b.add([1, 2, 5], [IGNORE_INDEX, IGNORE_INDEX, 5], trained_from=2)
        row = b.build()
        assert row.num_paths == 2
        held = weakref.ref(b)
        del b
        assert held() is None
    finally:
        gc.enable()
