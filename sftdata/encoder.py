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
from typing import Any, Mapping, Sequence

from .control_tokens import check_no_control_tokens, mark_control_tokens
from .encode import EncodedExample, EncodeStats, SpanEncoder
from .errors import ConfigError, RowError
from .render import Renderer, RenderStats, TurnPolicy
from .schema import Conversation, TextExample
from .render_limits import RenderLimits
from .template import ChatTemplate
from .tokenizer import control_token_pattern, control_tokens, end_of_turn_tokens, special_tokens_map, template_source


@dataclass
class EncodeOptions:
    """Options of the masking path (see ``docs/masking.md``).

    Attributes:
        turn_policy: ``exact`` | ``all`` | ``last``.
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
        end_of_turn: explicit end-of-turn tokens (default: detected).
        format: input format (``None``: auto-detect per row).
        messages_field / tools_field: keys holding the conversation / the tools.
        render_timeout: wall-clock limit of one template render, seconds (``None``: none);
            a row that exceeds it is rejected ``render_limit``.
        render_max_chars: output-size limit of one template render, characters
            (``None``: none); see :mod:`sftdata.render_limits`.
    """

    turn_policy: str = "exact"
    train_roles: tuple[str, ...] = ("assistant",)
    train_reasoning: bool = True
    trim_trailing: bool = True
    max_length: int | None = None
    truncation: str = "drop"
    template_kwargs: dict = field(default_factory=dict)
    special_tokens_in_content: str = "reject"
    end_of_turn: tuple[str, ...] | None = None
    format: str | None = None
    messages_field: str | None = None
    tools_field: str | None = None
    render_timeout: float | None = 10.0
    render_max_chars: int | None = 16_000_000

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
        try:
            RenderLimits(self.render_timeout, self.render_max_chars)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def to_dict(self) -> dict:
        return asdict(self)


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
        self.span_encoder = SpanEncoder(
            tokenizer,
            policy=self.options.turn_policy,
            max_length=self.options.max_length,
            truncation=self.options.truncation,
            marked=self.options.special_tokens_in_content == "text",
        )
        self.eot = end_of_turn_tokens(tokenizer, self.options.end_of_turn)
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
            )
            o = self.options
            control = control_tokens(self.tokenizer, source)
            renderer = Renderer(
                tmpl,
                self.eot,
                policy=o.turn_policy,
                train_roles=o.train_roles,
                train_reasoning=o.train_reasoning,
                trim_trailing=o.trim_trailing,
                # headers are recognised by control tokens only when content cannot contain them
                control_tokens=control if o.special_tokens_in_content == "reject" else (),
                marked=o.special_tokens_in_content == "text",
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
            A non-empty list of :class:`~sftdata.encode.EncodedExample` (several under
            policy ``exact`` when turns are expanded). Examples dropped by truncation are
            counted in ``counters.encode.dropped_examples``.

        Raises:
            RowError: the example cannot be encoded correctly, or none of its examples
                fits ``max_length`` (see :class:`~sftdata.errors.Reason`).
        """
        return self._finish(self._plan(example))

    def _plan(self, example: Conversation | TextExample):
        """Check or mark control-token text, then render: a TextExample or a list of plans."""
        renderer, pattern = self._renderer(isinstance(example, Conversation) and bool(example.tools))
        if self.options.special_tokens_in_content == "text":
            example = mark_control_tokens(example, pattern)
        else:
            check_no_control_tokens(example, pattern)
        if isinstance(example, TextExample):
            return example
        try:
            return renderer.plan(example, self.counters.render)
        except RowError as e:
            raise e.with_context(stage="render") from None

    def _finish(self, planned, main_tok=None) -> list[EncodedExample]:
        """Tokenize (unless given) and assemble, then fit to ``max_length``."""
        if isinstance(planned, TextExample):
            rows = [self.span_encoder.encode_text(planned)]
        else:
            rows = self.span_encoder.encode_plans(planned, self.counters.encode, main_tok)
        fitted = [self.span_encoder.fit(r, self.counters.encode) for r in rows]
        kept = [r for r, _ in fitted if r is not None]
        if not kept:
            reason = fitted[-1][1]
            shortest = min(len(r.input_ids) for r in rows)
            raise RowError(
                reason,
                f"no example of this row fits max_length={self.options.max_length} ({len(rows)} dropped; the shortest is {shortest} tokens)",
                stage="truncate",
                length=shortest,
            )
        return kept

    def map_batch(self, batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None = None) -> dict[str, list]:
        """``Dataset.map(batched=True, with_indices=True)`` function over raw rows.

        Input columns: ``raw`` (the row as JSON text; JSON keeps heterogeneous tool
        arguments exact, where Arrow structs would fill missing keys with null) and
        ``source_index``. Output columns: ``input_ids``, ``labels``, ``length``,
        ``source_index``, ``kind``, ``truncated`` and ``reject`` (JSON of the
        :class:`RowError` for a rejected row, whose other columns are empty).
        """
        from .formats import normalize

        out: dict[str, list] = {k: [] for k in ("input_ids", "labels", "length", "source_index", "kind", "truncated", "reject")}
        o = self.options
        # 1. parse, normalise and render every row of the batch
        planned: list[Any] = []
        for raw, src in zip(batch["raw"], batch["source_index"]):
            try:
                row = json.loads(raw)
                if isinstance(row, dict) and "__reject__" in row:
                    raise RowError(**row["__reject__"])
                try:
                    example = normalize(row, o.format, messages_field=o.messages_field, tools_field=o.tools_field)
                except RowError as e:
                    raise e.with_context(stage="normalize") from None
                planned.append(self._plan(example))
            except RowError as e:
                planned.append(e.with_context(row=int(src)))
        # 2. tokenize the main rendering of every conversation in one call (the Rust
        #    tokenizer spreads a batch over its threads)
        mains = [i for i, p in enumerate(planned) if isinstance(p, list) and p and p[0].kind == "conversation"]
        main_toks = dict(zip(mains, self.span_encoder.tokenize([planned[i][0].segments[0].text for i in mains]) if mains else []))
        # 3. assemble, check and fit each row
        for i, (p, src) in enumerate(zip(planned, batch["source_index"])):
            if not isinstance(p, RowError):
                try:
                    rows = self._finish(p, main_toks.get(i))
                except RowError as e:
                    p = e.with_context(row=int(src))
            if isinstance(p, RowError):
                out["input_ids"].append([])
                out["labels"].append([])
                out["length"].append(0)
                out["source_index"].append(int(src))
                out["kind"].append("")
                out["truncated"].append(False)
                out["reject"].append(json.dumps(p.to_dict(), ensure_ascii=False))
                continue
            for r in rows:
                out["input_ids"].append(r.input_ids)
                out["labels"].append(r.labels)
                out["length"].append(len(r.input_ids))
                out["source_index"].append(int(src))
                out["kind"].append(r.kind)
                out["truncated"].append(r.truncated)
                out["reject"].append(None)
        return out
