"""Guarded scans (sftdata.masking.render_scan): which loops are rewritten, the lazy reverse
iteration, and that the rewritten template renders jinja's plain text."""

from __future__ import annotations

from render_memo_helpers import ADVERSARIAL, _outcome, _pair

from sftdata.masking.template import ChatTemplate


def test_guarded_scans_are_found():
    """Which loops :func:`~sftdata.masking.render_scan.scan_guard` rewrites: Qwen3's reverse scan for
    the last user query and the ``scan*`` templates above that meet the rule; not a loop with an
    ``else`` branch, a ``set`` that may raise, output outside the ``if``, or a guard that is not the
    left-most operand."""
    from sftdata.testing.qwen3 import qwen3_tokenizer

    def scans(source):
        return [p.scan for p in ChatTemplate(source, memo=True).loop_plans]

    assert scans(qwen3_tokenizer().chat_template) == [False, True, False]
    assert scans(ADVERSARIAL["scan"]) == [True, False]
    assert scans(ADVERSARIAL["scan_not_guard"]) == [True]
    assert scans(ADVERSARIAL["scan_reverse_loop_attrs"]) == [True, False]
    for name in ("scan_unsafe_set", "scan_else", "scan_output", "scan_guard_later"):
        assert scans(ADVERSARIAL[name]) == [False], name


def test_reverse_scans_iterate_without_copying_the_list():
    """A guarded scan over ``messages[::-1]`` iterates ``messages|reverse`` (jinja's ``reversed``):
    Qwen3's scan, and one whose body reads ``loop.revindex0``/``loop.length``/``loop.last`` (jinja
    computes them from the iterator), render the plain text; a scan over ``messages[1:]`` keeps
    its slice."""
    import jinja2.nodes as nodes

    from sftdata.masking.render_memo import plan
    from sftdata.masking.template_env import make_environment
    from sftdata.testing.qwen3 import qwen3_tokenizer

    def scan_iters(source):
        env = make_environment()
        tree = env.parse(source)
        plan(tree, env)
        return [type(f.iter).__name__ + (f":{f.iter.name}" if isinstance(f.iter, nodes.Filter) else "")
                for f in tree.find_all(nodes.For) if f.body and type(f.body[0]).__name__ == "ScanExit"]

    assert scan_iters(qwen3_tokenizer().chat_template) == ["Filter:reverse"]
    assert scan_iters(ADVERSARIAL["scan_reverse_loop_attrs"]) == ["Filter:reverse"]
    assert scan_iters(ADVERSARIAL["scan_not_guard"]) == ["Name"]
    sliced = ADVERSARIAL["scan"].replace("messages[::-1]", "messages[1:]")
    assert scan_iters(sliced) == ["Getitem"]
    plain, memo = _pair(ADVERSARIAL["scan_reverse_loop_attrs"])
    roles = ["user", "assistant", "user", "tool", "assistant", "tool"]
    msgs = [{"role": r, "content": f"m{i}"} for i, r in enumerate(roles)]
    for k in range(len(msgs) + 1):
        assert _outcome(memo, msgs, None, False, count=k) == _outcome(plain, msgs, None, False, count=k)
    assert _outcome(memo, msgs, None, False) == "2/6userassistantusertoolassistanttool"


def test_guarded_scan_stops_early_with_the_plain_text():
    """A guarded scan leaves the loop at its first iteration whose guard is false: a scan whose
    later iterations would raise (``m.content.upper()`` on a message without content, inside the
    branch the guard closes) renders as jinja does, because the branch never runs there either."""
    source = ("{% set ns = namespace(on=true) %}{% for m in messages[::-1] %}{% set i = loop.index0 %}"
              "{% if ns.on and m.content.upper() == 'STOP' %}{% set ns.on = false %}{% endif %}{% endfor %}{{ ns.on }}")
    plain, memo = _pair(source)
    assert [p.scan for p in memo.loop_plans] == [True]
    msgs = [{"role": "user"}, {"role": "user", "content": "stop"}, {"role": "assistant", "content": "x"}]
    assert _outcome(memo, msgs, None, False) == _outcome(plain, msgs, None, False) == "False"
    msgs = [{"role": "user"}, {"role": "assistant", "content": "x"}]
    assert _outcome(memo, msgs, None, False) == _outcome(plain, msgs, None, False)
    assert _outcome(plain, msgs, None, False)[0] == "error"


def _scan_ids(source):
    from sftdata.masking.render_memo import plan
    from sftdata.masking.render_scan import ScanExit
    from sftdata.masking.template_env import make_environment

    env = make_environment()
    tree = env.parse(source)
    plan(tree, env)
    return [x.scan_id for x in tree.find_all(ScanExit)]


def test_which_scans_note_their_items():
    """A scan's verdicts are noted per item when the rest of its test reads only the item and
    values of its position (``(messages|length - 1) - loop.index0``): Qwen3's, and the index and
    raising templates; not when it reads ``add_generation_prompt``, ``loop.first`` or
    ``messages|length`` (they change between renders of one item)."""
    from sftdata.testing.qwen3 import qwen3_tokenizer

    assert _scan_ids(qwen3_tokenizer().chat_template) == [0]
    for name in ("scan_memo_index", "scan_memo_raises"):
        assert _scan_ids(ADVERSARIAL[name]) == [0], name
    for name in ("scan_memo_outer", "scan_memo_first", "scan_memo_length"):
        assert _scan_ids(ADVERSARIAL[name]) == [None], name


def test_a_trace_with_one_user_message_evaluates_each_item_once(monkeypatch):
    """Qwen3's last-query scan on a tool trace with one user message: every prefix in masking
    order renders the plain text, and the scan's test runs about once per message over all the
    renders (it ran once per message per render: O(n²))."""
    import os

    from sftdata.masking.render_scan_memo import ScanMemo
    from sftdata.testing.qwen3 import qwen3_tokenizer

    calls = []
    verdict = ScanMemo.verdict
    monkeypatch.setattr(ScanMemo, "verdict", lambda self, *a: calls.append(1) or verdict(self, *a))
    source = qwen3_tokenizer().chat_template
    plain, memo = ChatTemplate(source, memo=False), ChatTemplate(source, memo=True)
    msgs = [{"role": "user", "content": "find and sum"}]
    for i in range(100):
        call = {"type": "function", "function": {"name": "lookup", "arguments": {"id": i}}}
        msgs += [{"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": f"{i * 7}"}]
    msgs.append({"role": "assistant", "content": "done"})
    memo.new_conversation()
    base = memo.render(msgs, prepared=True, count=len(msgs), training=True)
    assert base == plain.render(msgs, prepared=True)
    renders = 0
    for k in range(1, len(msgs), 2):
        for n, gp in ((k + 1, False), (k, True)):
            want = plain.render(msgs[:n], add_generation_prompt=gp)
            shared = len(os.path.commonprefix([want, base]))
            assert memo.render_split(msgs, base=base, add_generation_prompt=gp, prepared=True, count=n) == (shared, want[shared:])
            renders += 1
    assert 0 < len(calls) < 3 * len(msgs) + 3 * renders  # not ~ renders * messages / 2
