"""``prepare``: input files → normalised traces → masked token rows → Arrow on disk, streamed.

    >>> ds = prepare(["traces.jsonl"], tokenizer="Qwen/Qwen3-0.6B", output="out")  # doctest: +SKIP

Rows are read lazily, encoded in chunks (in ``num_proc`` worker processes), and written as
Arrow record batches as they come; statistics are accumulated on the way. Peak memory does
not grow with the input. The output directory is written crash-safely and can be resumed
(:mod:`sftdata.output.store`); ``num_shards``/``shard_index`` prepare a deterministic part of the
input for a job array, recombined by :func:`sftdata.output.merge.merge`.

Output directory (``datasets.load_from_disk`` reads it): the columns of
:func:`sftdata.output.columns.output_schema` (``input_ids``, ``labels``, ``parent``, ``position_ids``,
``length``, ``linear_length``, ``source_index``; ``parent``/``position_ids`` describe prefix-tree
rows, see ``docs/trees.md``), ``stats.json`` (see :mod:`sftdata.output.stats`) and, when rows were rejected,
``rejects.jsonl`` (one JSON object per rejected row: ``row``, ``stage``, ``reason``,
``field``, ``message``, ``original``; ``length`` for ``too_long``). See ``docs/output.md``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .encoder import EncodeOptions, Encoder
from .errors import ConfigError
from .output.merge import shard_of
from .output.load import STATS_FILE
from .prepare_config import DEFAULT_SHARD_BLOCK, DEFAULT_SHARD_BYTES, RUN_NAMES, PrepareConfig, prepare_signature, split_keywords
from .prepare_job import Job, plan_job
from .runner import chunked, ordered_map
from .hashing import ContentHasher
from .output.stats import StatsPart, build_stats, length_loss_warning, no_schema_warning, summary

__all__ = ["DEFAULT_SHARD_BLOCK", "DEFAULT_SHARD_BYTES", "FATAL_TEMPLATE_ROWS", "PrepareConfig", "PrepareResult",
           "encode_fn", "prepare", "run_prepare"]

#: A run whose first this-many rendered rows all fail in the chat template stops.
FATAL_TEMPLATE_ROWS = 16


@dataclass
class PrepareResult:
    """What :func:`run_prepare` returns: the stats, and the output dir or in-memory table."""

    stats: dict
    output: Path | None = None
    table: Any = None  # pyarrow.Table when no output dir
    resumed: bool = False
    already_complete: bool = False


class _Counted:
    """Iterate a reader generator and keep its return value: the number of input rows."""

    def __init__(self, gen: Any) -> None:
        self.gen = gen
        self.total: int | None = None

    def __iter__(self):
        self.total = yield from self.gen


def _warn_about(stats: dict) -> None:
    """One warning line per thing in the output a user would want to know before training."""
    for check in (no_schema_warning, length_loss_warning):
        line = check(stats) if stats else None
        if line:
            warnings.warn(line, stacklevel=4)  # the caller of run_prepare (prepare, or the CLI)


def _encode_chunks(inputs: Any, plan: Job, cfg: PrepareConfig, totals: StatsPart, next_index: int, sink: Any) -> StatsPart:
    """Read, encode and hand every chunk to ``sink(result, seconds)``; the totals (``totals`` plus
    every chunk's).

    Raises:
        RowError: the first bad row, with ``on_error="raise"``.
        ConfigError: the template failed on each of the first rows, or the input has no rows
            (without ``allow_empty``).
    """
    from .formats.reader import iter_raw_inputs

    def keep(i: int) -> bool:
        return i >= next_index and (cfg.num_shards == 1 or shard_of(i, cfg.num_shards, cfg.shard_block) == cfg.shard_index)

    template_failures, first_failure, bar = 0, None, None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="row", desc="prepare", dynamic_ncols=True, initial=totals.rows_in)
    try:
        last = time.perf_counter()
        source = _Counted(iter_raw_inputs(inputs, keep=keep))
        for result in ordered_map(plan.chunk_encoder, chunked(source), cfg.num_proc):
            if cfg.on_error == "raise" and result.first_reject is not None:
                raise result.first_reject
            totals += result.part
            template_failures += result.template_failures
            first_failure = first_failure or result.first_failure
            if totals.rows_out == 0 and template_failures >= FATAL_TEMPLATE_ROWS:
                raise ConfigError(
                    f"the chat template failed on each of the first {template_failures} rows it rendered; "
                    f"it cannot render this data (first error: {first_failure})"
                )
            now = time.perf_counter()
            sink(result, now - last)
            last = now
            if bar is not None:
                bar.update(result.part.rows_in)
        if not source.total and not cfg.allow_empty:
            raise ConfigError("the input has no rows (pass allow_empty=True / --allow-empty to write an empty dataset)")
    finally:
        if bar is not None:
            bar.close()
    return totals


def _prepare_to_dir(inputs: Any, output: Any, plan: Job, cfg: PrepareConfig, t0: float) -> PrepareResult:
    """The run writing ``output`` (crash-safe, resumable; :mod:`sftdata.output.store`)."""
    import json

    from .errors import RowError
    from .output.load import describe_files, fingerprint_files
    from .output.store import JobDir, PartWriter

    jobdir = JobDir(output, plan.job, overwrite=cfg.overwrite, resume=cfg.resume)
    jobdir.open()
    if jobdir.already_complete:
        stats = json.loads((jobdir.out / STATS_FILE).read_text(encoding="utf-8"))
        return PrepareResult(stats, jobdir.out, already_complete=True)
    first_part, next_index, totals, seconds_before = jobdir.resume_point()
    resumed = bool(next_index) or jobdir.finished
    stats: dict = {}  # a finished partial dir already holds its stats.json
    if not jobdir.finished:
        writer = PartWriter(jobdir.partial, plan.schema, cfg.shard_size, first_part)
        try:
            totals = _encode_chunks(inputs, plan, cfg, totals, next_index,
                                    lambda r, dt: writer.add(r.batch, r.rejects, r.part, r.next_index, dt))
            writer.commit()
            writer.ensure_one()  # a shard without rows of a non-empty input is still an output
        except (ConfigError, RowError):
            jobdir.discard()
            raise
        files = jobdir.data_files()
        stats = build_stats(
            part=totals, fingerprint=fingerprint_files(files, plan.schema), tokenizer_info=plan.tokenizer_info,
            options=plan.options.to_dict(), seconds=seconds_before + (time.perf_counter() - t0),
            data=describe_files(files, jobdir.data_rows()), sharding=cfg.sharding,
        )
    _warn_about(stats)
    return PrepareResult(jobdir.finalize(stats), jobdir.out, resumed=resumed)


def _prepare_in_memory(inputs: Any, plan: Job, cfg: PrepareConfig, t0: float) -> PrepareResult:
    """The run without an output dir: one ``pyarrow.Table`` of every row."""
    import pyarrow as pa

    batches: list = []
    totals = _encode_chunks(inputs, plan, cfg, StatsPart(), 0, lambda r, dt: batches.append(r.batch))
    table = pa.Table.from_batches(batches, schema=plan.schema)
    hasher = ContentHasher(plan.schema)
    hasher.update(table)
    stats = build_stats(part=totals, fingerprint=hasher.hexdigest(), tokenizer_info=plan.tokenizer_info,
                        options=plan.options.to_dict(), seconds=time.perf_counter() - t0, sharding=cfg.sharding)
    _warn_about(stats)
    return PrepareResult(stats, None, table)


def run_prepare(inputs: Any, tokenizer: Any = None, output: str | Path | None = None, *,
                options: EncodeOptions | None = None, config: PrepareConfig | None = None, **keywords: Any) -> PrepareResult:
    """:func:`prepare` without building a ``datasets.Dataset`` (the CLI's entry point; it
    does not import ``datasets`` or torch for files and directories of files).

    The keywords are those of :func:`prepare` (:data:`sftdata.prepare_config.PREPARE_KEYWORDS`);
    ``config`` gives the run's keywords as one :class:`~sftdata.prepare_config.PrepareConfig`
    instead (then only option keywords may be passed).

    Returns:
        A :class:`PrepareResult`.

    Raises:
        ConfigError, RowError: as :func:`prepare`.
    """
    t0 = time.perf_counter()
    if config is not None and set(keywords) & set(RUN_NAMES):
        raise ConfigError("pass either config= or run keyword arguments, not both")
    given, options = split_keywords(options, keywords)
    config = config or given
    if config.resume and output is None:
        raise ConfigError("resume needs an output directory")
    plan = plan_job(inputs, tokenizer, output, options, config)
    if output is not None:
        return _prepare_to_dir(inputs, output, plan, config, t0)
    return _prepare_in_memory(inputs, plan, config, t0)


def prepare(inputs: Any, tokenizer: Any = None, output: str | Path | None = None, *,
            options: EncodeOptions | None = None, **keywords: Any):
    """Turn traces into masked token rows, streamed.

    The keywords are the fields of :class:`~sftdata.prepare_config.PrepareConfig` (how the run
    goes) and of :class:`~sftdata.options.EncodeOptions` (how rows are read, rendered and
    encoded); ``inspect.signature(prepare)`` lists them all with their defaults.

    Args:
        inputs: a path (``.jsonl``, ``.json``, ``.traj``, ``.parquet``, a directory of such
            files or a ``save_to_disk`` dir), a list of paths, a ``datasets.Dataset`` /
            ``IterableDataset``, or any iterable of row dicts (a generator is consumed
            lazily: it is the entry point for other sources).
        tokenizer: a path, a Hub id, a loaded ``PreTrainedTokenizerFast``, or ``None``
            for the embedded default tokenizer.
        output: directory to write, or ``None`` to return an in-memory dataset (whose
            size then grows with the input).
        options: :class:`~sftdata.encoder.EncodeOptions`; or pass its fields as keyword
            arguments (``turn_policy="all"``, ``max_length=4096``, ``render_timeout=5``, …).
        chat_template: a jinja file replacing the tokenizer's template.
        num_proc: worker processes (1 = in-process).
        on_error: ``"skip"`` (bad rows go to ``rejects.jsonl``) or ``"raise"`` (the first
            bad row raises :class:`~sftdata.errors.RowError` naming row, field and reason).
        progress: show a progress bar; verbose: print the summary.
        overwrite: replace an existing ``output`` (else it is an error, as for ``pack``).
        resume: continue a killed job into ``output`` from its last committed file.
        num_shards, shard_index: prepare only the rows of blocks ``b`` (``shard_block``
            rows each, by input row index) with ``b % num_shards == shard_index``; the
            parts are recombined by :func:`sftdata.output.merge.merge`.
        shard_size: bytes per output file (``data-NNNNN.arrow``), the unit of ``resume``.
        tools_file, tools_key: tool schemas stored apart, attached to every row (a JSON
            list, or ``{"tools": [...]}``), or chosen by the row field ``tools_key`` (a JSON
            object of lists); see :mod:`sftdata.tools_file`.
        allow_empty: accept an input without rows (else ``ConfigError``).

    Returns:
        ``datasets.Dataset`` with the columns of :func:`sftdata.output.columns.output_schema`
        (memory-mapped from ``output`` when given). The report is attached as the attribute
        ``sftdata_stats`` (a dict) and written to ``output/stats.json``.

    Raises:
        ConfigError: bad options, tokenizer, chat template (syntax errors name the file
            and line), an existing output without ``overwrite``, an input without rows, or
            a template that fails on every one of the first rows.
        RowError: with ``on_error="raise"``.
    """
    import datasets

    config, options = split_keywords(options, keywords)
    result = run_prepare(inputs, tokenizer, output, options=options, config=config)
    if result.output is not None:
        from .output.load import load_output

        ds = load_output(result.output)
    else:  # the content fingerprint already hashes every column: datasets need not hash the table again
        ds = datasets.Dataset(result.table, fingerprint=result.stats["content_fingerprint"])
    if config.verbose:
        print(summary(result.stats))
    ds.sftdata_stats = result.stats
    return ds


prepare.__signature__ = prepare_signature()  # type: ignore[attr-defined]
run_prepare.__signature__ = prepare_signature(internal=True)  # type: ignore[attr-defined]


def encode_fn(tokenizer: Any = None, **option_kwargs: Any):
    """A per-conversation encode function for ``datasets.Dataset.map``.

    The returned callable takes one example (a :class:`~sftdata.schema.Conversation`,
    a :class:`~sftdata.schema.TextExample` or a raw row dict in any supported format)
    and returns ``{"input_ids": [[...]], "labels": [[...]], "parent": [[...]],
    "position_ids": [[...]]}`` (int lists; ``parent``/``position_ids`` describe a prefix-tree row
    and are empty for a single path, see docs/trees.md: a consumer that drops them would train
    every branch as if it continued the trunk; pass ``layout="linear"`` for single-path rows
    only) — lists because one conversation can yield several rows under the linear layout. Use with
    ``batched=False`` and flatten, or prefer :func:`prepare`. The function pickles (its
    :class:`~sftdata.encoder.Encoder` rebuilds its compiled templates in each worker), so
    ``num_proc`` works.

    Raises:
        RowError: for a bad row.
    """
    from .masking.tokenizer import load_tokenizer

    tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, (str, Path)) else load_tokenizer(tokenizer)
    return _EncodeFn(Encoder(tok, EncodeOptions(**option_kwargs)))


class _EncodeFn:
    """Picklable callable behind :func:`encode_fn`."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, example: Any) -> dict[str, list]:
        from .formats import normalize
        from .schema import Conversation, TextExample

        o = self.encoder.options.read
        if not isinstance(example, (Conversation, TextExample)):
            example = normalize(example, o.format, messages_field=o.messages_field, tools_field=o.tools_field)
        rows = self.encoder.encode(example)
        return {
            "input_ids": [r.input_ids for r in rows],
            "labels": [r.labels for r in rows],
            "parent": [r.parent for r in rows],
            "position_ids": [r.position_ids for r in rows],
        }
