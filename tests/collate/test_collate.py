"""Collators: shapes, dtypes, padding, and position_ids ⇔ seq_lengths ⇔ cu_seq_lens consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import (
    PaddingCollator,
    PaddingFreeCollator,
    num_trained_tokens,
    seq_lengths_from_position_ids,
)
from sftdata.packing import pack_dataset

IGNORE = -100
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seq_st(max_len=40):
    return st.integers(1, max_len).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 500), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
        ).map(lambda t: {"input_ids": t[0], "labels": [x if m else IGNORE for x, m in zip(*t)]})
    )


def packed_row(seqs):
    return {
        "input_ids": [t for s in seqs for t in s["input_ids"]],
        "labels": [t for s in seqs for t in s["labels"]],
        "seq_lengths": [len(s["input_ids"]) for s in seqs],
        "position_ids": [p for s in seqs for p in range(len(s["input_ids"]))],
    }


# ----------------------------------------------------------------------------- padding


def test_padding_collator_basic():
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = PaddingCollator(0)(rows)
    assert set(b) == {"input_ids", "attention_mask", "labels", "position_ids"}
    for v in b.values():
        assert v.dtype == torch.int64 and v.shape == (2, 3)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert b["position_ids"].tolist() == [[0, 1, 2], [0, 1, 2]]


@FAST
@given(st.lists(seq_st(), min_size=1, max_size=8), st.sampled_from([None, 1, 8, 64]), st.sampled_from([None, 5, 100]),
       st.sampled_from(["list", "numpy", "torch"]))
def test_padding_collator_properties(seqs, multiple, max_length, kind):
    conv = {"list": list, "numpy": np.asarray, "torch": torch.tensor}[kind]
    rows = [{"input_ids": conv(s["input_ids"]), "labels": conv(s["labels"])} for s in seqs]
    b = PaddingCollator(3, pad_to_multiple_of=multiple, max_length=max_length)(rows)
    lens = [min(len(s["input_ids"]), max_length or 10**9) for s in seqs]
    B, T = b["input_ids"].shape
    assert B == len(seqs) and T >= max(lens) and T % (multiple or 1) == 0 and T < max(lens) + (multiple or 1)
    for i, (s, n) in enumerate(zip(seqs, lens)):
        assert b["input_ids"][i, :n].tolist() == s["input_ids"][:n]
        assert b["labels"][i, :n].tolist() == s["labels"][:n]
        assert (b["input_ids"][i, n:] == 3).all() and (b["labels"][i, n:] == IGNORE).all()
        assert b["attention_mask"][i].tolist() == [1] * n + [0] * (T - n)  # right padding only


def test_padding_collator_defaults_labels_and_refuses_packed_rows():
    b = PaddingCollator(0)([{"input_ids": [1, 2]}])
    assert b["labels"].tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="PaddingFreeCollator"):
        PaddingCollator(0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "seq_lengths": [1, 2]}])
    with pytest.raises(ValueError, match="PaddingFreeCollator"):  # a trainer dropped seq_lengths
        PaddingCollator(0)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 0, 1]}])
    with pytest.raises(ValueError):
        PaddingCollator(0)([{"input_ids": [1, 2, 3], "labels": [1, 2]}])
    with pytest.raises(ValueError):
        PaddingCollator(None)


# ----------------------------------------------------------------------------- padding-free


def check_padding_free(b, seqs, multiple=None):
    """The invariants of a padding-free batch built from ``seqs`` (in order)."""
    lens = [len(s["input_ids"]) for s in seqs]
    total = sum(lens)
    T = b["input_ids"].shape[1]
    assert b["input_ids"].shape == b["labels"].shape == b["position_ids"].shape == (1, T)
    assert b["input_ids"].dtype == b["labels"].dtype == b["position_ids"].dtype == torch.int64
    assert "attention_mask" not in b, "an attention mask would disable packed-sequence detection"
    assert T % (multiple or 1) == 0 and total <= T < total + (multiple or 1)
    cu = b["cu_seq_lens_q"]
    assert cu.dtype == torch.int32 and cu.dim() == 1
    assert torch.equal(cu, b["cu_seq_lens_k"])
    n_seg = len(seqs) + (1 if T > total else 0)
    assert cu.shape == (n_seg + 1,)
    assert cu[0] == 0 and cu[-1] == T and (cu.diff() > 0).all()
    assert cu[: len(seqs) + 1].tolist() == np.concatenate([[0], np.cumsum(lens)]).tolist()
    seg = cu.diff().tolist()
    assert isinstance(b["max_length_q"], int) and b["max_length_q"] == b["max_length_k"] == max(seg)
    # position_ids <=> seq_lengths <=> cu_seq_lens
    assert seq_lengths_from_position_ids(b["position_ids"][0]).tolist() == seg
    assert b["position_ids"][0].tolist() == [p for n in seg for p in range(n)]
    flat_ids = [t for s in seqs for t in s["input_ids"]]
    assert b["input_ids"][0, :total].tolist() == flat_ids
    labels = b["labels"][0].tolist()
    for start, n, s in zip(cu.tolist(), lens, seqs):
        assert labels[start] == IGNORE, "first label of every sequence is masked"
        assert labels[start + 1 : start + n] == list(s["labels"][1:])
    assert all(x == IGNORE for x in labels[total:])
    if "seq_idx" in b:
        assert b["seq_idx"].dtype == torch.int32 and b["seq_idx"].shape == (1, T)
        assert b["seq_idx"][0].tolist() == [i for i, n in enumerate(seg) for _ in range(n)]
    assert b.get("use_cache") is False


@FAST
@given(st.lists(st.lists(seq_st(), min_size=1, max_size=4), min_size=1, max_size=5),
       st.sampled_from([None, 1, 16, 128]), st.booleans(), st.sampled_from(["seq_lengths", "position_ids", "single"]))
def test_padding_free_properties(groups, multiple, seq_idx, row_kind):
    """Rows that are packed (several sequences) or single, in any mix, collate to one consistent row."""
    rows, seqs = [], []
    for g in groups:
        if row_kind == "single" or len(g) == 1:
            rows.extend({"input_ids": s["input_ids"], "labels": s["labels"]} for s in g)
        else:
            r = packed_row(g)
            if row_kind == "position_ids":
                del r["seq_lengths"]
            rows.append(r)
        seqs.extend(g)
    b = PaddingFreeCollator(return_seq_idx=seq_idx, pad_to_multiple_of=multiple, pad_token_id=9)(rows)
    check_padding_free(b, seqs, multiple)
    if multiple:
        total = sum(len(s["input_ids"]) for s in seqs)
        assert (b["input_ids"][0, total:] == 9).all()
    # a packed row gives exactly the batch its sequences give one by one
    singles = PaddingFreeCollator(return_seq_idx=seq_idx, pad_to_multiple_of=multiple, pad_token_id=9)(seqs)
    for k in b:
        assert torch.equal(b[k], singles[k]) if torch.is_tensor(b[k]) else b[k] == singles[k]


def test_padding_free_example_from_docs():
    rows = [
        {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]},
        {"input_ids": [21, 22, 31, 32, 33], "labels": [21, 22, -100, 32, 33], "seq_lengths": [2, 3]},
    ]
    b = PaddingFreeCollator(return_seq_idx=True)(rows)
    assert b["input_ids"].tolist() == [[11, 12, 13, 21, 22, 31, 32, 33]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert b["labels"].tolist() == [[-100, 12, 13, -100, 22, -100, 32, 33]]
    assert b["cu_seq_lens_q"].tolist() == [0, 3, 5, 8]
    assert b["max_length_q"] == 3
    assert b["seq_idx"].tolist() == [[0, 0, 0, 1, 1, 2, 2, 2]]
    assert num_trained_tokens(b) == 5


def test_padding_free_options_and_errors():
    b = PaddingFreeCollator(disable_cache=False, return_flash_kwargs=False)([{"input_ids": [1, 2]}])
    assert set(b) == {"input_ids", "labels", "position_ids"}
    assert b["labels"].tolist() == [[IGNORE, 2]]
    with pytest.raises(ValueError):
        PaddingFreeCollator()([{"input_ids": [1, 2, 3], "labels": [1, 2, 3], "seq_lengths": [1, 1]}])
    with pytest.raises(ValueError):
        PaddingFreeCollator()([{"input_ids": [1, 2, 3], "position_ids": [1, 2, 3]}])
    with pytest.raises(ValueError):
        PaddingFreeCollator()([])
    with pytest.raises(ValueError):
        PaddingFreeCollator(pad_to_multiple_of=0)


def test_packed_dataset_rows_collate_like_their_sequences():
    import datasets

    rng = np.random.default_rng(0)
    seqs = []
    for i in range(40):
        n = int(rng.integers(2, 30))
        ids = rng.integers(0, 100, n).tolist()
        seqs.append({"input_ids": ids, "labels": [IGNORE] * (n // 2) + ids[n // 2 :], "source_index": i})
    ds = datasets.Dataset.from_list(seqs)
    packed, _ = pack_dataset(ds, 64)
    rows = [packed[i] for i in range(len(packed))]
    b = PaddingFreeCollator()(rows)
    order = [s for r in rows for s in r["source_index"]]
    check_padding_free(b, [seqs[i] for i in order])
    # numpy-formatted rows (fast path) give the same batch
    np_rows = [packed.with_format("numpy")[i] for i in range(len(packed))]
    b2 = PaddingFreeCollator()(np_rows)
    assert all(torch.equal(b[k], b2[k]) for k in b if torch.is_tensor(b[k]))
