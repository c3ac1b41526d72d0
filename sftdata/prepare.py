"""``prepare``: input files → normalised traces → masked token rows → Arrow on disk.

    >>> ds = prepare(["traces.jsonl"], tokenizer="Qwen/Qwen3-0.6B", output="out")  # doctest: +SKIP

Output directory (``datasets.save_to_disk``) columns:

================  ==============  ============================================
``input_ids``     list<int32>     token ids, ``(seq_len,)`` (DFS order for a tree row)
``labels``        list<int32>     same length; ``-100`` or ``input_ids[i]`` (unshifted)
``parent``        list<int32>     tree rows: parent of every token (``-1`` = root);
                                  empty for a single path (see ``docs/trees.md``)
``position_ids``  list<int32>     tree rows: depth of every token; empty for a single path
``length``        int32           ``seq_len`` in tokens
``linear_length`` int32           tokens the same examples need as linear rows
``source_index``  int64           the input row the example came from
================  ==============  ============================================

plus ``stats.json`` (see :mod:`sftdata.stats`) and, when rows were rejected,
``rejects.jsonl`` (one JSON object per rejected row: ``row``, ``stage``, ``reason``,
``field``, ``message``, ``original``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import fields as dc_fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .encoder import Counters, EncodeOptions, Encoder
from .errors import ConfigError, RowError
from .stats import build_stats, content_fingerprint, merge_counters, summary
from .tokenizer import fingerprint, load_tokenizer, read_chat_template

OUTPUT_FEATURES_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("parent", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("length", pa.int32()),
        ("linear_length", pa.int32()),
        ("source_index", pa.int64()),
    ]
)

_CHUNK = 64  # raw rows per work item


def _read_raw(inputs: Any, on_error: str) -> tuple[list[str], int]:
    """All input rows as JSON text (bad rows as ``{"__reject__": …}``) and the row count."""
    from .formats import iter_inputs

    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(r, Mapping) for r in inputs):
        sources = [list(inputs)]  # one in-memory source of row dicts
    else:
        sources = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    raws: list[str] = []
    for idx, row in iter_inputs(list(sources)):
        if isinstance(row, RowError):
            err = row.with_context(row=idx, stage="read")
            if on_error == "raise":
                raise err
            raws.append(json.dumps({"__reject__": err.to_dict()}, ensure_ascii=False))
        else:
            raws.append(json.dumps(row, ensure_ascii=False, default=str))
    return raws, len(raws)


# -- worker side -------------------------------------------------------------------

_WORKER: Encoder | None = None


def _init_worker(tokenizer, options: EncodeOptions) -> None:
    global _WORKER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _WORKER = Encoder(tokenizer, options)


def _work(chunk: tuple[int, list[str]]) -> tuple[dict[str, list], Counters]:
    start, raws = chunk
    assert _WORKER is not None
    _WORKER.counters = Counters()
    out = _WORKER.map_batch({"raw": raws, "source_index": list(range(start, start + len(raws)))})
    return out, _WORKER.counters


def _run(encoder: Encoder, raws: list[str], num_proc: int, on_error: str, progress: bool):
    chunks = [(i, raws[i : i + _CHUNK]) for i in range(0, len(raws), _CHUNK)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(raws), unit="row", desc="prepare", dynamic_ncols=True)
    results: list[tuple[dict[str, list], Counters]] = []

    def consume(res):
        out, counters = res
        if on_error == "raise":
            for rej in out["reject"]:
                if rej is not None:
                    d = json.loads(rej)
                    raise RowError(d["reason"], d["message"], field=d["field"], row=d["row"], stage=d["stage"])
        results.append(res)
        if bar is not None:
            bar.update(len(set(out["source_index"])))

    try:
        if num_proc <= 1:
            for start, chunk in chunks:
                encoder.counters = Counters()
                out = encoder.map_batch({"raw": chunk, "source_index": list(range(start, start + len(chunk)))})
                consume((out, encoder.counters))
        else:
            ctx = get_context("fork") if hasattr(os, "fork") else get_context("spawn")
            with ctx.Pool(num_proc, initializer=_init_worker, initargs=(encoder.tokenizer, encoder.options)) as pool:
                for res in pool.imap(_work, chunks, chunksize=1):
                    consume(res)
    finally:
        if bar is not None:
            bar.close()
    return results


def prepare(
    inputs: Any,
    tokenizer: Any = None,
    output: str | Path | None = None,
    *,
    options: EncodeOptions | None = None,
    chat_template: str | Path | None = None,
    num_proc: int = 1,
    on_error: str = "skip",
    progress: bool = False,
    verbose: bool = False,
    **option_kwargs: Any,
):
    """Turn traces into masked token rows.

    Args:
        inputs: a path (``.jsonl``, ``.json``, ``.parquet``, a ``save_to_disk`` dir), a
            list of paths, a ``datasets.Dataset`` or a list of row dicts.
        tokenizer: a path, a Hub id, a loaded ``PreTrainedTokenizerFast``, or ``None``
            for the embedded default tokenizer.
        output: directory to write (``save_to_disk`` + ``stats.json`` + ``rejects.jsonl``),
            or ``None`` to only return the dataset.
        options: :class:`~sftdata.encoder.EncodeOptions`; or pass its fields as keyword
            arguments (``turn_policy="all"``, ``max_length=4096``, …).
        chat_template: a jinja file replacing the tokenizer's template.
        num_proc: worker processes (1 = in-process).
        on_error: ``"skip"`` (bad rows go to ``rejects.jsonl``) or ``"raise"`` (the first
            bad row raises :class:`~sftdata.errors.RowError` naming row, field and reason).
        progress: show a progress bar; verbose: print the summary.

    Returns:
        ``datasets.Dataset`` with the columns of the module doc. Its ``.info.description`` is empty; the
        report is attached as the attribute ``sftdata_stats`` (a dict) and written to
        ``output/stats.json``.

    Raises:
        ConfigError: bad options or tokenizer; RowError: with ``on_error="raise"``.
    """
    import datasets

    if on_error not in ("skip", "raise"):
        raise ConfigError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if options is None:
        known = {f.name for f in dc_fields(EncodeOptions)}
        unknown = set(option_kwargs) - known
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; valid: {sorted(known)}")
        options = EncodeOptions(**option_kwargs)
    elif option_kwargs:
        raise ConfigError("pass either options= or option keyword arguments, not both")
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer, chat_template=chat_template)
    elif chat_template is not None:
        tokenizer.chat_template = read_chat_template(chat_template)

    t0 = time.perf_counter()
    encoder = Encoder(tokenizer, options)
    raws, rows_in = _read_raw(inputs, on_error)
    results = _run(encoder, raws, num_proc, on_error, progress)

    input_ids: list = []
    labels: list = []
    parent: list = []
    position_ids: list = []
    linear_length: list = []
    source_index: list = []
    kinds: list = []
    truncated: list = []
    rejects: list[dict] = []
    for out, _ in results:
        for i in range(len(out["reject"])):
            if out["reject"][i] is not None:
                rej = json.loads(out["reject"][i])
                rej["original"] = json.loads(raws[out["source_index"][i]])
                rejects.append(rej)
                continue
            input_ids.append(out["input_ids"][i])
            labels.append(out["labels"][i])
            parent.append(out["parent"][i])
            position_ids.append(out["position_ids"][i])
            linear_length.append(out["linear_length"][i])
            source_index.append(out["source_index"][i])
            kinds.append(out["kind"][i])
            truncated.append(out["truncated"][i])
    counters = merge_counters(c for _, c in results)
    lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))
    trained = np.fromiter((sum(1 for v in lab if v != -100) for lab in labels), dtype=np.int64, count=len(labels))
    table = pa.Table.from_arrays(
        [
            pa.array(input_ids, type=pa.list_(pa.int32())),
            pa.array(labels, type=pa.list_(pa.int32())),
            pa.array(parent, type=pa.list_(pa.int32())),
            pa.array(position_ids, type=pa.list_(pa.int32())),
            pa.array(lengths, type=pa.int32()),
            pa.array(linear_length, type=pa.int32()),
            pa.array(source_index, type=pa.int64()),
        ],
        schema=OUTPUT_FEATURES_SCHEMA,
    )
    ds = datasets.Dataset(table)
    seconds = time.perf_counter() - t0
    stats = build_stats(
        rows_in=rows_in,
        source_index=np.asarray(source_index, dtype=np.int64),
        lengths=lengths,
        trained=trained,
        kinds=kinds,
        truncated=np.asarray(truncated, dtype=bool),
        rejects=rejects,
        counters=counters,
        linear_lengths=np.asarray(linear_length, dtype=np.int64),
        fingerprint=content_fingerprint(input_ids, labels, source_index, parent),
        tokenizer_info=fingerprint(tokenizer, encoder.template_text()),
        options=options.to_dict(),
        seconds=seconds,
    )
    if output is not None:
        write_output(ds, stats, rejects, output)
    if verbose:
        print(summary(stats))
    ds.sftdata_stats = stats
    return ds


def write_output(ds, stats: dict, rejects: Sequence[dict], output: str | Path) -> None:
    """Write ``save_to_disk`` + ``stats.json`` + ``rejects.jsonl`` (removed if none)."""
    out = Path(output)
    ds.save_to_disk(str(out))
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rej_path = out / "rejects.jsonl"
    if rejects:
        with rej_path.open("w", encoding="utf-8") as f:
            for r in rejects:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif rej_path.exists():
        rej_path.unlink()


def encode_fn(tokenizer: Any = None, **option_kwargs: Any):
    """A per-conversation encode function for ``datasets.Dataset.map``.

    The returned callable takes one example (a :class:`~sftdata.schema.Conversation`,
    a :class:`~sftdata.schema.TextExample` or a raw row dict in any supported format)
    and returns ``{"input_ids": [[...]], "labels": [[...]], "parent": [[...]],
    "position_ids": [[...]]}`` — lists because ``layout="linear"`` can yield several rows
    per conversation. Use with ``batched=False`` and flatten, or prefer :func:`prepare`.

    Raises:
        RowError: for a bad row.
    """
    from .formats import normalize
    from .schema import Conversation, TextExample

    tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, (str, Path)) else load_tokenizer(tokenizer)
    encoder = Encoder(tok, EncodeOptions(**option_kwargs))

    def fn(example: Any) -> dict[str, list]:
        if not isinstance(example, (Conversation, TextExample)):
            example = normalize(example, encoder.options.format, messages_field=encoder.options.messages_field, tools_field=encoder.options.tools_field)
        rows = encoder.encode(example)
        return {
            "input_ids": [r.input_ids for r in rows],
            "labels": [r.labels for r in rows],
            "parent": [r.parent for r in rows],
            "position_ids": [r.position_ids for r in rows],
        }

    fn.encoder = encoder  # type: ignore[attr-defined]
    return fn
