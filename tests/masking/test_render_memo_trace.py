"""The render memo's skip bound over namespace intervals (render_memo_trace._interval_prefix)
equals its definition: the longest run of leading iterations whose intervals allow the values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sftdata.masking.render_memo_trace import _interval_prefix

INF = float("inf")


@st.composite
def shrinking_intervals(draw):
    """Per iteration, per attribute, the interval iterations 0..i allow: each one inside the last."""
    n_attrs = draw(st.integers(1, 3))
    n = draw(st.integers(0, 30))
    ivs, current = [], []
    for _ in range(n):
        grow = draw(st.integers(0, n_attrs - len(current)))  # attributes narrowed so far (a tuple grows)
        current = current + [(-INF, INF)] * grow
        narrowed = []
        for lo, hi in current:
            if draw(st.booleans()):
                lo = max(lo, draw(st.integers(-5, 5)))
            if draw(st.booleans()):
                hi = min(hi, draw(st.integers(-5, 5)))
            narrowed.append((lo, hi))
        current = narrowed
        ivs.append(tuple(current))
    return ivs, n_attrs


def _definition(ivs, values, j, first):
    if values is None or any(type(v) is not int for v in values):
        return first
    k = first
    while k < j and all(lo <= values[a] <= hi for a, (lo, hi) in enumerate(ivs[k]) if a < len(values)):
        k += 1
    return k


@settings(max_examples=400, deadline=None)
@given(drawn=shrinking_intervals(), data=st.data())
def test_interval_prefix_is_its_definition(drawn, data):
    ivs, n_attrs = drawn
    values = tuple(data.draw(st.lists(st.integers(-6, 6), min_size=1, max_size=n_attrs)))
    j = data.draw(st.integers(0, len(ivs)))
    first = data.draw(st.integers(0, j))
    # iterations before ``first`` made no comparison: their intervals allow everything
    ivs = [() if i < first else iv for i, iv in enumerate(ivs)]
    assert _interval_prefix(ivs, values, j, first) == _definition(ivs, values, j, first)


def test_values_that_are_not_ints_allow_only_the_first():
    ivs = [((0, 9),)] * 5
    assert _interval_prefix(ivs, ("x",), 5, 2) == 2
    assert _interval_prefix(ivs, None, 5, 1) == 1
    assert _interval_prefix(ivs, (3,), 5, 0) == 5
    assert _interval_prefix(ivs, (10,), 5, 0) == 0
