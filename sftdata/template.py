"""Chat-template rendering in jinja2's sandbox, matching ``tokenizer.apply_chat_template``.

The environment mirrors the one transformers builds in
``transformers.utils.chat_template_utils._cached_compile_jinja_template`` (v4.45–5.x):
``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with the
``loopcontrols`` extension, a ``tojson`` filter that does not HTML-escape
(``ensure_ascii=False`` by default, with ``indent``/``separators``/``sort_keys``),
and the globals ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace``.
``{% generation %}…{% endgeneration %}`` blocks are accepted and rendered as plain
text; :meth:`ChatTemplate.render_generation_spans` also returns their character spans
(transformers' ``return_assistant_tokens_mask`` semantics), used by the ``all`` policy.

The variables passed to the template are those transformers passes: ``messages``,
``tools``, ``documents`` (``None``), ``add_generation_prompt``, every entry of
``tokenizer.special_tokens_map`` (``bos_token``, ``eos_token``, …), plus the user's
template kwargs (e.g. ``enable_thinking=False``), which win over special tokens.
Like transformers 5.x, message keys whose value is ``None`` are dropped before
rendering. Equality with ``apply_chat_template`` is tested for every template family.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError, Reason, RowError
from .render_limits import (
    DEFAULT_LIMITS,
    LimitedCodeGenerator,
    RenderLimitExceeded,
    RenderLimits,
    check_binop,
    check_call,
    collect,
    limited_filters,
    time_limit,
)


#: Noncharacters that can wrap ``{% generation %}`` output while its spans are tracked; the
#: first pair absent from the conversation is used.
_MARKER_PAIRS = tuple((chr(c), chr(c + 1)) for c in range(0xFDD0, 0xFDF0, 2))
GEN_OPEN, GEN_CLOSE = _MARKER_PAIRS[0]


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


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
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

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set underscore attribute {name!r} on a namespace")


_DICT_ATTRIBUTES = frozenset(dir(dict))


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
    (see :mod:`sftdata.render_limits`); ``max_chars`` is set per template."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = LimitedCodeGenerator
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
        if __self.max_chars is not None:
            check_call(__obj, args, kwargs, __self.max_chars)
        return super().call(__context, __obj, *args, **kwargs)

    def checked_size(self, value: Any) -> Any:
        """Called on every ``~`` result (see :class:`~sftdata.render_limits.LimitedCodeGenerator`)."""
        if self.max_chars is not None and len(value) > self.max_chars:
            raise RenderLimitExceeded(f"'~' built {len(value):,} characters, over the render size limit of {self.max_chars:,}")
        return value


def make_environment() -> ImmutableSandboxedEnvironment:
    """A fresh sandboxed environment configured like transformers' chat-template environment
    (plus the size checks of :mod:`sftdata.render_limits`)."""
    env = _LimitedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters = limited_filters(dict(env.filters), lambda: env.max_chars)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env


#: Variables every render passes (as transformers' ``apply_chat_template`` does); template
#: kwargs may not set them.
RENDER_VARIABLES = ("messages", "tools", "documents", "add_generation_prompt")


def check_template_kwargs(template_kwargs: Mapping[str, Any] | None) -> None:
    """Refuse template kwargs that set a variable every render passes itself.

    Raises:
        ValueError: naming the variables (:data:`RENDER_VARIABLES`).
    """
    clash = sorted(set(template_kwargs or ()) & set(RENDER_VARIABLES))
    if clash:
        raise ValueError(f"template_kwargs cannot set {', '.join(clash)}: sftdata passes these to the chat template itself")

_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


def _uses_generation_tag(source: str) -> bool:
    """Whether the template source has a ``{% generation %}`` block."""
    return bool(_GENERATION_TAG.search(source))


class ChatTemplate:
    """A compiled chat template with fixed special tokens and template kwargs.

    Args:
        source: the jinja template text.
        special_tokens: ``tokenizer.special_tokens_map`` (``bos_token``, ``eos_token``, …).
        template_kwargs: extra variables, e.g. ``{"enable_thinking": False}``; they
            override special tokens of the same name, as in transformers.
        limits: per-render wall-time and output-size limits
            (:class:`~sftdata.render_limits.RenderLimits`).

    Raises:
        jinja2.TemplateSyntaxError: if the template does not compile.
        ValueError: ``template_kwargs`` sets a variable the renderer passes itself
            (:data:`RENDER_VARIABLES`).
    """

    def __init__(
        self,
        source: str,
        special_tokens: Mapping[str, Any] | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
        limits: RenderLimits = DEFAULT_LIMITS,
    ) -> None:
        check_template_kwargs(template_kwargs)
        self.source = source
        self.limits = limits
        env = make_environment()
        env.max_chars = limits.max_chars
        self._json_memo: dict[Any, tuple[Any, str]] = {}  # id(x) (plain tojson) or (id(x), options) -> (x, text)
        env.filters["tojson"] = self._tojson
        self._env = env
        self._template = env.from_string(source)
        # the template's globals as one dict, so a render's context is made without merging the
        # ``ChainMap`` of globals again (``Template.new_context(shared=True)``: the vars are the
        # context's parent as given; values set here win over globals, as in ``Template.generate``)
        self._globals = dict(self._template.globals)
        self.has_generation_markers = _uses_generation_tag(source)
        self.variables: dict[str, Any] = {**(special_tokens or {}), **(template_kwargs or {})}

    def _tojson(self, x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
        """``tojson`` memoised per object: one conversation is rendered once per turn, and
        its tool schemas and call arguments (the same objects each time) are serialised once.
        The memo keeps a reference to each object, so an id is never reused while cached;
        :meth:`new_conversation` empties it (the sandbox forbids templates to mutate them)."""
        plain = indent is None and separators is None and not sort_keys and not ensure_ascii  # ``x|tojson``
        key: Any = id(x) if plain else (id(x), ensure_ascii, indent, str(separators), sort_keys)
        hit = self._json_memo.get(key)
        if hit is not None and hit[0] is x:
            return hit[1]
        out = _tojson(x, ensure_ascii, indent, separators, sort_keys)
        if not isinstance(x, (dict, list)):
            return out
        self._json_memo[key] = (x, out)
        return out

    def new_conversation(self) -> None:
        """Forget memoised serialisations (call between conversations)."""
        self._json_memo.clear()

    @staticmethod
    def prepare_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Drop ``None``-valued keys, as transformers 5.x does before rendering."""
        return [{k: v for k, v in m.items() if v is not None} for m in messages]

    def render_generation_spans(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None, *, prepared: bool = False
    ) -> tuple[str, list[tuple[int, int]]]:
        """Render and return the character spans of the ``{% generation %}`` blocks.

        Returns:
            ``(text, [(start, end), ...])``: the text exactly as :meth:`render` gives it, and
            the spans of its generation blocks (transformers' ``return_assistant_tokens_mask``
            marks the tokens inside them).

        Raises:
            RowError: ``template_error`` as :meth:`render`.
        """
        seen = json.dumps([messages, tools], ensure_ascii=False, default=str)
        marks = next((p for p in _MARKER_PAIRS if p[0] not in seen and p[1] not in seen), None)
        if marks is None:
            raise RowError(Reason.BAD_TYPE, "the conversation holds every noncharacter U+FDD0–U+FDEF", field="messages")
        self._env.mark_generation = marks  # type: ignore[attr-defined]
        try:
            raw = self.render(messages, tools, prepared=prepared)
        finally:
            self._env.mark_generation = None  # type: ignore[attr-defined]
        gen_open, gen_close = marks
        if raw.count(gen_open) != raw.count(gen_close):
            raise RowError(Reason.TEMPLATE_ERROR, "the template's generation blocks do not nest", field="messages")
        spans: list[tuple[int, int]] = []
        parts: list[str] = []
        removed = depth = pos = 0
        start = 0
        while True:
            i = min((j for j in (raw.find(gen_open, pos), raw.find(gen_close, pos)) if j >= 0), default=-1)
            if i < 0:
                parts.append(raw[pos:])
                break
            parts.append(raw[pos:i])
            here = i - removed
            if raw[i] == gen_open:
                if depth == 0:
                    start = here
                depth += 1
            else:
                depth -= 1
                if depth == 0 and here > start:
                    spans.append((start, here))
            removed += 1
            pos = i + 1
        return "".join(parts), spans

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = False,
        prepared: bool = False,
    ) -> str:
        """Render ``messages`` (template dicts) to text.

        Args:
            prepared: the messages already went through :meth:`prepare_messages`.

        Raises:
            RowError: ``template_error`` carrying the template's own message
                (e.g. "System role not supported") when the template raises;
                ``render_limit`` when the render exceeds :attr:`limits` (time or size), hits
                the sandbox's ``range()`` cap, recurses too deeply or runs out of memory.
        """
        msgs = list(messages) if prepared else self.prepare_messages(messages)
        try:
            with time_limit(self.limits.seconds):
                context = self._template.new_context(
                    {
                        **self._globals,
                        "messages": msgs,
                        "tools": list(tools) if tools is not None else None,
                        "documents": None,
                        "add_generation_prompt": add_generation_prompt,
                        **self.variables,
                    },
                    shared=True,
                )
                return collect(self._template.root_render_func(context), self.limits.max_chars)
        except RenderLimitExceeded as e:
            raise RowError(Reason.RENDER_LIMIT, f"chat template stopped: {e}", field="messages") from None
        except (OverflowError, RecursionError, MemoryError) as e:
            raise RowError(Reason.RENDER_LIMIT, f"chat template stopped: {type(e).__name__}: {e}", field="messages") from None
        except jinja2.exceptions.TemplateError as e:
            raise RowError(Reason.TEMPLATE_ERROR, f"chat template refused the conversation: {e}", field="messages") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise RowError(
                Reason.TEMPLATE_ERROR, f"chat template failed on the conversation: {type(e).__name__}: {e}", field="messages"
            ) from None


def check_template(source: str, origin: str) -> None:
    """Compile ``source`` once to report a syntax error as a configuration error.

    Args:
        source: the template text.
        origin: where it came from, for the message (a file path, or
            ``"the chat template of tokenizer X"``).

    Raises:
        ConfigError: ``"{origin}:{line}: chat template syntax error: {message}"``.
    """
    try:
        make_environment().parse(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ConfigError(f"{origin}:{e.lineno}: chat template syntax error: {e.message}") from None
