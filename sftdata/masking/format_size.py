"""The length of a string formatting's result, computed without building it.

A template can double a string with ``'%s%s'|format(s, s)``, ``'%s%s' % (s, s)``,
``'{}{}'.format(s, s)`` or ``'{a}{a}'.format_map(d)``: each step builds the whole result in one
C call, so neither the output-size limit (counted on the streamed output) nor the render
timeout (delivered between bytecodes) can stop it before it holds gigabytes.
:func:`percent_size` and :func:`format_size` give the length of the result first, from the
format string and the sizes of the arguments, so that :mod:`sftdata.masking.render_limits` refuses an
operation over the limit before it runs.

The length is exact, with stated exceptions where it is an upper bound: a ``Markup`` format
string (its arguments are HTML-escaped, counted as 5 characters per character) and a
``str.format`` spec on a string that this module does not parse (the real call refuses it;
counted as its widest number plus the value). A numeric field's precision over the limit is
refused outright (the field alone would be that long), except where the precision only bounds
the digits: ``%g``/``%G`` and ``str.format``'s ``g``, ``G``, ``n`` and no type, without ``#``
(a float's shortest exact text has at most about 770 digits, so ``'%.1200g' % 0.0`` is ``0``), and
any precision on a float that is not finite (``'{:.1200f}'.format(inf)`` is ``inf``).
A numeric field is formatted on its own without its width (a number's text is short), then padded.
Measuring a value (``str``, ``repr``, ``ascii``) walks lists, tuples, dicts, dict views and
jinja namespaces without building their text, and stops once the count passes the limit, so
the measurement itself costs at most about ``limit`` steps.

Both functions raise :class:`Unknown` when the real operation would fail at that point
(a missing argument, an unsupported conversion, an unsafe attribute): the caller then lets it
run and fail. Fields measured before that point were counted, so nothing unmeasured is built.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any

import jinja2.utils
from markupsafe import Markup


class Unknown(Exception):
    """The real formatting fails at this point (the caller lets it raise its own error)."""


class TooBig(Exception):
    """A measured text passes the limit (``args``: what, its length so far)."""


#: chunk size for measuring ``repr`` of long strings (bounded transient copies)
_CHUNK = 1 << 16
#: markupsafe's longest escape (``&amp;``, ``&#34;``, ``&#39;``): 5 characters for 1
_ESCAPE = 5
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


def _str_repr_len(s: str, conv: str) -> int:
    """``len(repr(s))`` (``conv`` ``"r"``) or ``len(ascii(s))`` (``"a"``), copying at most
    :data:`_CHUNK` characters at a time (every character is escaped on its own, except the
    quotes, whose escaping depends on which quotes the whole string holds)."""
    fn = repr if conv == "r" else ascii
    if len(s) <= _CHUNK:
        return len(fn(s))
    sq, dq = s.count("'"), s.count('"')
    n = 2 + sq + dq + (sq if sq and dq else 0)  # ' is escaped only when both quotes occur
    for i in range(0, len(s), _CHUNK):
        c = s[i : i + _CHUNK]
        if sq or dq:
            c = c.replace("'", "").replace('"', "")
        n += len(fn(c)) - 2
    return n


class _Meter:
    """Measures ``str(x)`` / ``repr(x)`` / ``ascii(x)`` of one value, raising :class:`TooBig`
    as soon as the count passes ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.n = 0

    def add(self, k: int) -> None:
        self.n += k
        if self.n > self.limit:
            raise TooBig(self.n)

    def measure(self, x: Any, conv: str) -> int:
        """``conv``: ``"s"`` (str), ``"r"`` (repr), ``"a"`` (ascii). ``str`` of a string is
        the string itself (no new text, so no limit on it: a precision may cut it)."""
        if conv == "s" and isinstance(x, str):
            return len(x)
        self.n = 0
        self._walk(x, conv)
        return self.n

    def _walk(self, x: Any, conv: str) -> None:
        t = type(x)
        if t is str:
            self.add(len(x) if conv == "s" else _str_repr_len(x, conv))
        elif t is Markup:
            self.add(len(x) if conv == "s" else len("Markup()") + _str_repr_len(str(x), conv))
        elif t is list or t is tuple:
            inner = "r" if conv == "s" else conv  # str(list) is repr of its items
            self.add(2 + 2 * max(len(x) - 1, 0) + (1 if t is tuple and len(x) == 1 else 0))
            for item in x:
                self._walk(item, inner)
        elif t is dict:
            inner = "r" if conv == "s" else conv
            self.add(2 + 4 * len(x) - 2 if x else 2)  # "{" ": " per item, ", " between, "}"
            for k, v in x.items():
                self._walk(k, inner)
                self._walk(v, inner)
        elif t in _VIEWS:  # dict_items([('a', 1)])
            self.add(len(t.__name__) + 2)
            self._walk(list(x), "r" if conv == "s" else conv)
        elif isinstance(x, jinja2.utils.Namespace):  # "<Namespace {...}>"
            self.add(len("<Namespace >"))
            self._walk(x._Namespace__attrs, "r" if conv == "s" else conv)
        else:  # numbers, None, bool, Undefined, loop objects, macros: small texts
            fn = str if conv == "s" else repr if conv == "r" else ascii
            try:
                self.add(len(fn(x)))
            except TooBig:
                raise
            except Exception as e:  # noqa: BLE001 - str(x) fails in the real call too
                raise Unknown(type(e).__name__) from None


def str_size(x: Any, limit: int) -> int:
    """``len(str(x))`` without building it.

    Raises:
        TooBig: over ``limit`` characters.
        Unknown: ``str(x)`` raises.
    """
    return _Meter(limit).measure(x, "s")


# ----------------------------------------------------------------------------------
# printf-style: fmt % args (CPython's PyUnicode_Format, followed step by step)
# ----------------------------------------------------------------------------------

_NUMERIC = frozenset("diuoxXeEfFgGc")



def _star_or_digits(fmt: str, i: int) -> tuple[str | None, int]:
    """A ``%`` width or precision at ``fmt[i]``: ``"*"``, ASCII digits, or ``None`` when absent;
    and the index after it."""
    if i < len(fmt) and fmt[i] == "*":
        return "*", i + 1
    s = i
    while i < len(fmt) and fmt[i].isdigit() and fmt[i].isascii():
        i += 1
    return fmt[s:i] or None, i

def _percent_fields(fmt: str):
    """Yields ``("lit", n)`` and ``("field", key, flags, width, prec, conv)`` as CPython reads
    them; raises :class:`Unknown` where it raises ``ValueError`` (incomplete format)."""
    i, n = 0, len(fmt)
    while True:
        j = fmt.find("%", i)
        if j < 0:
            yield ("lit", n - i)
            return
        yield ("lit", j - i)
        i = j + 1
        if i >= n:
            raise Unknown("incomplete format")
        if fmt[i] == "%":
            yield ("lit", 1)
            i += 1
            continue
        key = None
        if fmt[i] == "(":
            depth, start = 1, i + 1
            i += 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
            if depth:
                raise Unknown("incomplete format key")
            key = fmt[start : i - 1]
        s = i
        while i < n and fmt[i] in "-+ #0":
            i += 1
        flags = fmt[s:i]
        width, i = _star_or_digits(fmt, i)
        prec: str | None = None
        if i < n and fmt[i] == ".":
            prec, i = _star_or_digits(fmt, i + 1)
            prec = prec or "0"
        if i < n and fmt[i] in "hlL":
            i += 1
        if i >= n:
            raise Unknown("incomplete format")
        yield ("field", key, flags, width, prec, fmt[i])
        i += 1


def _int_arg(v: Any) -> int:
    if not isinstance(v, int):
        raise Unknown("* wants int")
    return int(v)


def percent_size(fmt: str, args: Any, limit: int) -> int:
    """``len(fmt % args)`` without building it.

    Raises:
        TooBig: the result, or a text one field builds on the way (``str(x)`` before a
            precision cuts it), would pass ``limit`` characters.
        Unknown: ``fmt % args`` raises at this point (the fields before it were measured).
    """
    escape = _ESCAPE if isinstance(fmt, Markup) else 1
    tuple_args = isinstance(args, tuple)
    mapping = args if (not tuple_args and not isinstance(args, str) and hasattr(type(args), "__getitem__")) else None
    cur, arglen, argidx = args, (len(args) if tuple_args else -1), (0 if tuple_args else -2)
    meter = _Meter(limit)
    total = 0

    def nextarg() -> Any:
        nonlocal argidx
        if argidx < arglen:
            argidx += 1
            return cur if arglen < 0 else cur[argidx - 1]
        raise Unknown("not enough arguments for format string")

    for piece in _percent_fields(fmt):
        if piece[0] == "lit":
            total += piece[1]
        else:
            _, key, flags, width, prec, conv = piece
            if key is not None:
                if mapping is None:
                    raise Unknown("format requires a mapping")
                try:
                    cur = mapping[key]
                except Exception:  # noqa: BLE001 - the real lookup raises the same
                    raise Unknown("key") from None
                arglen, argidx = -1, -2
            w = abs(_int_arg(nextarg())) if width == "*" else int((width or "0")[:30])  # 10**29 > any limit
            p: int | None = _int_arg(nextarg()) if prec == "*" else (int(prec[:30]) if prec is not None else None)
            value = nextarg()
            if conv in "sra":
                length = meter.measure(value, conv) * escape
                if p is not None:
                    length = min(length, max(p, 0))
            elif conv in _NUMERIC:
                if p is not None and p > limit and conv != "c" and not _digits_only(conv in "gG" and "#" not in flags, value):
                    raise TooBig(p)  # (%c ignores its precision; %g's only bounds the digits, measured below)
                one = "%" + flags + (".*" if p is not None else "") + conv
                try:
                    length = len(one % ((p, value) if p is not None else (value,)))
                except Exception:  # noqa: BLE001 - the real field raises the same
                    raise Unknown(conv) from None
            else:
                raise Unknown(f"unsupported format character {conv!r}")
            total += max(w, length)
        if total > limit:
            raise TooBig(total)
    return total


# ----------------------------------------------------------------------------------
# str.format / str.format_map (string.Formatter._vformat, followed step by step)
# ----------------------------------------------------------------------------------

_SPEC = re.compile(
    r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?z?(?P<alt>#)?(?P<zero>0)?(?P<width>\d+)?[_,]?"
    r"(?:\.(?P<prec>\d+))?(?P<type>[bcdeEfFgGnosxX%])?",
    re.S,
)
_DIGITS = re.compile(r"\d+")


def _digits_only(shortest: bool, value: Any) -> bool:
    """Whether a numeric field's precision bounds only the digits of ``value``'s text, which is
    then short whatever the precision: ``shortest`` (a ``g``-style type without ``#``: at most a
    float's exact digits, about 770) or a float that is not finite (``inf``, ``nan``)."""
    return shortest or (isinstance(value, float) and not math.isfinite(value))


def _spec_field_size(value: Any, conv: str | None, spec: str, meter: _Meter) -> int:
    """``len(format(convert(value, conv), spec))`` without building it."""
    if conv is not None or isinstance(value, str):
        length = meter.measure(value, conv or "s")
        if not spec:
            return length
        m = _SPEC.fullmatch(spec)
        if m is None:  # an invalid spec raises; count its widest number to be safe
            return length + max((int(d[:30]) for d in _DIGITS.findall(spec)), default=0)
        if m["prec"] is not None:
            length = min(length, int(m["prec"][:30]))
        return max(int((m["width"] or "0")[:30]), length)
    if isinstance(value, (int, float)):
        m = _SPEC.fullmatch(spec)
        if m is None:
            raise Unknown("invalid format spec")
        width = int((m["width"] or "0")[:30])
        digits_only = _digits_only(m["type"] in (None, "g", "G", "n") and not m["alt"], value)
        if m["prec"] is not None and int(m["prec"][:30]) > meter.limit and not digits_only:
            raise TooBig(int(m["prec"][:30]))
        body = spec[: m.start("width")] + spec[m.end("width") :] if m["width"] else spec
        try:
            return max(width, len(format(value, body)))
        except Exception:  # noqa: BLE001 - the real field raises the same
            raise Unknown("format") from None
    if type(value).__format__ is object.__format__:
        if spec:
            raise Unknown("unsupported format string")  # object.__format__ refuses any spec
        return meter.measure(value, "s")
    try:  # another __format__ (no template-built value has one): its text is small
        return len(format(value, spec))
    except Exception:  # noqa: BLE001
        raise Unknown("format") from None


def format_size(fmt: str, args: tuple, kwargs: Any, limit: int, formatter: string.Formatter) -> int:
    """``len(fmt.format(*args, **kwargs))`` (``format_map``: ``kwargs`` is the mapping)
    without building it; ``formatter`` resolves field names (the sandbox's
    ``SandboxedFormatter``, so an unsafe attribute is refused as the real call refuses it).

    Raises:
        TooBig: the result, or one field's converted value, would pass ``limit`` characters.
        Unknown: the real call raises at this point.
    """
    escape = _ESCAPE if isinstance(fmt, Markup) else 1
    meter = _Meter(limit)

    def size(f: str, depth: int, auto: Any) -> tuple[int, Any]:
        if depth < 0:
            raise Unknown("Max string recursion exceeded")
        total = 0
        try:
            parsed = list(formatter.parse(f))
        except ValueError:
            raise Unknown("parse") from None
        for literal, field, spec, conv in parsed:
            total += len(literal)
            if field is not None:
                if field == "":
                    if auto is False:
                        raise Unknown("cannot switch from manual field numbering")
                    field, auto = str(auto), auto + 1
                elif field.isdigit():
                    if auto:
                        raise Unknown("cannot switch to manual field numbering")
                    auto = False
                try:
                    value, _ = formatter.get_field(field, args, kwargs)
                except Exception:  # noqa: BLE001 - the real call raises the same
                    raise Unknown("field") from None
                if conv not in (None, "s", "r", "a"):
                    raise Unknown("unknown conversion")
                before = auto
                spec_len, auto = size(spec, depth - 1, before)
                if spec_len > limit:
                    raise TooBig(spec_len)
                if "{" in spec:  # a nested field: build the (measured) spec as the real call does
                    spec, _ = formatter._vformat(spec, args, kwargs, set(), depth - 1, auto_arg_index=before)  # noqa: SLF001
                total += _spec_field_size(value, conv, spec, meter) * escape
                if total > limit:
                    raise TooBig(total)
        return total, auto

    return size(fmt, 2, 0)[0]

