"""Samplers: coverage per epoch across ranks, equal batch counts, budgets, exact resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.collate.samplers import LengthGroupedSampler, TokenBudgetBatchSampler

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def lengths_st(max_n=200, max_len=300):
    return st.lists(st.integers(1, max_len), min_size=1, max_size=max_n)


def per_rank(make, num_replicas, epoch=0):
    out = []
    for r in range(num_replicas):
        s = make(r)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


# ----------------------------------------------------------------------------- LengthGroupedSampler


@FAST
@given(lengths_st(), st.integers(1, 9), st.integers(1, 4), st.integers(1, 5), st.booleans(), st.booleans(),
       st.integers(0, 3))
def test_length_grouped_covers_every_index(lengths, bs, replicas, mult, shuffle, drop_last, epoch):
    n = len(lengths)
    make = lambda r: LengthGroupedSampler(  # noqa: E731
        lengths, bs, mega_batch_mult=mult, shuffle=shuffle, seed=7, num_replicas=replicas, rank=r, drop_last=drop_last
    )
    streams = per_rank(make, replicas, epoch)
    assert len({len(s) for s in streams}) == 1, "every rank must get the same number of indices"
    assert all(len(s) == len(make(0)) for s in streams)
    assert all(len(s) % bs == 0 for s in streams), "only full batches"
    counts = Counter(i for s in streams for i in s)
    g = bs * replicas
    if drop_last:
        assert sum(counts.values()) == (n // g) * g and max(counts.values(), default=1) == 1
    else:
        assert set(counts) == set(range(n))
        assert sum(counts.values()) == -(-n // g) * g
        if n % g == 0:
            assert set(counts.values()) == {1}, "each index exactly once"
    # deterministic
    assert streams == per_rank(make, replicas, epoch)


def test_length_grouped_groups_lengths_and_reshuffles_per_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1000, 4000)
    s = LengthGroupedSampler(lengths, 16, mega_batch_mult=32)
    idx = np.array(list(s)).reshape(-1, 16)
    padded = (lengths[idx].max(1) * 16).sum()
    rand = rng.permutation(lengths.size).reshape(-1, 16)
    padded_random = (lengths[rand].max(1) * 16).sum()
    assert padded < 0.7 * padded_random
    assert lengths[idx[0]].max() == lengths.max(), "longest batch first"
    s.set_epoch(1)
    assert list(s) != idx.reshape(-1).tolist()


def test_length_grouped_global_batches_split_across_ranks():
    lengths = np.arange(1, 65)
    a = LengthGroupedSampler(lengths, 4, num_replicas=2, rank=0, mega_batch_mult=100)
    b = LengthGroupedSampler(lengths, 4, num_replicas=2, rank=1, mega_batch_mult=100)
    ba, bb = np.array(list(a)).reshape(-1, 4), np.array(list(b)).reshape(-1, 4)
    # the two ranks' batches at the same step come from one sorted global batch: similar lengths
    assert (np.abs(lengths[ba].mean(1) - lengths[bb].mean(1)) <= 8).all()


@FAST
@given(lengths_st(), st.integers(1, 6), st.integers(1, 3), st.data())
def test_length_grouped_resumes_exactly(lengths, bs, replicas, data):
    rank = data.draw(st.integers(0, replicas - 1))
    epoch = data.draw(st.integers(0, 2))
    make = lambda: LengthGroupedSampler(lengths, bs, seed=3, num_replicas=replicas, rank=rank)  # noqa: E731
    full = make()
    full.set_epoch(epoch)
    expected = list(full)
    k = data.draw(st.integers(0, len(expected)))
    s = make()
    s.set_epoch(epoch)
    it = iter(s)
    head = [next(it) for _ in range(k)]
    state = s.state_dict()
    assert state["epoch"] == epoch and state["num_yielded"] == k
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # same epoch: the resume position is kept
    assert head + list(resumed) == expected
    assert list(resumed) == expected, "the next iteration starts the epoch from the beginning"


def test_state_dict_rejects_a_different_configuration():
    s = LengthGroupedSampler([1, 2, 3], 2)
    with pytest.raises(ValueError):
        LengthGroupedSampler([1, 2, 3, 4], 2).load_state_dict(s.state_dict())
    with pytest.raises(ValueError):
        LengthGroupedSampler([1, 2, 3], 3).load_state_dict(s.state_dict())


def test_set_epoch_to_another_epoch_clears_resume():
    s = LengthGroupedSampler(list(range(1, 41)), 4)
    s.load_state_dict({"epoch": 0, "num_yielded": 8})
    s.set_epoch(1)
    assert len(list(s)) == len(s)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        LengthGroupedSampler([], 2)
    with pytest.raises(ValueError):
        LengthGroupedSampler([1], 0)
    with pytest.raises(ValueError):
        LengthGroupedSampler([1], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        TokenBudgetBatchSampler([1], 0)


# ----------------------------------------------------------------------------- TokenBudgetBatchSampler


@FAST
@given(lengths_st(), st.integers(1, 600), st.booleans(), st.integers(1, 4), st.booleans(), st.booleans(),
       st.integers(1, 4))
def test_token_budget_batches(lengths, max_tokens, padding_free, replicas, shuffle, drop_last, mult):
    lengths_arr = np.asarray(lengths)
    make = lambda r: TokenBudgetBatchSampler(  # noqa: E731
        lengths, max_tokens, padding_free=padding_free, shuffle=shuffle, seed=1, num_replicas=replicas, rank=r,
        drop_last=drop_last, mega_batch_mult=mult,
    )
    streams = per_rank(make, replicas)
    assert len({len(s) for s in streams}) == 1, "every rank must get the same number of batches"
    assert all(len(s) == len(make(r)) for r, s in enumerate(streams))
    for batch in (b for s in streams for b in s):
        assert batch, "no empty batch"
        cost = TokenBudgetBatchSampler.batch_cost(lengths_arr[batch], padding_free)
        assert cost <= max_tokens or len(batch) == 1, "over budget only for a single long sequence"
    global_plan = make(0).global_batches()
    assert sorted(map(tuple, (b for s in streams for b in s))) == sorted(map(tuple, global_plan))
    counts = Counter(i for b in global_plan for i in b)
    if drop_last:
        assert max(counts.values(), default=1) == 1
    else:
        assert set(counts) == set(range(len(lengths)))
        # only whole batches are repeated, fewer than num_replicas of them
        batches = Counter(map(tuple, global_plan))
        assert sum(c - 1 for c in batches.values()) < replicas
        if len(global_plan) == len(set(map(tuple, global_plan))):
            assert set(counts.values()) == {1}


def test_token_budget_fills_padding_free_batches():
    lengths = np.random.default_rng(0).integers(50, 1500, 3000)
    s = TokenBudgetBatchSampler(lengths, 8192)
    sums = np.array([lengths[b].sum() for b in s])
    assert (sums <= 8192).all()
    assert sums.sum() / (len(sums) * 8192) > 0.97
    padded = TokenBudgetBatchSampler(lengths, 8192, padding_free=False)
    costs = np.array([lengths[b].max() * len(b) for b in padded])
    assert (costs <= 8192).all()
    assert lengths.sum() / costs.sum() > 0.85, "sorted mega-batches keep padding low"


def test_token_budget_long_sequence_gets_own_batch():
    s = TokenBudgetBatchSampler([10, 5000, 20, 30], 100, padding_free=True, shuffle=False)
    batches = list(s)
    assert [1] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]


@FAST
@given(lengths_st(), st.integers(20, 400), st.booleans(), st.integers(1, 3), st.data())
def test_token_budget_resumes_exactly(lengths, max_tokens, padding_free, replicas, data):
    rank = data.draw(st.integers(0, replicas - 1))
    epoch = data.draw(st.integers(0, 2))
    make = lambda: TokenBudgetBatchSampler(  # noqa: E731
        lengths, max_tokens, padding_free=padding_free, seed=5, num_replicas=replicas, rank=rank
    )
    full = make()
    full.set_epoch(epoch)
    expected = list(full)
    k = data.draw(st.integers(0, len(expected)))
    s = make()
    s.set_epoch(epoch)
    it = iter(s)
    head = [next(it) for _ in range(k)]
    resumed = make()
    resumed.load_state_dict(s.state_dict())
    assert resumed.epoch == epoch
    assert head + list(resumed) == expected


def test_token_budget_epochs_differ_and_are_deterministic():
    lengths = np.random.default_rng(1).integers(1, 500, 500)
    a = TokenBudgetBatchSampler(lengths, 2048, seed=0)
    b = TokenBudgetBatchSampler(lengths, 2048, seed=0)
    assert list(a) == list(b)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0


def test_with_dataloader():
    import torch
    from torch.utils.data import DataLoader

    data = [{"input_ids": list(range(n)), "labels": list(range(n))} for n in range(1, 41)]
    lengths = [len(d["input_ids"]) for d in data]
    from sftdata.collate.collators import PaddingFreeCollator

    loader = DataLoader(data, batch_sampler=TokenBudgetBatchSampler(lengths, 64), collate_fn=PaddingFreeCollator())
    seen = 0
    for batch in loader:
        assert batch["input_ids"].shape[1] <= 64 or batch["cu_seq_lens_q"].numel() == 2
        seen += int(batch["cu_seq_lens_q"].numel() - 1)
    assert seen == 40
    loader = DataLoader(data, batch_size=4, sampler=LengthGroupedSampler(lengths, 4), collate_fn=lambda x: x)
    assert sum(len(b) for b in loader) == 40
    assert isinstance(next(iter(loader))[0]["input_ids"], list) and torch.is_tensor(torch.tensor(0))
