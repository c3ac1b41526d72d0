"""``Encoder``: one normalised example → zero or more training rows, plus counters.

This is the per-conversation encode function: ``Encoder.encode`` for one
:class:`~sftdata.schema.Conversation` / :class:`~sftdata.schema.TextExample`, and
``Encoder.map_batch`` for ``datasets.Dataset.map(batched=True)`` over raw rows.

    >>> enc = Encoder(tokenizer)                       # doctest: +SKIP
    >>> rows = enc.encode(conversation)                # list[EncodedExample]
    >>> ds.map(enc.map_batch, batched=True, remove_columns=ds.column_names)  # doctest: +SKIP

Results are values: :meth:`Encoder.encode_rows` returns an :class:`EncodedBatch`, a
:class:`RowResult` per input row (its rows, or the :class:`~sftdata.errors.RowError` that rejects
it, and the row's own :class:`Counters`, which add with ``+``); the batch's counters are the sum
of its rows' counters, computed where they are summed (:attr:`EncodedBatch.counters`), never kept
beside them. JSON is made only where rejects are written (:func:`output_columns` for
``map_batch``, :mod:`sftdata.chunks` for ``rejects.jsonl``).
The options are :class:`~sftdata.options.EncodeOptions` (re-exported here, their former home).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from .masking.control_tokens import check_no_control_tokens, mark_control_tokens
from .masking.encode import ConversationEncoder, EncodedExample, EncodeStats
from .errors import RowError
from .gc_pause import batch_gc_thresholds
from .options import EncodeConfig, EncodeOptions, ReadConfig, RenderConfig, parse_clock
from .masking.render import Renderer, RenderStats
from .schema import Conversation, TextExample
from .masking.stop_tokens import resolve_stop_tokens
from .counters import add_stats
from .masking.template import ChatTemplate
from .masking.tokenizer import control_token_pattern, control_tokens, special_tokens_map, template_source

__all__ = [  # EncodeOptions, parse_clock and the stage configs live in sftdata.options (re-exported: their former home)
    "OUTPUT_COLUMNS", "Counters", "EncodeConfig", "EncodeOptions", "EncodedBatch", "Encoder", "ReadConfig",
    "RenderConfig", "RowResult", "output_columns", "parse_clock", "reads_clock", "sum_counters",
]

#: Output columns of :meth:`Encoder.map_batch` that hold row data (the others are bookkeeping);
#: the same names, in the same order, as :func:`sftdata.output.columns.output_schema`.
OUTPUT_COLUMNS = ("input_ids", "labels", "parent", "position_ids", "length", "linear_length", "source_index")


def reads_clock(template: str) -> bool:
    """Whether a chat template reads the clock (calls ``strftime_now``)."""
    return "strftime_now" in template


@dataclass(slots=True)  # one per row (RowResult.counters): no per-instance dict
class Counters:
    """Counters of rendering and encoding (summed into ``stats.json``): a value that adds.

    ``a + b`` is a new :class:`Counters` (ints add, dicts of ints add per key); neither operand
    changes, and ``Counters()`` is the zero, so ``sum(results_counters, Counters())`` is the total.

    Attributes:
        render: :class:`~sftdata.masking.render.RenderStats` (turns, prompt mismatches, …).
        encode: :class:`~sftdata.masking.encode.EncodeStats` (paths, tokens of one rendering,
            ``dropped_examples``: reason → examples, …).
    """

    render: RenderStats = field(default_factory=RenderStats)
    encode: EncodeStats = field(default_factory=EncodeStats)

    def __add__(self, other: "Counters") -> "Counters":
        if not isinstance(other, Counters):
            return NotImplemented
        out = Counters()
        for total, a, b in ((out.render, self.render, other.render), (out.encode, self.encode, other.encode)):
            add_stats(total, a)
            add_stats(total, b)
        return out

    def __radd__(self, other: Any) -> "Counters":
        # ``sum(..., Counters())`` starts from a Counters; ``sum(...)`` without a start adds to 0
        if isinstance(other, int) and other == 0:
            return self + Counters()
        return NotImplemented

    def to_dict(self) -> dict:
        """Plain nested dicts (``{"render": {...}, "encode": {...}}``)."""
        return asdict(self)


@dataclass(frozen=True)
class RowResult:
    """What one input row became: its training rows, or the :class:`~sftdata.errors.RowError` that
    rejects it, and what the row counted.

    Attributes:
        source_index: the input row index (0-based, across all inputs).
        rows: the row's :class:`~sftdata.masking.encode.EncodedExample` (empty when rejected).
        error: the reject, with ``row`` (= ``source_index``) and ``stage`` filled in; ``None``
            when the row was written.
        counters: this row's :class:`Counters`. A written row counts its rendering and encoding;
            a rejected row counts only what it dropped (``encode.dropped_examples``,
            ``encode.trained_tokens_over_length``, ``encode.trained_tokens_cut``), all else 0.
    """

    source_index: int
    rows: tuple[EncodedExample, ...] = ()
    error: RowError | None = None
    counters: Counters = field(default_factory=Counters)


@dataclass(frozen=True)
class EncodedBatch:
    """:meth:`Encoder.encode_rows` of a batch: one :class:`RowResult` per input row, in order."""

    results: list[RowResult]

    @property
    def counters(self) -> Counters:
        """The batch's :class:`Counters`: the sum of its rows' counters (a new value on each call)."""
        return sum_counters(self.results)


def sum_counters(results: Sequence[RowResult]) -> Counters:
    """The sum of the :attr:`RowResult.counters` of ``results`` (``Counters()`` for none)."""
    total = Counters()  # added in place (a new Counters per row would be O(rows) objects)
    for res in results:
        add_stats(total.render, res.counters.render)
        add_stats(total.encode, res.counters.encode)
    return total


def output_columns(results: Sequence[RowResult], *, rejects: bool = False) -> dict[str, list]:
    """The row data of ``results`` as columns: :data:`OUTPUT_COLUMNS` plus ``kind`` and ``truncated``.

    Args:
        results: per input row, in order.
        rejects: also give each rejected row one placeholder row (empty lists, lengths 0, kind
            ``""``) and a ``reject`` column (the :class:`RowError` as JSON for those, else
            ``None``), as :meth:`Encoder.map_batch` returns; without it rejected rows are left out.

    Returns:
        Column name → list, one entry per written row (``input_ids``/``labels``/``parent``/
        ``position_ids``: int lists; ``length``/``linear_length``: tokens; ``source_index``).
    """
    names = OUTPUT_COLUMNS + ("kind", "truncated") + (("reject",) if rejects else ())
    out: dict[str, list] = {k: [] for k in names}
    for res in results:
        src = res.source_index
        if res.error is not None:
            if rejects:
                for k in OUTPUT_COLUMNS:
                    out[k].append(src if k == "source_index" else (0 if k in ("length", "linear_length") else []))
                out["kind"].append("")
                out["truncated"].append(False)
                out["reject"].append(json.dumps(res.error.to_dict(), ensure_ascii=False))
            continue
        for r in res.rows:
            out["input_ids"].append(r.input_ids)
            out["labels"].append(r.labels)
            out["parent"].append(r.parent)
            out["position_ids"].append(r.position_ids)
            out["length"].append(len(r.input_ids))
            out["linear_length"].append(r.linear_length)
            out["source_index"].append(src)
            out["kind"].append(r.kind)
            out["truncated"].append(r.truncated)
            if rejects:
                out["reject"].append(None)
    return out


class Encoder:
    """Encodes normalised examples with one tokenizer and one chat template.

    Args:
        tokenizer: ``PreTrainedTokenizerFast`` with a chat template.
        options: :class:`EncodeOptions` (or keyword arguments of it); the encoder reads its
            stage configs (``options.read``, ``options.render``, ``options.encode``).

    Attributes:
        counters: read-only; the sum of the :class:`Counters` of every row this encoder returned
            (by :meth:`encode` and :meth:`encode_rows`; each row's own counters are in its
            :class:`RowResult`). Per process: an encoder pickled to workers counts there.

    Raises:
        ConfigError: invalid options or end-of-turn tokens.
    """

    def __init__(self, tokenizer, options: EncodeOptions | None = None, **kwargs: Any) -> None:
        self.options = options or EncodeOptions(**kwargs)
        self.tokenizer = tokenizer
        self._templates: dict[bool, tuple[Renderer, Any]] = {}
        render, encode = self.options.render, self.options.encode
        self.encoder = ConversationEncoder(
            tokenizer,
            policy=render.turn_policy,
            layout=encode.layout,
            max_length=encode.max_length,
            truncation=encode.truncation,
            marked=render.special_tokens_in_content == "text",
            keep_rendering=not render.trim_trailing,
        )
        self.stop = resolve_stop_tokens(tokenizer, render.stop_tokens)
        self.now = render.now()  # one clock reading for every render of this encoder
        self._counters = Counters()

    @property
    def counters(self) -> Counters:
        """The sum of the counters of every row this encoder returned (read-only: nothing resets it)."""
        return self._counters

    def _renderer(self, has_tools: bool) -> tuple[Renderer, Any]:
        """Renderer + control-token pattern for the template transformers would pick."""
        if has_tools not in self._templates:
            o = self.options.render
            source = template_source(self.tokenizer, [{}] if has_tools else None)
            tmpl = ChatTemplate(source, special_tokens_map(self.tokenizer), o.template_kwargs, limits=o.limits(), now=self.now)
            tmpl.budget = o.row_budget()
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
        """The chat template (jinja source) used for rows without tools."""
        return template_source(self.tokenizer, None)

    def encode(self, example: Conversation | TextExample) -> list[EncodedExample]:
        """Encode one example into training rows (already fitted to ``max_length``).

        Returns:
            A non-empty list of :class:`~sftdata.masking.encode.EncodedExample`: one tree row per
            conversation (layout ``tree``), or one row per path (layout ``linear``).

        Raises:
            RowError: the example cannot be encoded correctly, or nothing of it fits
                ``max_length`` (see :class:`~sftdata.errors.Reason`).
        """
        [(res, counters)] = self._finish([self._plan(example)])
        self._counters = self._counters + counters
        if isinstance(res, RowError):
            raise res
        return res

    def _plan(self, example: Conversation | TextExample):
        """Check or mark control-token text, then render: a TextExample, or a Rendered with the
        row's render counters."""
        renderer, pattern = self._renderer(isinstance(example, Conversation) and bool(example.tools))
        if self.options.render.special_tokens_in_content == "text":
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

    def _finish(self, planned: list) -> list[tuple[list[EncodedExample] | RowError, Counters]]:
        """Tokenize the rendered conversations together, then build, check and fit each row:
        per planned row, its rows or the :class:`RowError` that rejects it, with the row's
        :class:`Counters` (see :attr:`RowResult.counters`)."""
        convs = [i for i, p in enumerate(planned) if not isinstance(p, (TextExample, RowError))]
        encoded = dict(zip(convs, self._encode_conversations([planned[i][0] for i in convs])))
        out: list[tuple[list[EncodedExample] | RowError, Counters]] = []
        for i, p in enumerate(planned):
            if isinstance(p, RowError):
                out.append((p, Counters()))
            elif isinstance(p, TextExample):
                stats = EncodeStats()
                try:
                    out.append(([self.encoder.fit_text(self.encoder.encode_text(p), stats)], Counters(encode=stats)))
                except RowError as e:
                    out.append((e.detached(), Counters(encode=stats)))
            else:
                res, stats = encoded[i]
                if isinstance(res, RowError):  # its render counters are not counted: only what it dropped
                    out.append((res.with_context(stage=res.stage or "encode"), Counters(encode=stats)))
                else:
                    out.append((res, Counters(render=p[1], encode=stats)))
        return out

    def _encode_conversations(self, rendered: list) -> list[tuple[list[EncodedExample] | RowError, EncodeStats]]:
        """Per rendered conversation, its rows or the :class:`RowError` that rejects it, and its
        :class:`EncodeStats` (a rejected conversation counts only what it dropped, as ``encode_many`` counts)."""
        return self.encoder.encode_many(rendered)  # texts tokenized together, counters per row

    def encode_rows(self, rows: Sequence[Any], source_indices: Sequence[int]) -> EncodedBatch:
        """Normalise, render and encode a batch of raw rows (their texts tokenized together).

        Args:
            rows: per input row, the row as a dict (any supported format), or the
                :class:`~sftdata.errors.RowError` that already rejects it (a reading error).
            source_indices: the input row index of each row.

        Returns:
            An :class:`EncodedBatch`: a :class:`RowResult` per row, in order (an error has
            ``row`` and ``stage`` filled in), each with the row's :class:`Counters` (their sum,
            :attr:`EncodedBatch.counters`, is also added to :attr:`counters`).
        """
        from .formats import normalize

        o = self.options.read
        planned: list[Any] = []
        with batch_gc_thresholds():  # young collections less often, no full ones (sftdata.gc_pause)
            for row in rows:
                try:
                    if isinstance(row, RowError):
                        raise row
                    try:
                        example = normalize(row, o.format, messages_field=o.messages_field, tools_field=o.tools_field)
                    except RowError as e:
                        raise e.with_context(stage="normalize") from None
                    planned.append(self._plan(example))
                except RowError as e:
                    planned.append(e.detached())  # kept: no traceback holding this frame
            finished = self._finish(planned)
        results = []
        for (res, counters), src in zip(finished, source_indices):
            src = int(src)
            if isinstance(res, RowError):
                results.append(RowResult(src, error=res.with_context(row=src), counters=counters))
            else:
                results.append(RowResult(src, tuple(res), counters=counters))
        batch = EncodedBatch(results)
        self._counters = self._counters + batch.counters
        return batch

    def map_batch(self, batch: Mapping[str, Sequence[Any]], indices: Sequence[int] | None = None) -> dict[str, list]:
        """``Dataset.map(batched=True, with_indices=True)`` function over raw rows.

        Input columns: ``raw`` (the row as JSON text; JSON keeps heterogeneous tool
        arguments exact, where Arrow structs would fill missing keys with null), or ``rows``
        (the rows already parsed, as dicts), and ``source_index``. Output columns: :data:`OUTPUT_COLUMNS` plus ``kind``,
        ``truncated`` and ``reject`` (JSON of the :class:`RowError` for a rejected row,
        whose other columns are empty); see :func:`output_columns`.
        """
        rows = list(batch["rows"]) if "rows" in batch else [json.loads(raw) for raw in batch["raw"]]
        return output_columns(self.encode_rows(rows, batch["source_index"]).results, rejects=True)
