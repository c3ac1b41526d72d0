"""The worker side of ``prepare``: one chunk of raw input rows → one Arrow record batch,
the chunk's rejects and its accumulators.

A chunk is a list of ``(row_index, RawRow | dict | RowError)`` from
:func:`sftdata.formats.iter_raw_inputs`. Parsing (strict: duplicated keys, lone
surrogates), tool attachment (``--tools-file``), normalising and encoding all happen here,
in the worker; what goes back to the parent is compact: a ``pyarrow.RecordBatch`` of the
output columns (:func:`sftdata.columns.output_schema`), the rejects as JSON lines and a
:class:`~sftdata.stats.StatsPart` — never Python lists of token ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ConfigError, Reason, RowError
from .formats._json import RawRow, has_lone_surrogate, row_problem
from .formats.reader import parse_item
from .stats import StatsPart, counters_to_dict

#: Reasons that mean "the chat template could not render this row".
TEMPLATE_REASONS = ("template_error", "render_limit")


@dataclass(frozen=True)
class ToolsSpec:
    """Tool schemas stored apart from the rows (``--tools-file``), attached to every row.

    Attributes:
        tools: the one tool list for every row (``None`` when ``by_key`` is used).
        by_key: tool lists chosen by the value of the row field ``key_field``.
        key_field: the row field whose value picks the list in ``by_key``.
        target: the row key the tools are written to (``tools`` or ``--tools-field``).
        origin: the file, for messages.
    """

    tools: tuple | None = None
    by_key: Mapping[str, tuple] | None = None
    key_field: str | None = None
    target: str = "tools"
    origin: str = ""

    def attach(self, row: dict) -> dict:
        """``row`` with the tools set.

        Raises:
            RowError: ``bad_tools`` when the row has tools of its own, or its key has no
                entry in the file; ``missing_field`` when the key field is absent.
        """
        own = row.get(self.target)
        if own not in (None, "", [], "[]"):
            raise RowError(Reason.BAD_TOOLS, f"the row has its own tools and {self.origin} gives tools too: keep one", field=self.target, stage="read")
        if self.by_key is None:
            tools = self.tools
        else:
            key = row.get(self.key_field)
            if key is None:
                raise RowError(Reason.MISSING_FIELD, f"no {self.key_field!r} field to choose the tools of {self.origin}", field=self.key_field, stage="read")
            tools = self.by_key.get(str(key))
            if tools is None:
                raise RowError(
                    Reason.BAD_TOOLS, f"{self.origin} has no tools for {self.key_field}={key!r} (keys: {sorted(self.by_key)[:10]})", field=self.key_field, stage="read"
                )
        out = dict(row)
        out[self.target] = [dict(t) for t in tools] if tools else None
        return out


def load_tools_file(path: str | Path, key_field: str | None = None, tools_field: str | None = None) -> ToolsSpec:
    """Read ``--tools-file``: a JSON list of tool schemas, or an object mapping a key to a list.

    Args:
        path: the JSON file.
        key_field: for a mapping, the row field whose value selects the list.
        tools_field: the row key to write the tools to (default ``tools``).

    Raises:
        ConfigError: unreadable file, invalid schemas (with the path inside the file), a
            mapping without ``key_field`` or a list with one.
    """
    from .formats import normalize_tools
    from .formats._json_files import read_text_file

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"tools file {p} does not exist")
    try:
        data = json.loads(read_text_file(p))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"tools file {p}: not valid JSON ({e})") from None

    def norm(value: Any, where: str) -> tuple:
        try:
            return normalize_tools(value, where) or ()
        except RowError as e:
            raise ConfigError(f"tools file {p}: {e.message} at {e.field}") from None

    target = tools_field or "tools"
    if isinstance(data, list):
        if key_field:
            raise ConfigError(f"tools file {p} is one list of tools: --tools-key {key_field} has nothing to choose from")
        return ToolsSpec(tools=norm(data, "tools"), target=target, origin=str(p))
    if isinstance(data, dict):
        if not key_field:
            raise ConfigError(f"tools file {p} maps keys {sorted(data)[:5]} to tool lists: pass --tools-key FIELD (the row field holding the key)")
        return ToolsSpec(by_key={str(k): norm(v, str(k)) for k, v in data.items()}, key_field=key_field, target=target, origin=str(p))
    raise ConfigError(f"tools file {p}: expected a JSON list of tool schemas or an object of such lists")


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk."""

    first_index: int
    next_index: int  # the input row index after the chunk's last row (where to resume)
    batch: Any  # pyarrow.RecordBatch of the output columns
    rejects: list[str] = field(default_factory=list)  # rejects.jsonl lines (no newline)
    part: StatsPart = field(default_factory=StatsPart)
    template_failures: int = 0
    first_failure: str | None = None
    first_reject: dict | None = None


def _original(item: Any, parsed: Any) -> Any:
    if isinstance(parsed, dict):
        return parsed
    if isinstance(item, RawRow):
        return item.text
    if isinstance(item, dict):
        return item
    return None


class ChunkEncoder:
    """Encodes chunks with one :class:`~sftdata.encoder.Encoder` (picklable: send it to workers).

    Args:
        encoder: the :class:`~sftdata.encoder.Encoder`.
        tools: optional :class:`ToolsSpec` (``--tools-file``).
    """

    def __init__(self, encoder: Any, tools: ToolsSpec | None = None) -> None:
        from .columns import output_schema

        self.encoder = encoder
        self.tools = tools
        self.schema = output_schema()

    def _text(self, index: int, item: Any) -> tuple[Any, Any]:
        """The row for ``Encoder.map_batch`` (parsed; a reject marker for a bad row), and the
        row as parsed from the input."""
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
            return {"__reject__": e.with_context(row=index, stage="read").to_dict()}, parsed

    def __call__(self, items: Sequence[tuple[int, Any]]) -> ChunkResult:
        import numpy as np
        import pyarrow as pa

        from .columns import column_array

        enc = self.encoder
        texts, originals, indices = [], [], []
        for index, item in items:
            text, parsed = self._text(index, item)
            texts.append(text)
            originals.append((item, parsed))
            indices.append(index)
        enc.counters = type(enc.counters)()
        out = enc.map_batch({"rows": texts, "source_index": indices})
        pos = {idx: k for k, idx in enumerate(indices)}
        result = ChunkResult(first_index=indices[0] if indices else 0, next_index=indices[-1] + 1 if indices else 0, batch=None)
        part = result.part
        part.rows_in = len(items)
        ok: list[int] = []
        for i, rej in enumerate(out["reject"]):
            if rej is None:
                ok.append(i)
                continue
            d = json.loads(rej)
            item, parsed = originals[pos[int(out["source_index"][i])]]
            d["original"] = _original(item, parsed)
            result.rejects.append(json.dumps(d, ensure_ascii=False, default=str))
            part.add_reject(d["reason"], d.get("length"))
            if result.first_reject is None:
                result.first_reject = {k: v for k, v in d.items() if k != "original"}
            if d["reason"] in TEMPLATE_REASONS:
                result.template_failures += 1
                if result.first_failure is None:
                    result.first_failure = f"row {d['row']}: {d['message']}"
        full = len(ok) == len(out["reject"])
        arrays = [column_array(out[f.name] if full else [out[f.name][i] for i in ok], f.type) for f in self.schema]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        result.batch = batch
        part.rows_out = len({out["source_index"][i] for i in ok})
        if ok:
            lengths = np.asarray(batch.column(self.schema.get_field_index("length")).to_numpy(), dtype=np.int64)
            labels = batch.column(self.schema.get_field_index("labels")).flatten().to_numpy()
            linear = np.asarray(batch.column(self.schema.get_field_index("linear_length")).to_numpy(), dtype=np.int64)
            part.add_examples(lengths, labels, [out["kind"][i] for i in ok], [out["truncated"][i] for i in ok], linear)
        part.counters = counters_to_dict(enc.counters)
        assert part.rows_in == part.rows_out + part.rows_rejected, (part.rows_in, part.rows_out, part.rows_rejected)
        return result
