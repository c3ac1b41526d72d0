"""``Encoder``: one normalised example → zero or more training rows, plus counters.

This is the per-conversation encode function: ``Encoder.encode`` for one
:class:`~sftdata.schema.Conversation` / :class:`~sftdata.schema.TextExample`, and
``Encoder.map_batch`` for ``datasets.Dataset.map(batched=True)`` over raw rows.

    >>> enc = Encoder(tokenizer)                       # doctest: +SKIP
    >>> rows = enc.encode(conversation)                # list[EncodedExample]
    >>> ds.map(enc.map_batch, batched=True, remove_columns=ds.column_names)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

from .control_tokens import check_no_control_tokens, mark_control_tokens
from .encode import LAYOUTS, ConversationEncoder, EncodedExample, EncodeStats
from .errors import ConfigError, RowError
from .render import Renderer, RenderStats, TurnPolicy
from .schema import Conversation, TextExample
from .stop_tokens import resolve_stop_tokens
from .render_limits import RenderLimits
from .row_budget import RowBudget
from .stats import add_stats
from .template import ChatTemplate, check_template_kwargs
from .tokenizer import control_token_pattern, control_tokens, special_tokens_map, template_source

#: Output columns of :meth:`Encoder.map_batch` that hold row data (the others are bookkeeping);
#: the same names, in the same order, as :func:`sftdata.columns.output_schema`.
OUTPUT_COLUMNS = ("input_ids", "labels", "parent", "position_ids", "length", "linear_length", "source_index")


@dataclass
class EncodeOptions:
    """Options of the masking path (see ``docs/masking.md``).

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
        stop_tokens: tokens added to the model's stop set (see :mod:`sftdata.stop_tokens`).
        end_of_turn: deprecated name of ``stop_tokens``.
        tool_arguments: ``auto`` (render tool-call arguments as the data gives them, JSON
            text or object, switching to the other form when the template fails on it),
            ``dict`` or ``json``.
        format: input format (``None``: auto-detect per row).
        messages_field / tools_field: keys holding the conversation / the tools.
        render_timeout: wall-clock limit of one template render, seconds (``None``: none);
            a row that exceeds it is rejected ``render_limit``.
        render_max_chars: output-size limit of one template render, characters
            (``None``: none); see :mod:`sftdata.render_limits`.
        max_messages, row_render_max_chars, row_timeout, row_max_memory_mb: the per-row
            budget over all renders of one row (:class:`~sftdata.row_budget.RowBudget`):
            messages, rendered characters in total, wall seconds, and growth of the process's
            resident memory (MiB) while the row renders; ``None`` turns a limit off. A row
            beyond one is rejected ``render_limit`` with the limit named. The defaults admit a
            10,000-message trace (8.1 GB and about 3 minutes with today's renderer).
        clock: the time a template's ``strftime_now`` reads, ISO 8601
            (``2026-01-31T09:00:00``); ``None``: the clock is read once when the run starts
            (``prepare`` records it in ``stats.json``). Every render of the run gets the same
            reading; set it for reproducible outputs of templates that read the clock.
    """

    turn_policy: str = "exact"
    layout: str = "tree"
    train_roles: tuple[str, ...] = ("assistant",)
    train_reasoning: bool = True
    trim_trailing: bool = True
    max_length: int | None = None
    truncation: str = "drop"
    template_kwargs: dict = field(default_factory=dict)
    special_tokens_in_content: str = "reject"
    stop_tokens: tuple[str, ...] | None = None
    end_of_turn: tuple[str, ...] | None = None
    tool_arguments: str = "auto"
    format: str | None = None
    messages_field: str | None = None
    tools_field: str | None = None
    render_timeout: float | None = 10.0
    render_max_chars: int | None = 16_000_000
    clock: str | None = None
    max_messages: int | None = 100_000
    row_render_max_chars: int | None = None
    row_timeout: float | None = 1800.0
    row_max_memory_mb: float | None = 16_384

    def __post_init__(self) -> None:
        try:
            TurnPolicy(self.turn_policy)
        except ValueError:
            raise ConfigError(f"turn_policy must be one of {[p.value for p in TurnPolicy]}, got {self.turn_policy!r}") from None
        if self.truncation not in ("drop", "turns"):
            raise ConfigError(f"truncation must be 'drop' or 'turns', got {self.truncation!r}")
        if self.special_tokens_in_content not in ("reject", "text", "allow"):
            raise ConfigError(f"special_tokens_in_content must be 'reject', 'text' or 'allow', got {self.special_tokens_in_content!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.tool_arguments not in ("auto", "dict", "json"):
            raise ConfigError(f"tool_arguments must be 'auto', 'dict' or 'json', got {self.tool_arguments!r}")
        try:
            check_template_kwargs(self.template_kwargs)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.end_of_turn:
            self.stop_tokens = tuple(dict.fromkeys(tuple(self.stop_tokens or ()) + tuple(self.end_of_turn)))
            self.end_of_turn = None
        try:
            RenderLimits(self.render_timeout, self.render_max_chars)
            self.row_budget()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.clock is not None:  # one spelling (YAML reads a bare timestamp as a datetime)
            self.clock = parse_clock(self.clock).isoformat()

    def row_budget(self) -> RowBudget:
        """The per-row budget these options describe.

        Raises:
            ValueError: a limit that is not positive.
        """
        return RowBudget(self.max_messages, self.row_render_max_chars, self.row_timeout, self.row_max_memory_mb)

    def now(self) -> datetime:
        """The clock reading given to templates (:attr:`clock`, else the current time)."""
        return parse_clock(self.clock) if self.clock is not None else datetime.now()

    def to_dict(self) -> dict:
        return asdict(self)


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


def reads_clock(template: str) -> bool:
    """Whether a chat template reads the clock (calls ``strftime_now``)."""
    return "strftime_now" in template


@dataclass
class Counters:
    """All counters of one encoder, merged across processes into ``stats.json``."""

    render: RenderStats = field(default_factory=RenderStats)
    encode: EncodeStats = field(default_factory=EncodeStats)


class Encoder:
    """Encodes normalised examples with one tokenizer and one chat template.

    Args:
        tokenizer: ``PreTrainedTokenizerFast`` with a chat template.
        options: :class:`EncodeOptions` (or keyword arguments of it).

    Raises:
        ConfigError: invalid options or end-of-turn tokens.
    """

    def __init__(self, tokenizer, options: EncodeOptions | None = None, **kwargs: Any) -> None:
        self.options = options or EncodeOptions(**kwargs)
        self.tokenizer = tokenizer
        self._templates: dict[bool, tuple[Renderer, Any]] = {}
        self.encoder = ConversationEncoder(
            tokenizer,
            policy=self.options.turn_policy,
            layout=self.options.layout,
            max_length=self.options.max_length,
            truncation=self.options.truncation,
            marked=self.options.special_tokens_in_content == "text",
            keep_rendering=not self.options.trim_trailing,
        )
        self.stop = resolve_stop_tokens(tokenizer, self.options.stop_tokens)
        self.now = self.options.now()  # one clock reading for every render of this encoder
        self.counters = Counters()

    def _renderer(self, has_tools: bool) -> tuple[Renderer, Any]:
        """Renderer + control-token pattern for the template transformers would pick."""
        if has_tools not in self._templates:
            source = template_source(self.tokenizer, [{}] if has_tools else None)
            tmpl = ChatTemplate(
                source,
                special_tokens_map(self.tokenizer),
                self.options.template_kwargs,
                limits=RenderLimits(self.options.render_timeout, self.options.render_max_chars),
                now=self.now,
            )
            tmpl.budget = self.options.row_budget()
            o = self.options
            control = control_tokens(self.tokenizer, source)
            renderer = Renderer(
                tmpl,
                self.stop.tokens,
                policy=o.turn_policy,
                train_roles=o.train_roles,
                train_reasoning=o.train_reasoning,
                trim_trailing=o.trim_trailing,
                control_tokens=control,
                # control tokens anchor a rewritten turn only when content cannot pass for them
                anchor_on_control=o.special_tokens_in_content != "allow",
                marked=o.special_tokens_in_content == "text",
                tool_arguments=o.tool_arguments,
            )
            pattern = control_token_pattern(control) if o.special_tokens_in_content in ("reject", "text") else None
            self._templates[has_tools] = (renderer, pattern)
        return self._templates[has_tools]

    def __getstate__(self) -> dict:
        """Pickle without the compiled templates (jinja code objects do not pickle); they are
        rebuilt on first use, so an Encoder works in ``datasets.Dataset.map(num_proc=…)``
        workers and Ray tasks even after it was used in the parent."""
        state = dict(self.__dict__)
        state["_templates"] = {}
        return state

    def template_text(self) -> str:
        return template_source(self.tokenizer, None)

    def encode(self, example: Conversation | TextExample) -> list[EncodedExample]:
        """Encode one example into training rows (already fitted to ``max_length``).

        Returns:
            A non-empty list of :class:`~sftdata.encode.EncodedExample`: one tree row per
            conversation (layout ``tree``), or one row per path (layout ``linear``).

        Raises:
            RowError: the example cannot be encoded correctly, or nothing of it fits
                ``max_length`` (see :class:`~sftdata.errors.Reason`).
        """
        out = self._finish([self._plan(example)])[0]
        if isinstance(out, RowError):
            raise out
        return out

    def _plan(self, example: Conversation | TextExample):
        """Check or mark control-token text, then render: a TextExample, or a Rendered with the
        row's render counters."""
        renderer, pattern = self._renderer(isinstance(example, Conversation) and bool(example.tools))
        if self.options.special_tokens_in_content == "text":
            example = mark_control_tokens(example, pattern)
        else:
            check_no_control_tokens(example, pattern)
        if isinstance(example, TextExample):
            return example
        stats = RenderStats()  # counted only if the row is written (see :meth:`_finish`)
        try:
            return renderer.render(example, stats), stats
        except RowError as e:
            raise e.with_context(stage="render") from None

    def _finish(self, planned: list) -> list[list[EncodedExample] | RowError]:
        """Tokenize the rendered conversations together, then build, check and fit each row."""
        convs = [i for i, p in enumerate(planned) if not isinstance(p, (TextExample, RowError))]
        encoded = dict(zip(convs, self.encoder.encode_many([planned[i][0] for i in convs], self.counters.encode)))
        out: list[list[EncodedExample] | RowError] = []
        for i, p in enumerate(planned):
            if isinstance(p, RowError):
                out.append(p)
            elif isinstance(p, TextExample):
                try:
                    out.append([self.encoder.fit_text(self.encoder.encode_text(p), self.counters.encode)])
                except RowError as e:
                    out.append(e)
            else:
                res = encoded[i]
                if isinstance(res, RowError):
                    out.append(res.with_context(stage=res.stage or "encode"))
                else:
                    add_stats(self.counters.render, p[1])
                    out.append(res)
        return out

    def map_batch(self, batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None = None) -> dict[str, list]:
        """``Dataset.map(batched=True, with_indices=True)`` function over raw rows.

        Input columns: ``raw`` (the row as JSON text; JSON keeps heterogeneous tool
        arguments exact, where Arrow structs would fill missing keys with null), or ``rows``
        (the rows already parsed, as dicts), and ``source_index``. Output columns: :data:`OUTPUT_COLUMNS` plus ``kind``,
        ``truncated`` and ``reject`` (JSON of the :class:`RowError` for a rejected row,
        whose other columns are empty).
        """
        from .formats import normalize

        out: dict[str, list] = {k: [] for k in OUTPUT_COLUMNS + ("kind", "truncated", "reject")}
        o = self.options
        planned: list[Any] = []
        parsed = "rows" in batch
        for raw in batch["rows"] if parsed else batch["raw"]:
            try:
                row = raw if parsed else json.loads(raw)
                if isinstance(row, dict) and "__reject__" in row:
                    raise RowError(**row["__reject__"])
                try:
                    example = normalize(row, o.format, messages_field=o.messages_field, tools_field=o.tools_field)
                except RowError as e:
                    raise e.with_context(stage="normalize") from None
                planned.append(self._plan(example))
            except RowError as e:
                planned.append(e)
        for res, src in zip(self._finish(planned), batch["source_index"]):
            if isinstance(res, RowError):
                res = res.with_context(row=int(src))
                for k in OUTPUT_COLUMNS:
                    out[k].append(int(src) if k == "source_index" else (0 if k in ("length", "linear_length") else []))
                out["kind"].append("")
                out["truncated"].append(False)
                out["reject"].append(json.dumps(res.to_dict(), ensure_ascii=False))
                continue
            for r in res:
                out["input_ids"].append(r.input_ids)
                out["labels"].append(r.labels)
                out["parent"].append(r.parent)
                out["position_ids"].append(r.position_ids)
                out["length"].append(len(r.input_ids))
                out["linear_length"].append(r.linear_length)
                out["source_index"].append(int(src))
                out["kind"].append(r.kind)
                out["truncated"].append(r.truncated)
                out["reject"].append(None)
        return out
