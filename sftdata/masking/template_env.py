"""The sandboxed jinja2 environment chat templates run in, configured like transformers'.

The environment mirrors the one transformers builds in
``transformers.utils.chat_template_utils._cached_compile_jinja_template`` (v4.45–5.x):
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with the
``loopcontrols`` extension, a ``tojson`` filter that does not HTML-escape
(``ensure_ascii=False`` by default, with ``indent``/``separators``/``sort_keys``),
and the globals ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace``, plus
``{% generation %}`` blocks and the size checks of :mod:`sftdata.masking.render_limits`.
:class:`sftdata.masking.template.ChatTemplate` renders with it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from .render_limits import (
    DEFAULT_LIMITS,
    RenderLimitExceeded,
    check_binop,
    check_call,
    limited_filters,
)
from .render_memo import MemoCodeGenerator, note_write


#: Noncharacters that can wrap ``{% generation %}`` output while its spans are tracked; the
#: first pair absent from the conversation is used.
#: Pairs of Unicode noncharacters that mark ``{% generation %}`` blocks in a render (one pair
#: the conversation does not contain is chosen per render).
MARKER_PAIRS = tuple((chr(c), chr(c + 1)) for c in range(0xFDD0, 0xFDF0, 2))
GEN_OPEN, GEN_CLOSE = MARKER_PAIRS[0]


class _GenerationBlock(jinja2.ext.Extension):
    """Accepts ``{% generation %}…{% endgeneration %}``: renders its body unchanged, or wrapped in
    :data:`GEN_OPEN`/:data:`GEN_CLOSE` while the environment's ``mark_generation`` is set."""

    tags = {"generation"}

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        environment.extend(mark_generation=None)

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        marks = self.environment.mark_generation  # type: ignore[attr-defined]
        if marks:
            return marks[0] + caller() + marks[1]
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    """The ``tojson`` filter of transformers' chat-template environment: ``json.dumps`` with its
    arguments (no HTML escaping, unlike jinja2's own ``tojson``)."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """``dict`` for templates without exposing the type object (as transformers does)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """``namespace`` that refuses underscore attributes (sandbox hardening, as transformers)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - jinja's signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)
        note_write(self, name, value)  # journaled while a memoised loop iteration is recorded

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set underscore attribute {name!r} on a namespace")


_DICT_ATTRIBUTES = frozenset(dir(dict))
_BUILTIN_METHOD = type("".startswith)
#: ``str`` methods that read their string and return a bool, int, a list of parts of it, or a
#: string no longer than it (none is a format method, none is size-checked by
#: :func:`~sftdata.masking.render_limits.check_call`)
PURE_STR_METHODS = frozenset({
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "partition",
    "rpartition", "removeprefix", "removesuffix", "find", "rfind", "index", "rindex", "count", "isalnum",
    "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable",
    "isspace", "istitle", "isupper",
})


class _CachedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` whose attribute safety verdicts are memoised.

    jinja2's verdict (``is_internal_attribute``, ``modifies_known_mutable``, the
    underscore rule) depends only on the object's type and the attribute name, so caching
    it per ``(type, name)`` returns exactly what the sandbox would; rendering agent traces
    with tools spends most of its time re-deriving these verdicts otherwise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verdicts: dict[tuple[type, str], bool] = {}
        self._direct: set[tuple[type, str]] = set()

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Fast paths that return exactly what the sandbox would:

        * ``message.role`` on a plain dict: jinja tries the Python attribute first, then the
          item; for names that are not ``dict`` attributes the first try always fails, so go to
          the item directly (item access needs no attribute safety check in jinja either);
        * an attribute the sandbox already judged safe for this type (``str.strip``,
          ``loop.last``, ``ns.flag``), other than ``format``/``format_map`` (which it wraps), is
          read directly.
        """
        t = type(obj)
        if t is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        key = (t, attribute)
        if key in self._direct:
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass
        value = super().getattr(obj, attribute)
        if (
            isinstance(attribute, str)
            and self._verdicts.get(key) is True
            and attribute not in ("format", "format_map")
            and not isinstance(value, jinja2.runtime.Undefined)
        ):
            self._direct.add(key)
        return value

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = super().is_safe_attribute(obj, attr, value)
            if isinstance(attr, str):
                self._verdicts[key] = verdict
        return verdict


class _LimitedSandbox(_CachedSandbox):
    """The sandbox with size checks before operations that build large values in one step
    (see :mod:`sftdata.masking.render_limits`); ``max_chars`` is set per template."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = MemoCodeGenerator  # LimitedCodeGenerator + memoised loops (sftdata.masking.render_memo)
    max_chars: int | None = DEFAULT_LIMITS.max_chars

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str and type(right) is str:  # the common case, kept fast
            if self.max_chars is not None and len(left) + len(right) > self.max_chars:
                check_binop(operator, left, right, self.max_chars)
            return left + right
        if self.max_chars is not None:
            check_binop(operator, left, right, self.max_chars)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja's signature
        """Call ``__obj`` as the sandbox does, after the size checks. A pure ``str`` method that
        builds no larger string (:data:`PURE_STR_METHODS`: ``m.content.startswith('<')``) is
        called directly: for it the size check, the sandbox's checks (not a format method, safe
        to call) and ``Context.call`` (no ``pass_context``) reduce to the call without jinja's
        ``_loop_vars``/``_block_vars`` keywords; so do they for ``namespace(...)`` (the sandbox's own
        :class:`_Namespace`, whose size nothing checks)."""
        if (type(__obj) is _BUILTIN_METHOD and type(__obj.__self__) is str and __obj.__name__ in PURE_STR_METHODS) or __obj is _Namespace:
            if kwargs:
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            try:
                return __obj(*args, **kwargs)
            except StopIteration:  # as Context.call answers it
                return __context.environment.undefined("value was undefined because a callable raised a StopIteration exception")
        if __self.max_chars is not None:
            check_call(__obj, args, kwargs, __self.max_chars, __self._formatter)
        return super().call(__context, __obj, *args, **kwargs)

    @property
    def _formatter(self) -> SandboxedFormatter:
        """Resolves ``str.format`` field names for the size check as the sandbox does."""
        f = self.__dict__.get("_sized_formatter")
        if f is None:
            f = self.__dict__["_sized_formatter"] = SandboxedFormatter(self)
        return f

    def checked_size(self, value: Any) -> Any:
        """Called on every ``~`` result (see :class:`~sftdata.masking.render_limits.LimitedCodeGenerator`)."""
        if self.max_chars is not None and len(value) > self.max_chars:
            raise RenderLimitExceeded(f"'~' built {len(value):,} characters, over the render size limit of {self.max_chars:,}")
        return value


def make_environment() -> ImmutableSandboxedEnvironment:
    """A fresh sandboxed environment configured like transformers' chat-template environment
    (plus the size checks of :mod:`sftdata.masking.render_limits`)."""
    env = _LimitedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters = limited_filters(dict(env.filters), lambda: env.max_chars)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env
