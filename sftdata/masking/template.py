"""Chat-template rendering in jinja2's sandbox, matching ``tokenizer.apply_chat_template``.

The environment (:mod:`sftdata.masking.template_env`) mirrors the one transformers builds for
``apply_chat_template``. ``{% generation %}…{% endgeneration %}`` blocks are accepted and rendered as plain
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
from typing import Any, Callable, Mapping, Sequence

import jinja2

from ..errors import ConfigError, Reason, RowError
from .render_limits import DEFAULT_LIMITS, RenderLimitExceeded, RenderLimits, RenderTimeout, collect, collect_split, time_limit, timeout_message
from .render_memo import LoopPlan, RenderMemo, memo_enabled_by_default
from .template_compile import compiled, instantiate, syntax_error
from .template_env import MARKER_PAIRS, make_environment, tojson  # noqa: F401 - make_environment is part of this module's API


#: Variables every render passes (as transformers' ``apply_chat_template`` does); template
#: kwargs may not set them.
RENDER_VARIABLES = ("messages", "tools", "documents", "add_generation_prompt")

#: A conversation of fewer messages renders plainly, not through the render memo (measured with
#: ``bench/memo_threshold.py``: every render masking makes of one conversation, through the
#: renderer, costs the same either way at 16-20 messages on Qwen3's and the default template,
#: plain being up to 1.6x cheaper below and the memo 2.4-3x cheaper at 64).
MEMO_MIN_MESSAGES = 20


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
            (:class:`~sftdata.masking.render_limits.RenderLimits`).
        now: the clock reading ``strftime_now`` gives every render (default: the time this
            template is built); one reading, so renders of one run never differ by the clock.
        memo: memoise the iterations of the template's top-level loops within one conversation
            (:mod:`sftdata.masking.render_memo`; the output is the plain rendering's, character for
            character). Default: on, unless the environment variable ``SFTDATA_RENDER_MEMO`` is
            ``0``. Within a conversation (between :meth:`new_conversation` calls) the message dicts
            and tools passed to :meth:`render` must not be mutated.
        memo_min_messages: render through the memo only conversations of at least this many
            messages (the count given to :meth:`new_conversation`, else the render's own list;
            default :data:`MEMO_MIN_MESSAGES` when ``memo`` is left to its default, 0 when
            ``memo=True`` is asked for): shorter conversations render faster plainly (the memo's
            bookkeeping costs more than the iterations it saves below a couple of dozen messages,
            ``bench/memo_threshold.py``). Either way the text is the plain rendering's.

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
        now: datetime | None = None,
        memo: bool | None = None,
        memo_min_messages: int | None = None,
    ) -> None:
        check_template_kwargs(template_kwargs)
        self.source = source
        self.limits = limits
        env = make_environment()
        env.max_chars = limits.max_chars
        self._json_memo: dict[Any, tuple[Any, str]] = {}  # id(x) (plain tojson) or (id(x), options) -> (x, text)
        env.filters["tojson"] = self._tojson
        self._env = env
        self.memo = memo_enabled_by_default() if memo is None else memo
        if memo_min_messages is None:
            memo_min_messages = 0 if memo else MEMO_MIN_MESSAGES
        self.memo_min_messages = memo_min_messages
        self._conversation_messages: int | None = None
        self._plain_template: jinja2.Template | None = None  # the template as compiled without the memo (made on first use)
        code = compiled(source, bool(self.memo))  # once per process and source (template_compile)
        #: what the memo decided for each top-level loop (empty when the memo is off)
        self.loop_plans: list[LoopPlan] = list(code.plans)
        self._memo: RenderMemo | None = None
        if code.memoised:
            self._memo = env.render_memo = RenderMemo(limits.max_chars)  # type: ignore[attr-defined]
            self._memo.configure(self.loop_plans)
        self._template = instantiate(env, code.code)
        self._tools_list: tuple[Any, list] | None = None  # (tools, list(tools)) of this conversation
        # the template's globals as one dict, so a render's context is made without merging the
        # ``ChainMap`` of globals again (``Template.new_context(shared=True)``: the vars are the
        # context's parent as given; values set here win over globals, as in ``Template.generate``)
        self._globals = dict(self._template.globals)
        # one clock reading for every render (a template that reads the clock, e.g. for
        # "Today is …", renders every prompt of a conversation, and of a run, the same way)
        self.now = now if now is not None else datetime.now()
        self._globals["strftime_now"] = self.now.strftime
        self.has_generation_markers = _uses_generation_tag(source)
        #: a per-row budget charged with every render's characters (:class:`~sftdata.masking.row_budget.RowBudget`)
        self.budget: Any = None
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
        out = tojson(x, ensure_ascii, indent, separators, sort_keys)
        if not isinstance(x, (dict, list)):
            return out
        self._json_memo[key] = (x, out)
        return out

    def new_conversation(self, messages: int | None = None) -> None:
        """Forget memoised serialisations and loop iterations (call between conversations).

        Args:
            messages: the length of the conversation's longest render (the renderer passes the
                count it renders up to). Every render of the conversation then goes through the
                memo, or none does, by this count against ``memo_min_messages``: a conversation
                that went over to the memo midway would record each earlier iteration once more.
                ``None``: each render decides by its own list's length.
        """
        self._conversation_messages = messages
        self._json_memo.clear()
        self._tools_list = None
        if self._memo is not None:
            self._memo.new_conversation()

    def _forget_memo(self) -> None:
        """After a render stopped from outside the template's own code (the time limit raises
        asynchronously, possibly inside the memo's bookkeeping), drop the conversation's memo."""
        if self._memo is not None:
            self._memo.new_conversation()

    def _tools(self, tools: Sequence[Mapping[str, Any]] | None) -> list | None:
        """``list(tools)``, the same list for every render of a conversation given the same tools
        object (memoised loop iterations key outer values by identity)."""
        if tools is None:
            return None
        if self._memo is None:
            return list(tools)
        held = self._tools_list
        if held is None or held[0] is not tools:
            held = self._tools_list = (tools, list(tools))
        return held[1]

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
        marks = next((p for p in MARKER_PAIRS if p[0] not in seen and p[1] not in seen), None)
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
        count: int | None = None,
        training: bool = False,
    ) -> str:
        """Render ``messages`` (template dicts) to text.

        Args:
            prepared: the messages already went through :meth:`prepare_messages`.
            count: render ``messages[:count]`` (default: all). With ``prepared``, renders of one
                conversation that pass the same ``messages`` list (not mutated between them) and
                different counts let the render memo know their message lists share their leading
                items, without comparing them.
            training: this is the conversation's training rendering ``F``: the render memo keeps
                where its loop iterations lie in it, so that :meth:`render_split` against it gives
                replayed iterations as its characters without copying them.

        Raises:
            RowError: ``template_error`` carrying the template's own message
                (e.g. "System role not supported") when the template raises;
                ``render_limit`` when the render exceeds :attr:`limits` (time or size), hits
                the sandbox's ``range()`` cap, recurses too deeply or runs out of memory.
        """
        max_chars = self.limits.max_chars
        out = self._run(messages, tools, add_generation_prompt, prepared, count, lambda pieces: collect(pieces, max_chars), training)
        if self.budget is not None:  # the row's budget over all its renders (a RowError of its own)
            self.budget.charge(len(out))
        return out

    def render_split(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        base: str,
        add_generation_prompt: bool = False,
        prepared: bool = False,
        count: int | None = None,
    ) -> tuple[int, str]:
        """:meth:`render` held against ``base`` (:mod:`sftdata.masking.render_split`).

        Returns:
            ``(shared, tail)``: the rendering is ``base[:shared] + tail`` and ``shared`` is its
            longest common prefix with ``base``. Iterations the render memo replays from ``base``
            (a :meth:`render` with ``training=True`` of the same conversation gave ``base``) are
            not copied: the cost is the characters not shared with ``base``, not the length.

        Raises:
            RowError: as :meth:`render`.
        """
        max_chars = self.limits.max_chars  # without the memo every piece is a string: compared, O(length)
        out = self._run(messages, tools, add_generation_prompt, prepared, count, lambda pieces: collect_split(pieces, max_chars, base), False)
        if self.budget is not None:
            self.budget.charge(out[0] + len(out[1]))
        return out

    def _run(self, messages: Sequence[Mapping[str, Any]], tools: Any, add_generation_prompt: bool, prepared: bool,
             count: int | None, collector: Callable[[Any], Any], training: bool) -> Any:
        """One render: the template's output pieces through ``collector``; errors as :meth:`render` says."""
        base = messages if count is not None and prepared and type(messages) is list else None
        if count is not None:
            messages = messages[:count]
        msgs = list(messages) if prepared and base is None else messages if prepared else self.prepare_messages(messages)
        memo = self._memo
        template = self._template
        size = self._conversation_messages if self._conversation_messages is not None else len(msgs)
        if memo is not None and size < self.memo_min_messages:
            if self._plain_template is None:
                self._plain_template = instantiate(self._env, compiled(self.source, False).code)
            memo, template = None, self._plain_template
        try:
            with time_limit(self.limits.seconds):
                context = template.new_context(
                    {
                        **self._globals,
                        "messages": msgs,
                        "tools": self._tools(tools),
                        "documents": None,
                        "add_generation_prompt": add_generation_prompt,
                        **self.variables,
                    },
                    shared=True,
                )
                if memo is None:
                    out = collector(template.root_render_func(context))
                else:
                    memo.start_render(getattr(self._env, "mark_generation", None), msgs, base)
                    try:
                        out = collector(memo.count(template.root_render_func(context)))
                    finally:
                        memo.finish_render()
                    if training:
                        memo.set_base(out)
        except RenderLimitExceeded as e:
            self._forget_memo()
            raise RowError(Reason.RENDER_LIMIT, f"chat template stopped: {e}", field="messages") from None
        except RenderTimeout:  # delivered asynchronously just after the time limit's block was left
            self._forget_memo()
            raise RowError(Reason.RENDER_LIMIT, f"chat template stopped: {timeout_message(self.limits.seconds)}", field="messages") from None
        except (OverflowError, RecursionError, MemoryError) as e:
            self._forget_memo()
            raise RowError(Reason.RENDER_LIMIT, f"chat template stopped: {type(e).__name__}: {e}", field="messages") from None
        except jinja2.exceptions.TemplateError as e:
            raise RowError(Reason.TEMPLATE_ERROR, f"chat template refused the conversation: {e}", field="messages") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise RowError(
                Reason.TEMPLATE_ERROR, f"chat template failed on the conversation: {type(e).__name__}: {e}", field="messages"
            ) from None
        return out


def check_template(source: str, origin: str) -> None:
    """Compile ``source`` once to report a syntax error as a configuration error.

    Args:
        source: the template text.
        origin: where it came from, for the message (a file path, or
            ``"the chat template of tokenizer X"``).

    Raises:
        ConfigError: ``"{origin}:{line}: chat template syntax error: {message}"``.
    """
    error = syntax_error(source)
    if error is not None:
        raise ConfigError(f"{origin}:{error[0]}: chat template syntax error: {error[1]}") from None
