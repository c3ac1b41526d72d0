"""The keywords of :func:`sftdata.prepare`, written once.

``prepare``/``run_prepare`` take ``inputs``, ``tokenizer``, ``output``, ``options`` and keywords
that are exactly the fields of :class:`PrepareConfig` (how the run goes) and of
:class:`~sftdata.options.EncodeOptions` (how rows are read, rendered and encoded).
:func:`split_keywords` sorts them into the two configs, each validated where it is built;
:func:`prepare_signature` is the signature ``help(sftdata.prepare)`` shows, made from the same
fields; ``sftdata prepare``'s flags are checked against them by ``tests/prepare/test_prepare_config.py``.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .options import OPTION_NAMES, EncodeOptions

#: Default size of one output file (bytes); a file is closed at the first chunk past it.
DEFAULT_SHARD_BYTES = 256 << 20
#: Rows per block of ``--num-shards`` sharding: block ``b`` goes to shard ``b % num_shards``.
DEFAULT_SHARD_BLOCK = 1024
#: Values of ``on_error``.
ON_ERROR = ("skip", "raise")


@dataclass(frozen=True)
class PrepareConfig:
    """How one ``prepare`` run goes: everything but what it reads and how rows are masked.

    Attributes:
        chat_template: a jinja file (or template text) replacing the tokenizer's template.
        num_proc: worker processes (1 = in-process).
        on_error: ``"skip"`` (bad rows go to ``rejects.jsonl``) or ``"raise"``.
        progress: show a progress bar; verbose: print the summary (``prepare`` only).
        overwrite: replace an existing output; resume: continue a killed job into it.
        num_shards, shard_index, shard_block: prepare only the rows of blocks ``b``
            (``shard_block`` rows each) with ``b % num_shards == shard_index``.
        shard_size: bytes per output file (the unit of ``resume``).
        tools_file, tools_key: tool schemas stored apart (:mod:`sftdata.tools_file`).
        allow_empty: accept an input without rows.

    Raises:
        ConfigError: one line naming the first invalid field.
    """

    chat_template: str | Path | None = None
    num_proc: int = 1
    on_error: str = "skip"
    progress: bool = False
    verbose: bool = False
    overwrite: bool = False
    resume: bool = False
    num_shards: int = 1
    shard_index: int = 0
    shard_block: int = DEFAULT_SHARD_BLOCK
    shard_size: int = DEFAULT_SHARD_BYTES
    tools_file: str | Path | None = None
    tools_key: str | None = None
    allow_empty: bool = False

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be 'skip' or 'raise', got {self.on_error!r}")
        if self.num_proc < 1:
            raise ConfigError(f"num_proc must be at least 1, got {self.num_proc}")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(f"shard_index must be in 0..{self.num_shards - 1} (num_shards={self.num_shards}), got {self.shard_index}")
        if self.shard_block < 1 or self.shard_size < 1:
            raise ConfigError("shard_block and shard_size must be positive")
        if self.tools_key is not None and self.tools_file is None:
            raise ConfigError("--tools-key needs --tools-file")

    @property
    def sharding(self) -> dict | None:
        """``stats.json``'s ``sharding`` (``None`` for one shard)."""
        if self.num_shards == 1:
            return None
        return {"num_shards": self.num_shards, "shard_index": self.shard_index, "block_rows": self.shard_block}


#: The run keywords (fields of :class:`PrepareConfig`).
RUN_NAMES = tuple(f.name for f in fields(PrepareConfig))
#: Every keyword of ``prepare`` besides ``options``: the run's, then the masking options'.
PREPARE_KEYWORDS = RUN_NAMES + OPTION_NAMES


def split_keywords(options: EncodeOptions | None, keywords: dict[str, Any]) -> tuple[PrepareConfig, EncodeOptions]:
    """Sort ``prepare``'s keywords into the run's config and the masking options.

    Args:
        options: given :class:`EncodeOptions`, or ``None`` to build them from ``keywords``.
        keywords: fields of :class:`PrepareConfig` and (without ``options``) of :class:`EncodeOptions`.

    Raises:
        ConfigError: an unknown keyword, options given both ways, or an invalid value.
    """
    run = {k: v for k, v in keywords.items() if k in RUN_NAMES}
    rest = {k: v for k, v in keywords.items() if k not in RUN_NAMES}
    config = PrepareConfig(**run)
    if options is None:
        unknown = set(rest) - set(OPTION_NAMES)
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; valid: {sorted(OPTION_NAMES)}")
        return config, EncodeOptions(**rest)
    if rest:
        raise ConfigError("pass either options= or option keyword arguments, not both")
    return config, options


def prepare_signature(*, internal: bool = False) -> inspect.Signature:
    """``prepare(inputs, tokenizer=None, output=None, *, options=None, <every keyword>)``; with
    ``internal``, ``run_prepare``'s (``config=None`` after ``options``)."""
    P = inspect.Parameter
    params = [P("inputs", P.POSITIONAL_OR_KEYWORD), P("tokenizer", P.POSITIONAL_OR_KEYWORD, default=None),
              P("output", P.POSITIONAL_OR_KEYWORD, default=None), P("options", P.KEYWORD_ONLY, default=None)]
    if internal:
        params.append(P("config", P.KEYWORD_ONLY, default=None))
    for cls in (PrepareConfig, EncodeOptions):
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            params.append(P(f.name, P.KEYWORD_ONLY, default=default))
    return inspect.Signature(params)
