"""Setting up one ``prepare`` run before it reads a row: the tokenizer and its templates, the tools
file, the clock, the encoder, and the job record (``job.json``) that ``--resume`` and ``merge`` compare.

:func:`plan_job` is called by :func:`sftdata.prepare.run_prepare`; the other functions are its parts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .chunks import ChunkEncoder
from .encoder import EncodeOptions, Encoder, reads_clock
from .errors import ConfigError
from .prepare_config import PrepareConfig
from .runner import CHUNK_ROWS
from .hashing import file_digest, short_digest
from .tools_file import load_tools_file


def describe_inputs(inputs: Any) -> list[dict]:
    """Identity of the inputs for ``--resume`` and ``merge`` (files: name, size, mtime)."""
    from .formats.reader import as_sources, directory_files

    out = []
    for src in as_sources(inputs):
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if p.is_dir() and not (p / "state.json").is_file():
                files = directory_files(p)
                listing = "".join(f"{f.relative_to(p).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n" for f in files for st in (f.stat(),))
                out.append({"path": str(p.resolve()), "name": p.name, "files": len(files), "digest": short_digest(listing)})
            elif p.exists():
                st = p.stat()
                out.append({"path": str(p.resolve()), "name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
            else:
                out.append({"path": str(p), "name": p.name})
        else:
            out.append({"object": type(src).__name__})
    return out


def check_templates(tokenizer: Any, chat_template: Any) -> str:
    """Compile the tokenizer's templates once; a syntax error is a ConfigError naming the file."""
    from .masking.template import check_template
    from .masking.tokenizer import template_source

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


def template_reads_clock(tokenizer: Any) -> bool:
    """Whether a chat template transformers would pick for this tokenizer reads the clock."""
    from .masking.tokenizer import template_source

    return any(reads_clock(template_source(tokenizer, tools)) for tools in (None, [{}]))


def run_clock(output: str | Path | None, resume: bool) -> str:
    """The run's one clock reading (ISO 8601): the one a resumed job started with, else now."""
    import json

    from .output.store import JOB_FILE, partial_dir

    if resume and output is not None:
        try:
            job = json.loads((partial_dir(Path(output)) / JOB_FILE).read_text(encoding="utf-8"))
            clock = job["options"]["clock"]
            if isinstance(clock, str):
                return clock
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return datetime.now().isoformat(timespec="seconds")


def load_tokenizer_for(tokenizer: Any, chat_template: Any) -> Any:
    """The tokenizer to use: loaded from a path/Hub id/``None``, its template replaced by ``chat_template``."""
    from .masking.tokenizer import load_tokenizer, read_chat_template

    if tokenizer is None or isinstance(tokenizer, (str, Path)):
        return load_tokenizer(tokenizer, chat_template=chat_template)
    if chat_template is not None:
        tokenizer.chat_template = read_chat_template(chat_template)
    return tokenizer


@dataclass
class Job:
    """A prepared run before it reads a row: the chunk encoder, the output schema, the job record."""

    options: EncodeOptions
    chunk_encoder: ChunkEncoder
    tokenizer_info: dict
    job: dict

    @property
    def schema(self) -> Any:
        """The output ``pyarrow.Schema`` (:func:`sftdata.output.columns.output_schema`)."""
        return self.chunk_encoder.schema


def plan_job(inputs: Any, tokenizer: Any, output: Any, options: EncodeOptions, cfg: PrepareConfig) -> Job:
    """Load the tokenizer, check its templates, read the tools file, fix the clock; the job record.

    Raises:
        ConfigError: a bad tokenizer, chat template or tools file.
    """
    from .masking.tokenizer import fingerprint

    tokenizer = load_tokenizer_for(tokenizer, cfg.chat_template)
    template_text = check_templates(tokenizer, cfg.chat_template)
    tools = load_tools_file(cfg.tools_file, cfg.tools_key, options.tools_field) if cfg.tools_file is not None else None
    if options.clock is None and template_reads_clock(tokenizer):
        options = replace(options, clock=run_clock(output, cfg.resume))
    encoder = Encoder(tokenizer, options)
    chunk_encoder = ChunkEncoder(encoder, tools)
    tokenizer_info = {**fingerprint(tokenizer, template_text), "stop_tokens": list(encoder.stop.tokens),
                      "stop_token_sources": encoder.stop.sources}
    tools_file = None
    if cfg.tools_file is not None:
        digest = file_digest(cfg.tools_file)
        tools_file = {"name": Path(cfg.tools_file).name, "sha256": digest, "key": cfg.tools_key}
    job = {
        "inputs": describe_inputs(inputs),
        "options": options.to_dict(),
        "tokenizer": tokenizer_info,
        "tools_file": tools_file,
        "sharding": cfg.sharding,
        "shard_bytes": cfg.shard_size,
        "chunk_rows": CHUNK_ROWS,
        "columns": [f"{f.name}:{f.type}" for f in chunk_encoder.schema],
    }
    return Job(options, chunk_encoder, tokenizer_info, job)
