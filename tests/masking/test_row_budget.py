"""The per-row budget (sftdata/masking/row_budget.py): each limit raises RowError(render_limit) naming
the limit and the option that raises it, only once passed; the counters restart per row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.errors import Reason, RowError
from sftdata.masking.row_budget import RowBudget, current_rss


class Fake:
    """A settable clock / resident size."""

    def __init__(self, value=0):
        self.value = value

    def __call__(self):
        return self.value


def _raises(fn, *args):
    with pytest.raises(RowError) as ei:
        fn(*args)
    assert ei.value.reason is Reason.RENDER_LIMIT and ei.value.field == "messages"
    return ei.value


def test_defaults_admit_a_10000_message_row():
    b = RowBudget()
    b.start(row=0, messages=10_000)
    b.charge(50_000_000)
    assert b.usage()["chars"] == 50_000_000


def test_messages_limit_names_the_option():
    b = RowBudget(max_messages=10)
    b.start(row=3, messages=10)
    err = _raises(b.start, 4, 11)
    assert err.row == 4 and "11 messages" in err.message and "limit of 10" in err.message and "--max-messages" in err.message


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10_000), st.lists(st.integers(0, 3_000), max_size=20))
def test_chars_limit_is_passed_exactly_when_the_sum_passes_it(limit, charges):
    b = RowBudget(render_max_chars=limit, timeout=None, max_memory_mb=None)
    b.start(row=1)
    total = 0
    for c in charges:
        total += c
        if total > limit:
            err = _raises(b.charge, c)
            assert f"{total:,} characters" in err.message and "--row-render-max-chars" in err.message
            return
        b.charge(c)
    assert b.usage()["chars"] == total


def test_counters_restart_per_row():
    b = RowBudget(render_max_chars=100, timeout=None, max_memory_mb=None)
    b.start(row=0)
    b.charge(90)
    b.start(row=1)
    b.charge(90)  # 180 over two rows: each row is within its budget
    _raises(b.charge, 11)


def test_timeout_counts_from_start():
    clock = Fake(100.0)
    b = RowBudget(timeout=5, max_memory_mb=None, clock=clock)
    clock.value = 200.0  # time before the row does not count
    b.start(row=2)
    clock.value = 204.0
    b.charge(1)
    b.check()
    clock.value = 205.5
    err = _raises(b.charge, 1)
    assert "5.5 s" in err.message and "limit of 5 s" in err.message and "--row-timeout" in err.message
    _raises(b.check)


def test_memory_growth_since_start():
    rss = Fake(10 * 2**30)  # 10 GiB already resident before the row: not the row's
    b = RowBudget(max_memory_mb=100, timeout=None, memory_every=2, rss=rss)
    b.start(row=5)
    rss.value += 150 * 2**20
    b.charge(1)  # the 1st charge does not read the resident size (every 2nd does)
    err = _raises(b.charge, 1)
    assert "150 MiB" in err.message and "limit of 100 MiB" in err.message and "--row-max-memory-mb" in err.message
    rss.value = None  # unreadable: not checked
    b.start(row=6)
    b.check()


def test_none_disables_and_bad_limits_are_refused():
    b = RowBudget(None, None, None, None)
    b.start(messages=10**9)
    b.charge(10**12)
    b.check()
    for kwargs in ({"max_messages": 0}, {"render_max_chars": -1}, {"timeout": 0.0}, {"max_memory_mb": True}):
        with pytest.raises(ValueError, match="must be positive"):
            RowBudget(**kwargs)


def test_current_rss_reads_this_process():
    rss = current_rss()
    assert rss is None or rss > 1_000_000
    if rss is not None:
        block = b"x" * (64 * 2**20)  # written: resident
        assert current_rss() - rss > 32 * 2**20
        del block
