"""Fast paths of chat-template rendering return exactly what jinja's sandbox does.

* ``_LimitedSandbox.call`` calls a pure ``str`` method (``m.content.startswith('<')``) and
  ``namespace(...)`` directly: the same value or error as jinja's ``SandboxedEnvironment.call``;
  ``format`` and the size-checked methods still go through the checks.
* :mod:`sftdata.masking.template_compile`: templates of one source share compiled code, never
  state (their environment, clock, special tokens, render memo).
* :class:`sftdata.masking.render_limits.time_limit`: a render over its limit is stopped, one
  under it is not, and leaving the block removes its deadline.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

from sftdata.errors import Reason, RowError
from sftdata.masking.render_limits import RenderLimitExceeded, RenderLimits, time_limit
from sftdata.masking.template import ChatTemplate
from sftdata.masking.template_compile import compiled
from sftdata.masking.template_env import PURE_STR_METHODS, make_environment

_TEXT = st.text(alphabet=st.sampled_from("ab<>\n _-"), max_size=12)
_ARG = st.one_of(_TEXT, st.integers(-3, 6), st.none(), st.tuples(_TEXT, _TEXT))


def _both(call):
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - compared, type and message
        return ("error", type(e), str(e))


@settings(max_examples=300, deadline=None)
@given(s=_TEXT, name=st.sampled_from(sorted(PURE_STR_METHODS)), args=st.lists(_ARG, max_size=3),
       loop_vars=st.booleans())
def test_pure_str_methods_call_as_the_sandbox_does(s, name, args, loop_vars):
    """Value or error (type and message) equal to jinja's sandbox call, with jinja's own
    ``_loop_vars`` keyword passed or not."""
    env = make_environment()
    ref = SandboxedEnvironment()
    ctx = env.from_string("").new_context({})
    ref_ctx = ref.from_string("").new_context({})
    extra = {"_loop_vars": {}} if loop_vars else {}
    mine = _both(lambda: env.call(ctx, getattr(s, name), *args, **dict(extra)))
    theirs = _both(lambda: ref.call(ref_ctx, getattr(s, name), *args, **dict(extra)))
    assert mine == theirs


def test_namespace_and_checked_methods_keep_their_checks():
    """``namespace(...)`` still refuses underscore attributes; ``format`` and ``replace`` are
    still size-checked (they are not on the direct path)."""
    limits = RenderLimits(max_chars=1000)
    t = ChatTemplate("{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}", limits=limits)
    assert t.render([{"role": "user", "content": "hi"}]) == "1x"
    with pytest.raises(RowError) as e:
        ChatTemplate("{% set ns = namespace(_secret=1) %}{{ ns._secret }}").render([{"role": "user", "content": "hi"}])
    assert e.value.reason is Reason.TEMPLATE_ERROR and "underscore" in str(e.value)
    for body in ("{{ ('%s' * 600).format(*range(600)) }}", "{{ ('x' * 100).replace('x', 'yyyyyyyyyyyyyyyy') }}"):
        with pytest.raises(RowError) as e:
            ChatTemplate(body, limits=limits).render([{"role": "user", "content": "hi"}])
        assert e.value.reason is Reason.RENDER_LIMIT, body


def test_templates_of_one_source_share_code_not_state():
    """Two templates of one source: one compilation, but each renders with its own clock,
    special tokens and memo; the memo-less twin renders the same text."""
    source = ("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{% if loop.last %}!{% endif %}{% endfor %}"
              "{{ strftime_now('%Y') }}")
    before = compiled.cache_info().hits
    a = ChatTemplate(source, {"bos_token": "<a>"}, now=datetime(2001, 1, 1), memo=True)
    b = ChatTemplate(source, {"bos_token": "<b>"}, now=datetime(2002, 1, 1), memo=True)
    assert compiled.cache_info().hits >= before + 1
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(60)]
    ta, tb = a.render(msgs), b.render(msgs[:59])
    assert ta.startswith("<a>") and ta.endswith("m59!2001")
    assert tb.startswith("<b>") and tb.endswith("m58!2002")
    plain = ChatTemplate(source, {"bos_token": "<a>"}, now=datetime(2001, 1, 1), memo=False)
    assert plain.render(msgs) == ta
    assert a.render(msgs[:59]) == plain.render(msgs[:59])


def test_time_limit_stops_a_long_block_and_forgets_a_short_one():
    with pytest.raises(RenderLimitExceeded, match="longer than 0.2 s"):
        with time_limit(0.2):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pass
    with time_limit(0.2):
        pass
    time.sleep(0.4)  # a deadline left behind would fire here, outside any render
    with time_limit(None):
        time.sleep(0.01)


def test_a_template_over_its_time_limit_is_a_render_limit_row_error():
    t = ChatTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", limits=RenderLimits(seconds=0.3))
    with pytest.raises(RowError) as e:
        t.render([{"role": "user", "content": "hi"}])
    assert e.value.reason is Reason.RENDER_LIMIT and "render time limit" in str(e.value)


def _render_in_child(queue):
    t = ChatTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", limits=RenderLimits(seconds=0.3))
    try:
        t.render([{"role": "user", "content": "hi"}])
        queue.put("rendered")
    except RowError as e:
        queue.put(e.reason.value)


def test_time_limit_holds_in_a_forked_worker():
    """The parent's watchdog thread is not copied by a fork: the child starts its own."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with time_limit(1.0):  # the parent's watchdog runs
        pass
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=30) == "render_limit"
    finally:
        child.join(10)
