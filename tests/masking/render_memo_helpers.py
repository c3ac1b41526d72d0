"""Shared by the render-memo tests (test_render_memo.py, test_render_scan.py): a plain and a
memoising template of one source, a render's outcome (text, or error reason and message), and
the adversarial hand-written templates every memo test draws conversations for."""

from __future__ import annotations

from datetime import datetime

from sftdata.errors import RowError
from sftdata.masking.render_limits import RenderLimits
from sftdata.masking.template import ChatTemplate

NOW = datetime(2026, 1, 2, 3, 4, 5)
SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def _pair(source: str, kwargs: dict | None = None, limits: RenderLimits | None = None) -> tuple[ChatTemplate, ChatTemplate]:
    extra = {} if limits is None else {"limits": limits}
    plain = ChatTemplate(source, SPECIALS, kwargs, now=NOW, memo=False, **extra)
    memo = ChatTemplate(source, SPECIALS, kwargs, now=NOW, memo=True, **extra)
    return plain, memo


def _outcome(t: ChatTemplate, msgs: list, tools, gp: bool, spans: bool = False, count: int | None = None, training: bool = False):
    try:
        if spans:
            return t.render_generation_spans(msgs[:count], tools, prepared=True)
        return t.render(msgs, tools, add_generation_prompt=gp, prepared=True, count=count, training=training)
    except RowError as e:
        return ("error", e.reason, str(e))


ADVERSARIAL = {
    "next_by_index": "{% for m in messages %}{{ m.role }}{% if not loop.last %}>{{ messages[loop.index0 + 1].role }}{% endif %};{% endfor %}",
    "next_unguarded": "{% for m in messages %}[{{ messages[loop.index0 + 1].role if messages[loop.index0 + 1] is defined }}]{% endfor %}",
    "loop_attrs": "{% for m in messages %}{{ loop.index0 }}/{{ loop.length }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}|{% endfor %}",
    "last_only": "{% for m in messages %}{{ m.content }}{% if loop.last %}<end>{% endif %}{% endfor %}",
    "nextitem": "{% for m in messages %}{{ m.role }}{% if loop.nextitem is defined %}->{{ loop.nextitem.role }}{% endif %}{% if loop.previtem is defined %}<-{{ loop.previtem.role }}{% endif %};{% endfor %}",
    "cycle": "{% for m in messages %}{{ loop.cycle('a', 'b', 'c') }}{{ m.role }}{% endfor %}",
    "changed": "{% for m in messages %}{% if loop.changed(m.role) %}<{{ m.role }}>{% endif %}{{ m.content }}{% endfor %}",
    "counter": "{% set ns = namespace(n=0, users=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% if m.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}{{ ns.n }}:{{ ns.users }};{% endfor %}{{ ns.n }}",
    "ns_flag_read_only": "{% set ns = namespace(last_user=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if loop.index0 > ns.last_user %}*{% endif %}{{ m.role }}{% endfor %}",
    "ns_read_only_combined": "{% set ns = namespace(last_user=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if not (flag and loop.index0 < ns.last_user) %}*{% endif %}{% if ns.last_user == loop.index0 %}={% endif %}{{ m.role }}{% endfor %}",
    "ns_written_unread": "{% set ns = namespace(seen=0) %}{% for m in messages %}{% if m.role == 'assistant' %}{% set ns.seen = loop.index0 %}{% endif %}{{ m.role }}{% endfor %}{{ ns.seen }}",
    "macro_top_vars": "{% set sep = '|' %}{% macro show(m) %}{{ m.role }}{{ sep }}{{ messages|length }}{% endmacro %}{% for m in messages %}{{ show(m) }}{% endfor %}",
    "break": "{% for m in messages %}{% if m.role == 'tool' %}{% break %}{% endif %}{{ m.role }}{% endfor %}",
    "continue": "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{{ m.role }}{% endfor %}",
    "length_in_body": "{% for m in messages %}{{ m.role }}{{ messages|length }}{{ (messages|length) - loop.index0 }};{% endfor %}",
    "nested_messages_loop": "{% for m in messages %}{% for o in messages %}{% if o is sameas m %}={% endif %}{% endfor %}{{ m.role }}{% endfor %}",
    "reverse": "{% set ns = namespace(i=-1) %}{% for m in messages[::-1] %}{% set idx = messages|length - 1 - loop.index0 %}{% if ns.i < 0 and m.role == 'user' %}{% set ns.i = idx %}{% endif %}{% endfor %}"
    "{% for m in messages %}{{ loop.index0 > ns.i }}{{ m.role }}{% endfor %}",
    "selectattr_loop": "{% for m in messages|selectattr('role', 'equalto', 'assistant') %}{{ loop.index }}{{ m.content }}{% if loop.last %}!{% endif %}{% endfor %}",
    "last_message": "{% for m in messages %}{{ m.role }}{% if m is sameas messages[-1] %}(last){% endif %}{{ messages[-1].role }}{% endfor %}",
    "loop_messages": "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set loop_messages = messages[1:] %}{% else %}{% set sys = '' %}{% set loop_messages = messages %}{% endif %}"
    "{{ sys }}{% for m in loop_messages %}{{ sys[:3] }}{{ m.role }}{% if not loop.last %}{{ loop_messages[loop.index0 + 1].role }}{% endif %}{% endfor %}",
    "read_before_set": "{% set content = 'outer' %}{% for m in messages %}{{ content }}{% set content = m.content %}{{ content }}{% endfor %}",
    "gen_prompt_in_body": "{% for m in messages %}{{ m.role }}{% if loop.last and add_generation_prompt %}<gp>{% endif %}{% endfor %}",
    "raise": "{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('system not first') }}{% endif %}{{ m.role }}{% endfor %}",
    "generation": "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% if loop.last %}.{% endif %}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
    "joiner": "{% set j = joiner(',') %}{% for m in messages %}{{ j() }}{{ m.role }}{% endfor %}",
    "namespace_list": "{% set ns = namespace(items=[]) %}{% for m in messages %}{% set ns.items = ns.items + [m.role] %}{{ ns.items|length }}{% endfor %}{{ ns.items|join(',') }}",
    "tools_in_body": "{% for m in messages %}{% if tools and loop.first %}{{ tools|length }}{% endif %}{{ m.role }}{% endfor %}",
    "inner_loop_shadow": "{% for m in messages %}{% for c in m.tool_calls or [] %}{{ loop.index }}{{ loop.last }}{% endfor %}{{ loop.index }}{{ loop.last }}{% endfor %}",
    "strftime": "{% for m in messages %}{{ strftime_now('%Y') }}{{ m.role }}{% endfor %}",
    "filter_test_loop": "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ loop.last }}{{ m.role }}{% endfor %}",
    "set_block": "{% for m in messages %}{% set x %}{{ m.role }}{{ loop.last }}{% endset %}{{ x }}{% endfor %}",
    # guarded scans (sftdata.masking.render_scan): rewritten, and near misses that must not be
    "scan": "{% set ns = namespace(on=true, at=messages|length - 1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}"
    "{% if ns.on and m.role == 'user' and not m.content.startswith('<') %}{% set ns.on = false %}{% set ns.at = i %}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if loop.index0 > ns.at %}*{% endif %}{{ m.role }}{% endfor %}{{ ns.at }}",
    "scan_not_guard": "{% set ns = namespace(done=false, n=0) %}{% for m in messages %}{% if not ns.done and m.role == 'assistant' %}{% set ns.done = true %}{% set ns.n = loop.index %}{% endif %}{% endfor %}{{ ns.n }}",
    "scan_unsafe_set": "{% set ns = namespace(on=true) %}{% for m in messages|reverse %}{% set c = m.content.upper() %}{% if ns.on and m.role == 'user' %}{% set ns.on = false %}{% endif %}{% endfor %}{{ ns.on }}",
    "scan_else": "{% set ns = namespace(on=true, n=0) %}{% for m in messages[::-1] %}{% if ns.on and m.role == 'user' %}{% set ns.on = false %}{% else %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.n }}",
    "scan_output": "{% set ns = namespace(on=true) %}{% for m in messages %}{{ m.role }}{% if ns.on and m.role == 'assistant' %}{% set ns.on = false %}!{% endif %}{% endfor %}",
    "scan_undefined_guard": "{% for m in messages %}{% set i = loop.index0 %}{% if nope.flag and m.role == 'user' %}x{% endif %}{% endfor %}{{ messages|length }}",
    "scan_reverse_loop_attrs": "{% set ns = namespace(on=true, at=-1, n=0) %}{% for m in messages[::-1] %}{% set r = loop.revindex0 %}{% set n = loop.length %}"
    "{% set l = loop.last %}{% if ns.on and m.role == 'user' %}{% set ns.on = false %}{% set ns.at = r %}{% set ns.n = n + (1 if l else 0) %}{% endif %}{% endfor %}"
    "{{ ns.at }}/{{ ns.n }}{% for m in messages %}{{ m.role }}{% endfor %}",
    # scans whose verdicts are noted per item (sftdata.masking.render_scan_memo), and near misses
    "scan_memo_index": "{% set ns = namespace(on=true, at=-1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}"
    "{% if ns.on and i % 3 == 0 and m.role == 'user' %}{% set ns.on = false %}{% set ns.at = i %}{% endif %}{% endfor %}{{ ns.at }}{% for m in messages %}{{ m.role }}{% endfor %}",
    "scan_memo_raises": "{% set ns = namespace(on=true, at=-1) %}{% for m in messages|reverse %}{% set i = messages|length - 1 - loop.index0 %}"
    "{% if ns.on and m.role == 'user' and m.content.startswith('q') %}{% set ns.on = false %}{% set ns.at = i %}{% endif %}{% endfor %}{{ ns.at }}",
    "scan_memo_outer": "{% set ns = namespace(on=true, at=-1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}"
    "{% if ns.on and (add_generation_prompt or m.role == 'user') %}{% set ns.on = false %}{% set ns.at = i %}{% endif %}{% endfor %}{{ ns.at }}",
    "scan_memo_first": "{% set ns = namespace(on=true, at=-1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}"
    "{% if ns.on and (loop.first or m.role == 'user') %}{% set ns.on = false %}{% set ns.at = i %}{% endif %}{% endfor %}{{ ns.at }}",
    "scan_memo_length": "{% set ns = namespace(on=true, at=-1) %}{% for m in messages[::-1] %}{% set n = messages|length %}"
    "{% if ns.on and m.role == 'user' and n > 3 %}{% set ns.on = false %}{% set ns.at = n %}{% endif %}{% endfor %}{{ ns.at }}",
    "scan_guard_later": "{% set ns = namespace(on=true, n=0) %}{% for m in messages[::-1] %}{% if m.role == 'user' and ns.on %}{% set ns.on = false %}{% set ns.n = loop.index %}{% endif %}{% endfor %}{{ ns.n }}",
    # positional observations: messages[loop.index0 + c]
    "prev_guarded": "{% for m in messages %}{% if m.role == 'tool' %}{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<tools>{% endif %}{{ m.content }}"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}</tools>{% endif %}{% else %}{{ m.role }}:{{ m.content }}{% endif %};{% endfor %}",
    "prev_unguarded": "{% for m in messages %}{{ messages[loop.index0 - 1].role }}>{{ m.role }};{% endfor %}",
    "next_two": "{% for m in messages %}{{ m.role }}{% if messages[loop.index0 + 2] is defined %}+{{ messages[loop.index0 + 2].role }}{% endif %};{% endfor %}",
    "index_one_based": "{% for m in messages %}{{ m.role }}{{ messages[loop.index].role if not loop.last }}{{ messages[loop.index - 2].role if loop.index > 1 }};{% endfor %}",
}
