"""String formatting under the render size limit (issue 16, item 4).

A template doubling a string with ``'%s%s'|format(s, s)``, ``%``, ``str.format`` or
``str.format_map`` used to reach gigabytes before the render timeout stopped it: each step is
one C call. The size of the result is now computed from the format string and the arguments
before the call runs (``sftdata/masking/format_size.py``), so the doubling is refused at the step that
passes the limit, by the size check, not the timer; and a formatting within the limit renders
exactly as plain jinja2 renders it.
"""

from __future__ import annotations

import re
import string

import jinja2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sftdata.errors import Reason, RowError
from sftdata.masking.format_size import _str_repr_len, format_size, percent_size
from sftdata.masking.render_limits import RenderLimits
from sftdata.masking.template import ChatTemplate

LIMIT = 100_000

DOUBLING = {
    "format_filter": "'%s%s'|format(ns.s, ns.s)",
    "format_filter_keywords": "'%(a)s%(a)s'|format(a=ns.s)",
    "format_filter_on_a_list": "['%s%s']|format(ns.s, ns.s)",
    "percent_tuple": "'%s%s' % (ns.s, ns.s)",
    "percent_mapping": "'%(a)s%(a)s' % {'a': ns.s}",
    "percent_repr": "'%r%r' % (ns.s, ns.s)",
    "percent_list": "'%s' % ([ns.s, ns.s],)",
    "str_format_auto": "'{}{}'.format(ns.s, ns.s)",
    "str_format_index": "'{0}{0}'.format(ns.s)",
    "str_format_keyword": "'{a}{a}'.format(a=ns.s)",
    "str_format_conversion": "'{0!r}{0!a}'.format(ns.s)",
    "str_format_map": "'{a}{a}'.format_map({'a': ns.s})",
    "str_format_width_from_args": "'{0:{1}}{0}'.format(ns.s, ns.s|length * 2)",
}


@pytest.mark.parametrize("name", sorted(DOUBLING))
def test_doubling_by_formatting_is_refused_by_the_size_check(name):
    """24 doublings of 'x' would build 16M characters; the step that passes 100,000 is refused
    before it runs (the message names the size check, not the timer)."""
    src = "{% set ns = namespace(s='x') %}{% for i in range(24) %}{% set ns.s = " + DOUBLING[name] + " %}{% endfor %}{{ ns.s|length }}"
    t = ChatTemplate(src, {}, limits=RenderLimits(seconds=60, max_chars=LIMIT))
    with pytest.raises(RowError) as ei:
        t.render([{"role": "user", "content": "hi"}])
    assert ei.value.reason is Reason.RENDER_LIMIT
    assert "would build more than 100,000 characters" in ei.value.message, ei.value.message


@pytest.mark.parametrize("name", sorted(DOUBLING))
def test_doubling_within_the_limit_renders(name):
    """The same steps, fewer of them (2**8 = 256 'x'), render as plain jinja2 renders them."""
    src = "{% set ns = namespace(s='x') %}{% for i in range(8) %}{% set ns.s = " + DOUBLING[name] + " %}{% endfor %}{{ ns.s }}"
    plain = ImmutableSandboxedEnvironment().from_string(src).render()
    assert ChatTemplate(src, {}, limits=RenderLimits(seconds=60, max_chars=LIMIT)).render([]) == plain


def test_precision_cuts_before_the_limit_counts():
    """'%.5s' of a long string builds 5 characters: allowed; so is a width up to the limit."""
    t = ChatTemplate("{{ '%.5s|%-20s|' % (content, 'a') }}{{ '{:.3}'.format(content) }}", {},
                     template_kwargs={"content": "y" * 60_000}, limits=RenderLimits(max_chars=LIMIT))
    assert t.render([]) == "yyyyy|a                   |yyy"


@pytest.mark.parametrize("src, result", [
    ("{{ '%3.1200g' % 0.0 }}", "  0"),  # found by hypothesis: was refused as 1,200 characters
    ("{{ '%.1200G' % 0.1 }}", "%.1200G" % 0.1),
    ("{{ '{:.1200g}'.format(0.1) }}", "{:.1200g}".format(0.1)),  # 57 characters: the exact value of 0.1
    ("{{ '{:.1200}'.format(0.2) }}", "{:.1200}".format(0.2)),
])
def test_a_g_precision_bounds_digits_not_length(src, result):
    """``%g`` (and ``str.format``'s ``g``/``G``/``n``/no type) without ``#`` writes a float's
    digits up to the precision, at most a few hundred: a precision over the limit is measured, not
    refused; with ``#`` the zeros are kept, so it is refused."""
    assert ChatTemplate(src, {}, limits=RenderLimits(max_chars=len(result))).render([]) == result
    alternate = src.replace("%", "%#", 1) if "'%" in src else src.replace("{:", "{:#", 1)
    with pytest.raises(RowError) as ei:
        ChatTemplate(alternate, {}, limits=RenderLimits(max_chars=1000)).render([])
    assert ei.value.reason is Reason.RENDER_LIMIT


@pytest.mark.parametrize("src", ["{{ '{:.1200f}'.format(x) }}", "{{ '%.1200e' % x }}", "{{ '{:#.1200%}'.format(x) }}"])
def test_any_precision_on_a_float_that_is_not_finite_is_short(src):
    """``inf``/``nan`` print as three letters whatever the precision (found by hypothesis:
    ``'{:.1200f}'.format(inf)`` was refused as 1,200 characters); a finite value is refused."""
    for x in (float("inf"), float("-inf"), float("nan")):
        plain = ImmutableSandboxedEnvironment().from_string(src).render(x=x)
        assert ChatTemplate(src, {}, template_kwargs={"x": x}, limits=RenderLimits(max_chars=10)).render([]) == plain
    with pytest.raises(RowError) as ei:
        ChatTemplate(src, {}, template_kwargs={"x": 0.5}, limits=RenderLimits(max_chars=1000)).render([])
    assert ei.value.reason is Reason.RENDER_LIMIT


def test_formatting_errors_stay_template_errors():
    """A formatting the size check cannot follow raises its own error, as in plain jinja2."""
    for src in ("{{ '%s %s' % ('a',) }}", "{{ '%q' % 1 }}", "{{ '{0}{}'.format(1, 2) }}", "{{ '{:>5x}'.format('s') }}"):
        with pytest.raises(RowError) as ei:
            ChatTemplate(src, {}, limits=RenderLimits(max_chars=LIMIT)).render([])
        assert ei.value.reason is Reason.TEMPLATE_ERROR, src


# ---------------------------------------------------------------------------- properties

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_long = st.builds(lambda t, n: t * n, st.text(alphabet="ab'\"\\\n\x00é\u2028😀", min_size=1, max_size=4), st.integers(17_000, 20_000))
_scalar = st.one_of(_text, st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.booleans(), st.none())
_value = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, max_size=3), st.tuples(c), st.dictionaries(_text, c, max_size=3)), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(st.one_of(_text, _long), st.sampled_from("ra"))
def test_repr_length_of_long_strings(s, conv):
    assert _str_repr_len(s, conv) == len(repr(s) if conv == "r" else ascii(s))


@st.composite
def percent_cases(draw):
    """A printf-style format string and arguments fitted to it (or not: mismatches raise, and
    are then only required to raise in both)."""
    keyed = draw(st.booleans())
    fmt, args, mapping = [], [], {}
    for i in range(draw(st.integers(0, 4))):
        fmt.append(draw(st.text(alphabet="ab %{}()\n", max_size=4)).replace("%", "%%"))
        conv = draw(st.sampled_from("srad xfegc" if not keyed else "srad"))
        conv = "%" if conv == " " else conv
        flags = draw(st.text(alphabet="-+ #0", max_size=2))
        width = draw(st.sampled_from(["", "3", "12", "*"] if not keyed else ["", "7"]))
        prec = draw(st.sampled_from(["", ".", ".0", ".2", ".*", ".1200"] if not keyed else ["", ".3"]))
        value = (draw(_value) if conv in "sra" else draw(st.integers(-10**6, 10**6)) if conv in "dxc" and conv != "c"
                 else draw(st.integers(32, 0x10FFFF).filter(lambda c: not 0xD800 <= c < 0xE000)) if conv == "c"
                 else draw(st.one_of(st.floats(allow_nan=False, width=32), st.integers(-10**6, 10**6))))
        key = f"({'k' + str(i % 2)})" if keyed else ""
        fmt.append("%" + key + flags + width + prec + conv)
        if keyed:
            mapping[f"k{i % 2}"] = value
        else:
            args += [draw(st.integers(-15, 15))] * (width == "*") + [draw(st.integers(-3, 15))] * (prec == ".*") + [value] * (conv != "%")
    f = "".join(fmt)
    if keyed:
        return f, mapping
    return f, (tuple(args) if len(args) != 1 or draw(st.booleans()) else args[0])


@settings(max_examples=300, deadline=None)
@given(percent_cases())
def test_percent_size_is_the_length_of_the_result(case):
    fmt, args = case
    try:
        out = fmt % args
    except (TypeError, ValueError, OverflowError):
        return
    assert percent_size(fmt, args, 10**9) == len(out)


@st.composite
def format_cases(draw):
    manual = draw(st.booleans())
    fmt, args, kwargs = [], [], {}
    for i in range(draw(st.integers(0, 4))):
        fmt.append(draw(st.text(alphabet="ab %()\n", max_size=4)) + draw(st.sampled_from(["", "{{", "}}"])))
        kind = draw(st.sampled_from(["str", "num", "any", "nested"]))
        if kind == "str":
            value = draw(st.one_of(_text, _long))
            spec = draw(st.sampled_from(["", ":>8", ":*^11", ":.3", ":<4.1", ":s", ":{}".format("9")]))
        elif kind == "num":
            value = draw(st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=True)))
            spec = draw(st.sampled_from(["", ":+", ":08.3f", ":,", ":>10e", ":.1200f", ":g", ":_", ": 5", ":=+9.2"]))
            if isinstance(value, float) and spec in (":,", ":_"):
                spec = ":,.2f"
        elif kind == "any":
            value, spec = draw(_value), draw(st.sampled_from(["", "!r", "!a", "!s", "!r:>30", "!a:.4"]))
        else:
            value, spec = draw(_text), ":{}"
        if manual:
            name = str(len(args))
        else:
            name = draw(st.sampled_from(["", f"k{i}"]))
        if name.startswith("k"):
            kwargs[name] = value
        else:
            args.append(value)
        if kind == "nested":
            args.append(draw(st.integers(0, 20)))
            if manual:
                spec = ":{" + str(len(args) - 1) + "}"
        fmt.append("{" + name + spec + "}")
    return "".join(fmt), tuple(args), kwargs


@settings(max_examples=300, deadline=None)
@given(format_cases())
def test_format_size_is_the_length_of_the_result(case):
    fmt, args, kwargs = case
    try:
        out = fmt.format(*args, **kwargs)
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        return
    assert format_size(fmt, args, kwargs, 10**9, string.Formatter()) == len(out)


def _texts_built(value) -> int:
    """The longest text formatting may build from one argument before a precision cuts it
    (``str``/``repr``/``ascii`` of a list, say); a string's ``str`` is itself."""
    if isinstance(value, str):
        return len(ascii(value))
    if isinstance(value, dict):
        return max([len(ascii(value))] + [_texts_built(v) for v in value.values()])
    if isinstance(value, (list, tuple)):
        return max([len(ascii(value))] + [_texts_built(v) for v in value])
    return len(ascii(value))


@settings(max_examples=120, deadline=None)
@given(st.one_of(percent_cases().map(lambda c: ("{{ fmt % args }}", c)),
                 format_cases().map(lambda c: ("{{ fmt.format(*args, **kwargs) }}", c))))
def test_formatting_within_the_limit_renders_as_plain_jinja(case):
    """With the size limit at the result's length (or at the longest text one argument's
    conversion builds, when that is longer: the limit bounds every text one operation builds),
    the template renders what plain jinja2's sandbox renders; one character less than the
    result, when nothing else is longer, is a render_limit."""
    src, c = case
    variables = {"fmt": c[0], "args": c[1], "kwargs": c[2] if len(c) > 2 else {}}
    try:
        plain = ImmutableSandboxedEnvironment().from_string(src).render(**variables)
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, IndexError, KeyError, OverflowError):
        return
    assume(len(plain) > 1)
    # a lone string argument builds no text of its own, unless a %r/%a conversion writes its repr
    # (cut afterwards by a precision: '%.2r' % '0' builds "'0'" for "'0")
    repr_of_str = isinstance(c[1], str) and src.startswith("{{ fmt %") and any(
        conv in "ra" for conv in re.findall(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?(.)", c[0]))
    built = _texts_built(c[1]) if not isinstance(c[1], str) or repr_of_str else 0
    built = max(built, _texts_built(variables["kwargs"]) if variables["kwargs"] else 0)
    limit = max(len(plain), built)
    t = ChatTemplate(src, {}, template_kwargs=variables, limits=RenderLimits(seconds=60, max_chars=limit))
    assert t.render([]) == plain
    if built < len(plain):
        short = ChatTemplate(src, {}, template_kwargs=variables, limits=RenderLimits(seconds=60, max_chars=len(plain) - 1))
        with pytest.raises(RowError) as ei:
            short.render([])
        assert ei.value.reason is Reason.RENDER_LIMIT
