"""Checks that refuse a run before its first step, each with a message naming both sides.

* the output dir: a non-empty ``--output-dir`` needs ``--resume`` (continue) or ``--overwrite``
  (start over: the previous run's checkpoints, ``final/``, ``metrics.jsonl``, ``config.yaml``
  and ``tensorboard/`` are deleted; other files are left alone);
* the data against the model: the largest token id of the data must be below the model's
  embedding rows (an ``IndexError`` deep in the embedding otherwise), and the tokenizer
  fingerprint recorded by ``sftdata prepare`` (``stats.json``: ``tokenizer.tokenizer_sha256``)
  must be the fingerprint of the tokenizer used for training (``--no-check-tokenizer`` skips
  this one, e.g. for a tokenizer re-saved with other settings);
* loggers: a requested logger that is not installed is an error (checked where the config is
  validated, :meth:`sftdata_train.config.TrainConfig.validate`);
* resuming: a different world size, token budget or number of steps would silently change the
  learning-rate schedule and the data order; refused unless ``--allow-schedule-change``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from sftdata.errors import ConfigError

#: What a previous run leaves in its output dir (removed by --overwrite).
RUN_ARTIFACTS = ("checkpoint-*", ".tmp-*", ".trash-*", "final", "metrics.jsonl", "config.yaml", "tensorboard")
#: Files ``sftdata run`` writes into a stage dir before the stage runs (its resolved config and
#: stage record); they are not a previous run.
PIPELINE_RECORDS = ("sftdata_pipeline.yaml", "sftdata_stage.json")


def check_output_dir(output_dir: str | Path, *, resume: str | None, overwrite: bool) -> None:
    """Refuse a non-empty ``output_dir`` unless resuming; with ``overwrite`` clear the previous run.

    Raises:
        ConfigError: the dir holds files and neither ``resume`` nor ``overwrite`` is set.
    """
    root = Path(output_dir)
    if not root.is_dir() or resume:
        return
    entries = sorted(p.name for p in root.iterdir() if p.name not in PIPELINE_RECORDS)
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
        raise ConfigError(
            f"output dir {root} is not empty ({shown}); pass --resume to continue its run or --overwrite to start over"
        )
    for pattern in RUN_ARTIFACTS:
        for p in root.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()


def data_tokenizer_info(data_path: str | Path | None) -> dict[str, Any] | None:
    """The ``tokenizer`` record of a data dir's ``stats.json`` (prepare) or ``pack_stats.json``, if any."""
    if data_path is None:
        return None
    for name in ("stats.json", "pack_stats.json"):
        f = Path(data_path) / name
        if f.is_file():
            try:
                info = json.loads(f.read_text(encoding="utf-8")).get("tokenizer")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(info, dict) and info.get("tokenizer_sha256"):
                return info
    return None


def tokenizer_fingerprint(tokenizer) -> str:
    """``sftdata.masking.tokenizer.fingerprint``'s vocabulary hash of ``tokenizer`` (what prepare records)."""
    from sftdata.masking.tokenizer import fingerprint

    return fingerprint(tokenizer, "")["tokenizer_sha256"]


def check_tokenizer(data_path: str | Path | None, tokenizer, *, tokenizer_source: str) -> None:
    """The data was tokenised by the tokenizer used now (when the data records its fingerprint).

    Raises:
        ConfigError: the fingerprints differ; the message names both tokenizers.
    """
    info = data_tokenizer_info(data_path)
    if info is None:
        return
    ours = tokenizer_fingerprint(tokenizer)
    if info["tokenizer_sha256"] != ours:
        raise ConfigError(
            f"{data_path} was tokenised by {info.get('tokenizer_name') or 'a tokenizer'} "
            f"(fingerprint {info['tokenizer_sha256']}), but training uses {tokenizer_source} "
            f"(fingerprint {ours}); prepare the data with this tokenizer, pass the matching --tokenizer, "
            "or --no-check-tokenizer if they are known to be compatible"
        )


def check_token_ids(max_token_id: int, min_token_id: int, *, vocab_rows: int, data_path: str, model_source: str) -> None:
    """Every token id of the data indexes a row of the model's input embedding.

    Raises:
        ConfigError: an id is negative or ``>= vocab_rows``; the message names both.
    """
    if min_token_id < 0:
        raise ConfigError(f"{data_path} holds a negative token id ({min_token_id})")
    if max_token_id >= vocab_rows:
        raise ConfigError(
            f"{data_path} holds token id {max_token_id}, but the model {model_source} has an embedding of "
            f"{vocab_rows} rows (ids 0..{vocab_rows - 1}): the data was tokenised for another model"
        )


def check_schedule(saved: dict[str, Any], current: dict[str, Any], *, allow: bool) -> None:
    """Compare what fixes the lr schedule and data order in a checkpoint with the current run.

    ``saved``/``current`` hold ``world_size``, ``max_tokens_per_batch``, ``grad_accum`` and
    ``total_steps``. Differences raise :class:`ConfigError` unless ``allow`` (then a warning).
    """
    diffs = [
        f"{k}: {saved.get(k)} in the checkpoint, {current[k]} now"
        for k in ("world_size", "max_tokens_per_batch", "grad_accum", "total_steps")
        if k in saved and saved.get(k) != current[k]
    ]
    if not diffs:
        return
    msg = "resuming with a different schedule (" + "; ".join(diffs) + ")"
    if not allow:
        raise ConfigError(
            msg + ": the learning-rate schedule and the data order would silently change; use the checkpoint's "
            "settings, or pass --allow-schedule-change to accept that"
        )
    warnings.warn(msg + " (--allow-schedule-change): the lr schedule and data order differ from the original run",
                  stacklevel=2)
