"""Garbage-collection thresholds while a batch is encoded (sftdata.gc_pause), and errors kept
for later that hold no reference cycle (``RowError.detached``)."""

from __future__ import annotations

import gc

import pytest

from sftdata.encoder import Encoder
from sftdata.errors import Reason, RowError
from sftdata.gc_pause import YOUNG_THRESHOLD, batch_gc_thresholds
from sftdata.masking.tokenizer import load_tokenizer


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_thresholds_are_restored(thresholds):
    gc.set_threshold(700, 10, 10)
    with batch_gc_thresholds():
        inside = gc.get_threshold()
        with batch_gc_thresholds():  # nested: unchanged, and the outer one restores
            assert gc.get_threshold() == inside
        assert gc.get_threshold() == inside
    assert inside[:2] == (YOUNG_THRESHOLD, 10) and inside[2] > 10**6
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_young_threshold_is_kept(thresholds):
    gc.set_threshold(5 * YOUNG_THRESHOLD, 10, 10)
    with batch_gc_thresholds():
        assert gc.get_threshold()[0] == 5 * YOUNG_THRESHOLD
    assert gc.get_threshold() == (5 * YOUNG_THRESHOLD, 10, 10)


def test_a_threshold_changed_inside_is_kept(thresholds):
    gc.set_threshold(700, 10, 10)
    with batch_gc_thresholds():
        gc.set_threshold(500, 5, 5)
    assert gc.get_threshold() == (500, 5, 5)


def test_nothing_changes_when_collection_is_off(thresholds):
    gc.set_threshold(700, 10, 10)
    gc.disable()
    try:
        with batch_gc_thresholds():
            assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.enable()


def test_young_cycles_are_still_collected(thresholds):
    """Inside the block, a cycle that dies young is freed by the automatic young collections
    (as it would not be with the collector disabled)."""
    import weakref

    gc.set_threshold(700, 10, 10)

    class Node:
        pass

    with batch_gc_thresholds():
        a = Node()
        a.self = a
        ref = weakref.ref(a)
        del a
        keep = [[] for _ in range(3 * YOUNG_THRESHOLD)]  # tracked allocations: young collections run
        assert ref() is None
    del keep


def test_detached_error_has_no_traceback_or_context():
    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise RowError(Reason.TEMPLATE_ERROR, "x") from None
    except RowError as e:
        kept = e.detached()
    assert kept.__traceback__ is None and kept.__context__ is None and kept.__cause__ is None
    assert str(kept) == "[template_error] x"


def test_a_batch_with_rejected_rows_leaves_no_frame_in_a_cycle():
    """Encoding a batch whose rows are rejected at several stages (normalize, render, encode)
    leaves no cyclic garbage holding frames: the kept errors carry no traceback, so the batch's
    frames and their locals are freed by reference counting when the call returns."""
    enc = Encoder(load_tokenizer(None), max_length=8)
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello " * 40}]},  # too long
        {"messages": [{"role": "bogus", "content": "x"}]},  # normalize
        {"messages": [{"role": "user", "content": "only a user"}]},  # no trained turn
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    gc.collect()
    gc.disable()
    try:
        batch = enc.encode_rows(rows, range(len(rows)))
        errors = [r.error for r in batch.results if r.error is not None]
        assert len(errors) >= 3
        del batch, errors
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        frames = [o for o in gc.garbage if type(o).__name__ == "frame"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert frames == []
