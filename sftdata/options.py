"""One frozen, validated config per stage of the masking path, and :class:`EncodeOptions`, their flat union.

* :class:`ReadConfig`: how a raw row is read (``format``, ``messages_field``, ``tools_field``);
* :class:`RenderConfig`: how a conversation is rendered and masked (turn policy, trained roles,
  template variables, stop tokens, render limits, the clock);
* :class:`EncodeConfig`: how a rendered conversation becomes rows (``layout``, ``max_length``,
  ``truncation``).

Each checks its own fields when it is built (a :class:`~sftdata.errors.ConfigError`, one line);
nothing downstream checks them again. :class:`EncodeOptions` is the flat form every entry point
takes (``prepare(turn_policy=...)``, the CLI flags, a pipeline config's keys): building it builds
the three stage configs, available as :attr:`EncodeOptions.read`, :attr:`EncodeOptions.render`
and :attr:`EncodeOptions.encode`. See ``docs/masking.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from .errors import ConfigError
from .masking.render_limits import RenderLimits
from .masking.row_budget import RowBudget

#: Values of ``turn_policy`` (:class:`sftdata.masking.render.TurnPolicy`).
TURN_POLICIES = ("exact", "all", "last")
#: Values of ``layout`` (:data:`sftdata.masking.encode.LAYOUTS`).
LAYOUTS = ("tree", "linear")
#: Values of ``truncation``.
TRUNCATIONS = ("drop", "turns")
#: Values of ``special_tokens_in_content``.
SPECIAL_TOKEN_MODES = ("reject", "text", "allow")
#: Values of ``tool_arguments``.
TOOL_ARGUMENTS = ("auto", "dict", "json")


def _one_of(values: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(v) for v in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def parse_clock(value: str | datetime) -> datetime:
    """An ISO 8601 date or datetime (``2026-01-31`` or ``2026-01-31T09:00:00``).

    Raises:
        ConfigError: naming the value.
    """
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"clock must be an ISO 8601 date or datetime such as 2026-01-31T09:00:00, got {value!r}") from None


@dataclass(frozen=True)
class ReadConfig:
    """How raw rows are read (see ``docs/formats.md``).

    Attributes:
        format: input format, one of :data:`sftdata.formats.FORMATS` (``None``: auto-detect per row).
        messages_field / tools_field: keys holding the conversation / the tools (``None``: the
            format's own).

    Raises:
        ConfigError: an unknown format.
    """

    format: str | None = None
    messages_field: str | None = None
    tools_field: str | None = None

    def __post_init__(self) -> None:
        from .formats.normalize import check_format

        check_format(self.format)


@dataclass(frozen=True)
class RenderConfig:
    """How a conversation is rendered with the chat template and masked (see ``docs/masking.md``).

    Attributes: as the same-named fields of :class:`EncodeOptions`; ``stop_tokens`` already holds
    the deprecated ``end_of_turn`` tokens, and ``clock`` is ISO 8601 text (or ``None``).

    Raises:
        ConfigError: a value outside its choices, bad template variables, a render limit or a
            per-row budget that is not positive, a clock that is not ISO 8601.
    """

    turn_policy: str = "exact"
    train_roles: tuple[str, ...] = ("assistant",)
    train_reasoning: bool = True
    trim_trailing: bool = True
    template_kwargs: dict = field(default_factory=dict)
    special_tokens_in_content: str = "reject"
    stop_tokens: tuple[str, ...] | None = None
    tool_arguments: str = "auto"
    render_timeout: float | None = 10.0
    render_max_chars: int | None = 16_000_000
    clock: str | None = None
    max_messages: int | None = 100_000
    row_render_max_chars: int | None = None
    row_timeout: float | None = 1800.0
    row_max_memory_mb: float | None = 16_384

    def __post_init__(self) -> None:
        from .masking.template import check_template_kwargs

        if self.turn_policy not in TURN_POLICIES:
            raise ConfigError(f"turn_policy must be one of {list(TURN_POLICIES)}, got {self.turn_policy!r}")
        if self.special_tokens_in_content not in SPECIAL_TOKEN_MODES:
            raise ConfigError(f"special_tokens_in_content must be {_one_of(SPECIAL_TOKEN_MODES)}, got {self.special_tokens_in_content!r}")
        if self.tool_arguments not in TOOL_ARGUMENTS:
            raise ConfigError(f"tool_arguments must be {_one_of(TOOL_ARGUMENTS)}, got {self.tool_arguments!r}")
        try:
            check_template_kwargs(self.template_kwargs)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        try:
            self.limits()
            self.row_budget()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.clock is not None:  # one spelling (YAML reads a bare timestamp as a datetime)
            object.__setattr__(self, "clock", parse_clock(self.clock).isoformat())

    def limits(self) -> RenderLimits:
        """The limits of one template render (seconds, characters).

        Raises:
            ValueError: a limit that is not positive.
        """
        return RenderLimits(self.render_timeout, self.render_max_chars)

    def row_budget(self) -> RowBudget:
        """The per-row budget over all renders of one row.

        Raises:
            ValueError: a limit that is not positive.
        """
        return RowBudget(self.max_messages, self.row_render_max_chars, self.row_timeout, self.row_max_memory_mb)

    def now(self) -> datetime:
        """The clock reading given to templates (:attr:`clock`, else the current time)."""
        return parse_clock(self.clock) if self.clock is not None else datetime.now()


@dataclass(frozen=True)
class EncodeConfig:
    """How rendered conversations become rows (see ``docs/trees.md``).

    Attributes:
        layout: ``tree`` (one prefix-tree row per conversation) or ``linear`` (one row per path).
        max_length: maximum tokens per row (``None``: no limit).
        truncation: ``drop`` or ``turns``, for a row over ``max_length``.

    Raises:
        ConfigError: a value outside its choices, a ``max_length`` below 1.
    """

    layout: str = "tree"
    max_length: int | None = None
    truncation: str = "drop"

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation must be {_one_of(TRUNCATIONS)}, got {self.truncation!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")


_READ = tuple(f.name for f in fields(ReadConfig))
_RENDER = tuple(f.name for f in fields(RenderConfig))
_ENCODE = tuple(f.name for f in fields(EncodeConfig))


@dataclass(frozen=True)
class EncodeOptions:
    """Options of the masking path, flat (see ``docs/masking.md``); built, they are three stage configs.

    Building it builds (and so validates, once) :attr:`read` (:class:`ReadConfig`), :attr:`render`
    (:class:`RenderConfig`) and :attr:`encode` (:class:`EncodeConfig`); the stages read those.

    Attributes:
        turn_policy: ``exact`` | ``all`` | ``last``.
        layout: ``tree`` (default: one prefix-tree row per conversation, see ``docs/trees.md``)
            or ``linear`` (every root-to-leaf path its own row).
        train_roles: roles trained by default.
        train_reasoning: train the reasoning text of trained turns.
        trim_trailing: drop untrained messages after the last trained turn.
        max_length: maximum tokens per example (``None``: no limit).
        truncation: ``drop`` | ``turns``.
        template_kwargs: extra template variables, e.g. ``{"enable_thinking": False}``.
        special_tokens_in_content: ``reject`` (default: such rows are rejected with
            ``special_token_in_content``), ``text`` (encode it as plain text, never as a
            control-token id, like transformers' ``sanitize_control_tokens=True``), or
            ``allow`` (it becomes control-token ids, as a bare tokenizer does; unsafe).
        stop_tokens: tokens added to the model's stop set (see :mod:`sftdata.masking.stop_tokens`).
        end_of_turn: deprecated name of ``stop_tokens`` (merged into it; ``None`` once built).
        tool_arguments: ``auto`` (render tool-call arguments as the data gives them, JSON
            text or object, switching to the other form when the template fails on it),
            ``dict`` or ``json``.
        format: input format (``None``: auto-detect per row).
        messages_field / tools_field: keys holding the conversation / the tools.
        render_timeout: wall-clock limit of one template render, seconds (``None``: none);
            a row that exceeds it is rejected ``render_limit``.
        render_max_chars: output-size limit of one template render, characters
            (``None``: none); see :mod:`sftdata.masking.render_limits`.
        max_messages, row_render_max_chars, row_timeout, row_max_memory_mb: the per-row
            budget over all renders of one row (:class:`~sftdata.masking.row_budget.RowBudget`):
            messages, rendered characters in total, wall seconds, and growth of the process's
            resident memory (MiB) while the row renders; ``None`` turns a limit off. A row
            beyond one is rejected ``render_limit`` with the limit named. The defaults admit a
            10,000-message trace. Defaults: those of :class:`RenderConfig` and :class:`EncodeConfig`
            (written once, there).
        clock: the time a template's ``strftime_now`` reads, ISO 8601
            (``2026-01-31T09:00:00``); ``None``: the clock is read once when the run starts
            (``prepare`` records it in ``stats.json``). Every render of the run gets the same
            reading; set it for reproducible outputs of templates that read the clock.

    Raises:
        ConfigError: the first invalid field, in one line (``truncation must be 'drop' or 'turns', got 'x'``).
    """

    turn_policy: str = RenderConfig.turn_policy
    layout: str = EncodeConfig.layout
    train_roles: tuple[str, ...] = RenderConfig.train_roles
    train_reasoning: bool = RenderConfig.train_reasoning
    trim_trailing: bool = RenderConfig.trim_trailing
    max_length: int | None = EncodeConfig.max_length
    truncation: str = EncodeConfig.truncation
    template_kwargs: dict = field(default_factory=dict)
    special_tokens_in_content: str = RenderConfig.special_tokens_in_content
    stop_tokens: tuple[str, ...] | None = RenderConfig.stop_tokens
    end_of_turn: tuple[str, ...] | None = None
    tool_arguments: str = RenderConfig.tool_arguments
    format: str | None = ReadConfig.format
    messages_field: str | None = ReadConfig.messages_field
    tools_field: str | None = ReadConfig.tools_field
    render_timeout: float | None = RenderConfig.render_timeout
    render_max_chars: int | None = RenderConfig.render_max_chars
    clock: str | None = RenderConfig.clock
    max_messages: int | None = RenderConfig.max_messages
    row_render_max_chars: int | None = RenderConfig.row_render_max_chars
    row_timeout: float | None = RenderConfig.row_timeout
    row_max_memory_mb: float | None = RenderConfig.row_max_memory_mb

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.end_of_turn:
            put(self, "stop_tokens", tuple(dict.fromkeys(tuple(self.stop_tokens or ()) + tuple(self.end_of_turn))))
            put(self, "end_of_turn", None)
        render = RenderConfig(**{k: getattr(self, k) for k in _RENDER})
        encode = EncodeConfig(**{k: getattr(self, k) for k in _ENCODE})
        read = ReadConfig(**{k: getattr(self, k) for k in _READ})
        put(self, "clock", render.clock)
        put(self, "read", read)
        put(self, "render", render)
        put(self, "encode", encode)

    @classmethod
    def from_stages(cls, read: ReadConfig, render: RenderConfig, encode: EncodeConfig) -> "EncodeOptions":
        """The options made of three stage configs."""
        return cls(**{f.name: getattr(c, f.name) for c in (read, render, encode) for f in fields(c)})

    def row_budget(self) -> RowBudget:
        """The per-row budget these options describe (:meth:`RenderConfig.row_budget`)."""
        return self.render.row_budget()

    def now(self) -> datetime:
        """The clock reading given to templates (:meth:`RenderConfig.now`)."""
        return self.render.now()

    def to_dict(self) -> dict[str, Any]:
        """The options as a flat dict, in field order (``stats.json``'s ``options``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    """A deep copy of dicts/lists/tuples (as :func:`dataclasses.asdict` gives them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


#: Every flat option name (the keywords of :class:`EncodeOptions`).
OPTION_NAMES = tuple(f.name for f in fields(EncodeOptions))
