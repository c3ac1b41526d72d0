"""mbs's subset completion (sftdata.packing._mbs.plan_subset): valid bins, each filled best."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.packing import lower_bound_l2, plan_bins
from sftdata.packing._mbs import plan_subset


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=9), st.integers(40, 60))
def test_each_bin_is_the_longest_item_plus_the_best_subset(lengths, L):
    bins = plan_subset(np.asarray(lengths), L)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    remaining = list(range(len(lengths)))
    for b in bins:
        assert sum(lengths[i] for i in b) <= L
        assert lengths[b[0]] == max(lengths[i] for i in remaining)
        others = [i for i in remaining if i != b[0]]
        r = L - lengths[b[0]]
        best = max((sum(lengths[i] for i in c) for k in range(len(others) + 1) for c in combinations(others, k)
                    if sum(lengths[i] for i in c) <= r), default=0)
        assert sum(lengths[i] for i in b[1:]) == best  # brute force over every subset
        remaining = [i for i in remaining if i not in b]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_mbs_is_never_worse_than_the_subset_plan(seed):
    # agent-trace-like tree units: a few hundred items of L/8..L/2, 4-5 per bin
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4000, 16000, int(rng.integers(20, 120)))
    plan = plan_bins(lengths, 32768)
    assert plan.num_bins <= len(plan_subset(lengths, 32768))
    assert plan.num_bins >= lower_bound_l2(lengths, 32768)
    assert sorted(plan.order.tolist()) == list(range(lengths.size))
    assert all(lengths[plan.order[a:b]].sum() <= 32768 for a, b in zip(plan.offsets[:-1], plan.offsets[1:]))
