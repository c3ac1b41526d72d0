"""``prepare``: input files → normalised traces → masked token rows → Arrow on disk, streamed.

    >>> ds = prepare(["traces.jsonl"], tokenizer="Qwen/Qwen3-0.6B", output="out")  # doctest: +SKIP

Rows are read lazily, encoded in chunks (in ``num_proc`` worker processes), and written as
Arrow record batches as they come; statistics are accumulated on the way. Peak memory does
not grow with the input. The output directory is written crash-safely and can be resumed
(:mod:`sftdata.store`); ``num_shards``/``shard_index`` prepare a deterministic part of the
input for a job array, recombined by :func:`sftdata.merge.merge`.

Output directory (``datasets.load_from_disk`` reads it): the columns of
:func:`sftdata.columns.output_schema` (``input_ids``, ``labels``, ``parent``, ``position_ids``,
``length``, ``linear_length``, ``source_index``; ``parent``/``position_ids`` describe prefix-tree
rows, see ``docs/trees.md``), ``stats.json`` (see :mod:`sftdata.stats`) and, when rows were rejected,
``rejects.jsonl`` (one JSON object per rejected row: ``row``, ``stage``, ``reason``,
``field``, ``message``, ``original``; ``length`` for ``too_long``). See ``docs/output.md``.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, replace
from dataclasses import fields as dc_fields
from datetime import datetime
from pathlib import Path
from typing import Any

from .chunks import ChunkEncoder, load_tools_file
from .encoder import EncodeOptions, Encoder, reads_clock
from .errors import ConfigError, RowError
from .merge import shard_of
from .output import STATS_FILE
from .runner import CHUNK_ROWS, chunked, ordered_map
from .stats import ContentHasher, StatsPart, build_stats, length_loss_warning, no_schema_warning, summary

#: Default size of one output file (bytes); a file is closed at the first chunk past it.
DEFAULT_SHARD_BYTES = 256 << 20
#: Rows per block of ``--num-shards`` sharding: block ``b`` goes to shard ``b % num_shards``.
DEFAULT_SHARD_BLOCK = 1024
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


def _describe_inputs(inputs: Any) -> list[dict]:
    """Identity of the inputs for ``--resume`` and ``merge`` (files: name, size, mtime)."""
    from .formats.reader import as_sources, directory_files

    out = []
    for src in as_sources(inputs):
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if p.is_dir() and not (p / "state.json").is_file():
                h = hashlib.sha256()
                files = directory_files(p)
                for f in files:
                    st = f.stat()
                    h.update(f"{f.relative_to(p).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                out.append({"path": str(p.resolve()), "name": p.name, "files": len(files), "digest": h.hexdigest()[:16]})
            elif p.exists():
                st = p.stat()
                out.append({"path": str(p.resolve()), "name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
            else:
                out.append({"path": str(p), "name": p.name})
        else:
            out.append({"object": type(src).__name__})
    return out


def _check_templates(tokenizer: Any, chat_template: Any) -> str:
    """Compile the tokenizer's templates once; a syntax error is a ConfigError naming the file."""
    from .template import check_template
    from .tokenizer import template_source

    if chat_template is not None and not ("{%" in str(chat_template) or "{{" in str(chat_template)):
        origin = str(chat_template)
    else:
        origin = f"the chat template of tokenizer {getattr(tokenizer, 'name_or_path', '') or '(in memory)'}"
    seen = set()
    for tools in (None, [{}]):
        try:
            source = template_source(tokenizer, tools)
        except Exception as e:  # noqa: BLE001 - transformers raises ValueError for a missing template
            raise ConfigError(f"no usable chat template: {e}") from None
        if source not in seen:
            seen.add(source)
            check_template(source, origin)
    return template_source(tokenizer, None)


def _warn_about(stats: dict) -> None:
    """One warning line per thing in the output a user would want to know before training."""
    for check in (no_schema_warning, length_loss_warning):
        line = check(stats) if stats else None
        if line:
            warnings.warn(line, stacklevel=3)


def _reads_clock(tokenizer: Any) -> bool:
    """Whether a chat template transformers would pick for this tokenizer reads the clock."""
    from .tokenizer import template_source

    return any(reads_clock(template_source(tokenizer, tools)) for tools in (None, [{}]))


def _run_clock(output: str | Path | None, resume: bool) -> str:
    """The run's one clock reading (ISO 8601): the one a resumed job started with, else now."""
    import json

    from .store import JOB_FILE, partial_dir

    if resume and output is not None:
        try:
            job = json.loads((partial_dir(Path(output)) / JOB_FILE).read_text(encoding="utf-8"))
            clock = job["options"]["clock"]
            if isinstance(clock, str):
                return clock
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return datetime.now().isoformat(timespec="seconds")


def _options(options: EncodeOptions | None, option_kwargs: dict) -> EncodeOptions:
    if options is None:
        known = {f.name for f in dc_fields(EncodeOptions)}
        unknown = set(option_kwargs) - known
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; valid: {sorted(known)}")
        return EncodeOptions(**option_kwargs)
    if option_kwargs:
        raise ConfigError("pass either options= or option keyword arguments, not both")
    return options


def run_prepare(
    inputs: Any,
    tokenizer: Any = None,
    output: str | Path | None = None,
    *,
    options: EncodeOptions | None = None,
    chat_template: str | Path | None = None,
    num_proc: int = 1,
    on_error: str = "skip",
    progress: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    shard_block: int = DEFAULT_SHARD_BLOCK,
    shard_size: int = DEFAULT_SHARD_BYTES,
    tools_file: str | Path | None = None,
    tools_key: str | None = None,
    allow_empty: bool = False,
    **option_kwargs: Any,
) -> PrepareResult:
    """:func:`prepare` without building a ``datasets.Dataset`` (the CLI's entry point; it
    does not import ``datasets`` or torch for files and directories of files)."""
    from .formats.normalize import check_format
    from .formats.reader import iter_raw_inputs
    from .output import describe_files, fingerprint_files
    from .store import JobDir
    from .tokenizer import fingerprint, load_tokenizer, read_chat_template

    t0 = time.perf_counter()
    if on_error not in ("skip", "raise"):
        raise ConfigError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if num_proc < 1:
        raise ConfigError(f"num_proc must be at least 1, got {num_proc}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard_index must be in 0..{num_shards - 1} (num_shards={num_shards}), got {shard_index}")
    if shard_block < 1 or shard_size < 1:
        raise ConfigError("shard_block and shard_size must be positive")
    if resume and output is None:
        raise ConfigError("resume needs an output directory")
    options = _options(options, option_kwargs)
    check_format(options.format)
    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer, chat_template=chat_template)
    elif chat_template is not None:
        tokenizer.chat_template = read_chat_template(chat_template)
    template_text = _check_templates(tokenizer, chat_template)
    tools = load_tools_file(tools_file, tools_key, options.tools_field) if tools_file is not None else None
    if tools is None and tools_key is not None:
        raise ConfigError("--tools-key needs --tools-file")
    if options.clock is None and _reads_clock(tokenizer):
        options = replace(options, clock=_run_clock(output, resume))
    encoder = Encoder(tokenizer, options)
    chunk_encoder = ChunkEncoder(encoder, tools)
    schema = chunk_encoder.schema
    sharding = {"num_shards": num_shards, "shard_index": shard_index, "block_rows": shard_block} if num_shards > 1 else None
    tokenizer_info = {**fingerprint(tokenizer, template_text), "stop_tokens": list(encoder.stop.tokens),
                      "stop_token_sources": encoder.stop.sources}
    job = {
        "inputs": _describe_inputs(inputs),
        "options": options.to_dict(),
        "tokenizer": tokenizer_info,
        "tools_file": None if tools_file is None else {"name": Path(tools_file).name, "sha256": hashlib.sha256(Path(tools_file).read_bytes()).hexdigest()[:16], "key": tools_key},
        "sharding": sharding,
        "shard_bytes": shard_size,
        "chunk_rows": CHUNK_ROWS,
        "columns": [f"{f.name}:{f.type}" for f in schema],
    }

    jobdir = writer = None
    totals, next_index, seconds_before = StatsPart(), 0, 0.0
    if output is not None:
        from .store import PartWriter

        jobdir = JobDir(output, job, overwrite=overwrite, resume=resume)
        jobdir.open()
        if jobdir.already_complete:
            import json

            stats = json.loads((jobdir.out / STATS_FILE).read_text(encoding="utf-8"))
            return PrepareResult(stats, jobdir.out, already_complete=True)
        first_part, next_index, totals, seconds_before = jobdir.resume_point()
        writer = PartWriter(jobdir.partial, schema, shard_size, first_part)
    resumed = bool(next_index) or bool(jobdir and jobdir.finished)

    def keep(i: int) -> bool:
        return i >= next_index and (num_shards == 1 or shard_of(i, num_shards, shard_block) == shard_index)

    batches: list = []
    template_failures, first_failure = 0, None
    bar = None
    try:
        if not (jobdir and jobdir.finished):
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(unit="row", desc="prepare", dynamic_ncols=True, initial=totals.rows_in)
            last = time.perf_counter()
            source = _Counted(iter_raw_inputs(inputs, keep=keep))
            for result in ordered_map(chunk_encoder, chunked(source), num_proc):
                if on_error == "raise" and result.first_reject is not None:
                    d = result.first_reject
                    raise RowError(d["reason"], d["message"], field=d["field"], row=d["row"], stage=d["stage"], length=d.get("length"))
                totals += result.part
                template_failures += result.template_failures
                first_failure = first_failure or result.first_failure
                if totals.rows_out == 0 and template_failures >= FATAL_TEMPLATE_ROWS:
                    raise ConfigError(
                        f"the chat template failed on each of the first {template_failures} rows it rendered; "
                        f"it cannot render this data (first error: {first_failure})"
                    )
                now = time.perf_counter()
                if writer is not None:
                    writer.add(result.batch, result.rejects, result.part, result.next_index, now - last)
                else:
                    batches.append(result.batch)
                last = now
                if bar is not None:
                    bar.update(result.part.rows_in)
            if not source.total and not allow_empty:
                raise ConfigError("the input has no rows (pass allow_empty=True / --allow-empty to write an empty dataset)")
            if writer is not None:
                writer.commit()
                writer.ensure_one()  # a shard without rows of a non-empty input is still an output
    except (ConfigError, RowError):
        if jobdir is not None:
            jobdir.discard()
        raise
    finally:
        if bar is not None:
            bar.close()

    if jobdir is not None:
        stats = {}  # a finished partial dir already holds its stats.json
        if not jobdir.finished:
            files = jobdir.data_files()
            seconds = seconds_before + (time.perf_counter() - t0)
            stats = build_stats(
                part=totals,
                fingerprint=fingerprint_files(files, schema),
                tokenizer_info=tokenizer_info,
                options=options.to_dict(),
                seconds=seconds,
                data=describe_files(files, jobdir.data_rows()),
                sharding=sharding,
            )
        _warn_about(stats)
        return PrepareResult(jobdir.finalize(stats), jobdir.out, resumed=resumed)
    import pyarrow as pa

    table = pa.Table.from_batches(batches, schema=schema)
    hasher = ContentHasher(schema)
    hasher.update(table)
    stats = build_stats(
        part=totals,
        fingerprint=hasher.hexdigest(),
        tokenizer_info=tokenizer_info,
        options=options.to_dict(),
        seconds=time.perf_counter() - t0,
        sharding=sharding,
    )
    _warn_about(stats)
    return PrepareResult(stats, None, table)


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
    overwrite: bool = False,
    resume: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    shard_block: int = DEFAULT_SHARD_BLOCK,
    shard_size: int = DEFAULT_SHARD_BYTES,
    tools_file: str | Path | None = None,
    tools_key: str | None = None,
    allow_empty: bool = False,
    **option_kwargs: Any,
):
    """Turn traces into masked token rows, streamed.

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
            parts are recombined by :func:`sftdata.merge.merge`.
        shard_size: bytes per output file (``data-NNNNN.arrow``), the unit of ``resume``.
        tools_file, tools_key: tool schemas stored apart, attached to every row (a JSON
            list), or chosen by the row field ``tools_key`` (a JSON object of lists).
        allow_empty: accept an input without rows (else ``ConfigError``).

    Returns:
        ``datasets.Dataset`` with the columns of :func:`sftdata.columns.output_schema`
        (memory-mapped from ``output`` when given). The report is attached as the attribute
        ``sftdata_stats`` (a dict) and written to ``output/stats.json``.

    Raises:
        ConfigError: bad options, tokenizer, chat template (syntax errors name the file
            and line), an existing output without ``overwrite``, an input without rows, or
            a template that fails on every one of the first rows.
        RowError: with ``on_error="raise"``.
    """
    import datasets

    result = run_prepare(
        inputs, tokenizer, output, options=options, chat_template=chat_template, num_proc=num_proc,
        on_error=on_error, progress=progress, overwrite=overwrite, resume=resume, num_shards=num_shards,
        shard_index=shard_index, shard_block=shard_block, shard_size=shard_size, tools_file=tools_file,
        tools_key=tools_key, allow_empty=allow_empty, **option_kwargs,
    )
    if result.output is not None:
        from .output import load_output

        ds = load_output(result.output)
    else:
        ds = datasets.Dataset(result.table)
    if verbose:
        print(summary(result.stats))
    ds.sftdata_stats = result.stats
    return ds


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
    from .tokenizer import load_tokenizer

    tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, (str, Path)) else load_tokenizer(tokenizer)
    return _EncodeFn(Encoder(tok, EncodeOptions(**option_kwargs)))


class _EncodeFn:
    """Picklable callable behind :func:`encode_fn`."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, example: Any) -> dict[str, list]:
        from .formats import normalize
        from .schema import Conversation, TextExample

        o = self.encoder.options
        if not isinstance(example, (Conversation, TextExample)):
            example = normalize(example, o.format, messages_field=o.messages_field, tools_field=o.tools_field)
        rows = self.encoder.encode(example)
        return {
            "input_ids": [r.input_ids for r in rows],
            "labels": [r.labels for r in rows],
            "parent": [r.parent for r in rows],
            "position_ids": [r.position_ids for r in rows],
        }
