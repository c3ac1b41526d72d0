"""``sftdata run``'s orchestration with the train stage: the pipeline config of :mod:`sftdata.pipeline`
plus its ``train:`` section, checked by :class:`~sftdata_train.config.TrainConfig` and run by
:func:`sftdata_train.train`.

The data package never imports the trainer; this module depends on both and hands
:data:`TRAINER` to :func:`sftdata.pipeline.load_config` / :func:`sftdata.pipeline.run_pipeline`.

    >>> from sftdata_train.pipeline import run_pipeline
    >>> result = run_pipeline("examples/pipeline.yaml")          # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from sftdata import pipeline as data_pipeline
from sftdata.errors import ConfigError
from sftdata.pipeline import STAGE_FILE, PipelineConfig, PipelineResult, StageResult, read_stage
from sftdata.pipeline.fingerprint import digest
from sftdata.pipeline.keys import TRAIN_KEY_HINT

#: Training keys left out of the train stage's fingerprint (where outputs go, logging, resuming).
VOLATILE_TRAIN_KEYS = frozenset(
    {"output_dir", "resume_from_checkpoint", "stop_at_step", "progress_bar", "report_to", "tensorboard", "project",
     "run_name", "logging_steps", "dataloader_num_workers"}
)


class _Trainer:
    """The :class:`sftdata.pipeline.config.TrainStage` of sftdata_train."""

    def key_hint(self, key: str) -> str | None:
        from .config.aliases import foreign_message, is_training_key

        norm = key.replace("-", "_")
        return TRAIN_KEY_HINT if is_training_key(norm) else foreign_message(norm, data=False)

    def check(self, section: Any, top: Mapping[str, Any], errors: list) -> dict[str, Any] | None:
        from .config.aliases import resolve_keys
        from .config.train_config import TrainConfig

        if not isinstance(section, Mapping):
            errors.append(f"train: expected a mapping of training keys, got {type(section).__name__}")
            return None
        values, errs = resolve_keys(section, prefix="train.")
        errors.extend(errs)
        if "data" in values:
            errors.append("train.data: set by the pipeline (the packed or mixed dataset): remove it")
            values.pop("data")
        if top.get("output_dir"):
            values.setdefault("output_dir", str(Path(top["output_dir"]) / "train"))
        values.setdefault("seed", top.get("seed", 0))
        if top.get("tokenizer") is not None:
            if values.get("tokenizer") not in (None, top["tokenizer"]):
                errors.append(f"train.tokenizer: differs from `tokenizer` ({top['tokenizer']!r}) that the data is "
                              "encoded with")
            values["tokenizer"] = top["tokenizer"]
        if errs:
            return None
        cfg = TrainConfig(**values, data="<pipeline>")
        problems = cfg.problems()
        if problems:
            errors.extend(f"train.{p}" for p in problems)
            return None
        try:
            cfg.validate()
        except ConfigError as e:
            errors.append(f"train: {e}")
            return None
        out = cfg.to_dict()
        out.pop("data")
        return out

    def run(self, runner: Any, data_fp: str) -> Any:
        """The train stage: skipped when up to date, resumed when an earlier run of the same config stopped."""
        from sftdata import __version__

        from .config.train_config import TrainConfig
        from .loop.trainer import train

        cfg = runner.cfg
        out = cfg.train_dir
        train_keys = {k: v for k, v in cfg.train.items() if k not in VOLATILE_TRAIN_KEYS}
        fp = digest({"stage": "train", "data": data_fp, "train": train_keys, "version": __version__})
        rec = read_stage(out)
        tcfg = cfg.train_config()
        tcfg["progress_bar"] = bool(tcfg.get("progress_bar", True)) and runner.progress
        run, fresh, status = True, True, "ran"
        if runner.force:
            reason = "forced"
        elif rec is None:
            if out.exists() and any(out.iterdir()):
                raise ConfigError(f"{out} exists but was not written by `sftdata run` (no {STAGE_FILE}): "
                                  "remove it, pass --force to replace it, or set train.output_dir to a new dir")
            reason = "no previous run"
        elif rec.get("fingerprint") != fp:
            reason = (f"{out} holds a training run of another config (fingerprint {rec.get('fingerprint')}, now "
                      f"{fp}): pass --force to replace it, or set train.output_dir to a new dir")
            if not runner.dry_run:
                raise ConfigError(reason)
            run, status = False, "blocked"
        elif rec.get("completed"):
            run, fresh, reason, status = False, False, "up to date", "skipped"
        else:
            fresh, reason, status = False, "previous run incomplete: resuming its newest checkpoint", "resumed"
            if tcfg.get("resume_from_checkpoint") is None:
                tcfg["resume_from_checkpoint"] = "auto"
        if runner.dry_run or not run:
            shown = status if status == "blocked" else ("would run" if run else "would skip") if runner.dry_run \
                else status
            runner.results.append(StageResult("train", out, fp, shown, reason))
            runner.log(f"train: {shown} ({reason}) -> {out}")
            return None
        if fresh and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        runner.record(out, "train", fp, completed=False, seconds=0.0)
        t0 = time.perf_counter()
        result = train(TrainConfig(**tcfg))
        seconds = time.perf_counter() - t0
        runner.record(out, "train", fp, completed=bool(result.completed), seconds=seconds, extra={"step": result.step})
        last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
        summary = f"step {result.step}{last}; model in {result.final_model_dir or result.last_checkpoint}"
        runner.results.append(StageResult("train", out, fp, status, reason, seconds, summary))
        runner.log(f"train: {status} ({reason}) - {summary} -> {out}")
        return result


#: The train stage handed to :mod:`sftdata.pipeline`.
TRAINER = _Trainer()


def load_config(source: str | os.PathLike | Mapping, overrides: Sequence[str] = ()) -> PipelineConfig:
    """:func:`sftdata.pipeline.load_config` with the ``train:`` section checked by :class:`TrainConfig`.

    Raises:
        ConfigError: every bad key of the file, named by its path.
    """
    return data_pipeline.load_config(source, overrides, trainer=TRAINER)


def run_pipeline(config: PipelineConfig | str | os.PathLike | Mapping, **kwargs: Any) -> PipelineResult:
    """:func:`sftdata.pipeline.run_pipeline` (same arguments) with the train stage."""
    if not isinstance(config, PipelineConfig):
        config = load_config(config, kwargs.pop("overrides", ()))
    elif config.train is not None and config.trainer is None:
        config.trainer = TRAINER
    return data_pipeline.run_pipeline(config, **kwargs)


__all__ = ["TRAINER", "VOLATILE_TRAIN_KEYS", "load_config", "run_pipeline"]
