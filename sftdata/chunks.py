"""The worker side of ``prepare``: one chunk of raw input rows → one Arrow record batch,
the chunk's rejects and its accumulators.

A chunk is a list of ``(row_index, RawRow | dict | RowError)`` from
:func:`sftdata.formats.iter_raw_inputs`. Parsing (strict: duplicated keys, lone
surrogates), tool attachment (``--tools-file``), normalising and encoding all happen here,
in the worker; what goes back to the parent is compact: a ``pyarrow.RecordBatch`` of the
output columns (:func:`sftdata.output.columns.output_schema`), the rejects as JSON lines and a
:class:`~sftdata.output.stats.StatsPart` — never Python lists of token ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import RowError
from .formats import RawRow, has_lone_surrogate, row_problem
from .formats.reader import parse_item
from .encoder import output_columns
from .counters import check_counter_sum
from .output.stats import StatsPart, check_row_accounting
from .tools_file import ToolsSpec, load_tools_file

__all__ = ["TEMPLATE_REASONS", "ChunkEncoder", "ChunkResult", "ToolsSpec", "load_tools_file", "reject_line"]

#: Reasons that mean "the chat template could not render this row".
TEMPLATE_REASONS = ("template_error", "render_limit")


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk (pickled: compact values, no token-id lists).

    Attributes:
        first_index / next_index: the input row index of the chunk's first row, and the one
            after its last row (where to resume).
        batch: ``pyarrow.RecordBatch`` of the output columns (:func:`sftdata.output.columns.output_schema`).
        rejects: the chunk's ``rejects.jsonl`` lines (JSON objects without the newline).
        part: the chunk's :class:`~sftdata.output.stats.StatsPart`.
        template_failures / first_failure: rows the chat template could not render, and the
            first one's ``row N: message``.
        first_reject: the first rejected row's :class:`~sftdata.errors.RowError` (``on_error="raise"``).
    """

    first_index: int
    next_index: int
    batch: Any
    rejects: list[str] = field(default_factory=list)
    part: StatsPart = field(default_factory=StatsPart)
    template_failures: int = 0
    first_failure: str | None = None
    first_reject: RowError | None = None


def _original(item: Any, parsed: Any) -> Any:
    if isinstance(parsed, dict):
        return parsed
    if isinstance(item, RawRow):
        return item.text
    if isinstance(item, dict):
        return item
    return None


def reject_line(error: RowError, original: Any) -> str:
    """One ``rejects.jsonl`` line (without the newline): the error's fields and the row as read."""
    d = error.to_dict()
    d["original"] = original
    return json.dumps(d, ensure_ascii=False, default=str)


class ChunkEncoder:
    """Encodes chunks with one :class:`~sftdata.encoder.Encoder` (picklable: send it to workers).

    Args:
        encoder: the :class:`~sftdata.encoder.Encoder`.
        tools: optional :class:`~sftdata.tools_file.ToolsSpec` (``--tools-file``).
    """

    def __init__(self, encoder: Any, tools: ToolsSpec | None = None) -> None:
        from .output.columns import output_schema

        self.encoder = encoder
        self.tools = tools
        self.schema = output_schema()

    def _text(self, index: int, item: Any) -> tuple[Any, Any]:
        """The row for :meth:`Encoder.encode_rows <sftdata.encoder.Encoder.encode_rows>` (parsed;
        the :class:`RowError` for a bad row), and the row as parsed from the input."""
        parsed = parse_item(index, item)
        try:
            if isinstance(parsed, RowError):
                raise parsed
            row = parsed
            if self.tools is not None:
                row = self.tools.attach(row)
            if isinstance(item, RawRow) and row is parsed:
                return parsed, parsed  # strict-parsed from its text already
            text = json.dumps(row, ensure_ascii=False, default=str)
            if has_lone_surrogate(text):
                err = row_problem(row, dup=False)
                if err is not None:
                    raise err
            return json.loads(text), parsed  # plain JSON values, as a JSONL row would give
        except RowError as e:
            return e.with_context(row=index, stage="read"), parsed

    def __call__(self, items: Sequence[tuple[int, Any]]) -> ChunkResult:
        """Encode one chunk of ``(row_index, item)`` pairs.

        The chunk's counters (``part.counters``) are the encoded batch's, the sum of its rows'
        :attr:`RowResult.counters <sftdata.encoder.RowResult.counters>` (rejected rows count what
        they dropped).

        Raises:
            InvariantError: the chunk's rows in ≠ rows out + rows rejected, or its counters ≠ the
                sum of its rows' counters (a bug, never bad data;
                :func:`sftdata.output.stats.check_row_accounting`, :func:`sftdata.counters.check_counter_sum`).
        """
        from .output.columns import column_array

        rows, originals, indices = [], {}, []
        for index, item in items:
            row, parsed = self._text(index, item)
            rows.append(row)
            originals[index] = (item, parsed)
            indices.append(index)
        encoded = self.encoder.encode_rows(rows, indices)
        result = ChunkResult(first_index=indices[0] if indices else 0, next_index=indices[-1] + 1 if indices else 0, batch=None)
        part = result.part
        part.rows_in = len(items)
        written = []
        for res in encoded.results:
            if res.error is None:
                written.append(res)
            else:
                self._reject(result, res.error, _original(*originals[res.source_index]))
        cols = output_columns(written)
        result.batch = batch = _record_batch([column_array(cols[f.name], f.type) for f in self.schema], self.schema)
        part.rows_out = sum(1 for res in written if res.rows)
        if cols["length"]:
            _count_examples(part, batch, self.schema, cols)
        part.counters = encoded.counters.to_dict()
        check_counter_sum(part.counters, (res.counters for res in encoded.results), "the chunk's counters")
        check_row_accounting(part)
        return result

    @staticmethod
    def _reject(result: ChunkResult, error: RowError, original: Any) -> None:
        """Count a rejected row in ``result`` and write its ``rejects.jsonl`` line."""
        result.rejects.append(reject_line(error, original))
        result.part.add_reject(error.reason.value, error.length)
        if result.first_reject is None:
            result.first_reject = error
        if error.reason.value in TEMPLATE_REASONS:
            result.template_failures += 1
            if result.first_failure is None:
                result.first_failure = f"row {error.row}: {error.message}"


def _record_batch(arrays: list, schema: Any) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _count_examples(part: StatsPart, batch: Any, schema: Any, cols: dict) -> None:
    """Add the written examples of ``batch`` to ``part`` (lengths, trained labels, kinds)."""
    import numpy as np

    lengths = np.asarray(batch.column(schema.get_field_index("length")).to_numpy(), dtype=np.int64)
    labels = batch.column(schema.get_field_index("labels")).flatten().to_numpy()
    linear = np.asarray(batch.column(schema.get_field_index("linear_length")).to_numpy(), dtype=np.int64)
    par = batch.column(schema.get_field_index("parent"))
    off = np.asarray(par.offsets, dtype=np.int64)
    part.add_examples(lengths, labels, cols["kind"], cols["truncated"], linear,
                      parent=(par.values.to_numpy()[off[0] : off[-1]], off - off[0]))
