"""Running a pipeline config: prepare (one per dataset) → mix → pack → train, skipping up-to-date stages.

Each stage writes its output dir, then ``sftdata_pipeline.yaml`` (the resolved config that
produced it) and, last, ``sftdata_stage.json`` (stage, fingerprint, ``completed``, seconds). A
stage runs when that record is missing, incomplete or has another fingerprint
(:mod:`sftdata.pipeline.fingerprint`), or with ``force``; otherwise it is skipped. A train stage
with the same fingerprint that did not finish resumes from its newest checkpoint.

The stages call the public APIs: :func:`sftdata.prepare.run_prepare` (the dataset's
:class:`~sftdata.options.EncodeOptions` and a :class:`~sftdata.prepare_config.PrepareConfig`), :func:`sftdata.pipeline.mix.mix_datasets`
and :func:`sftdata.packing.pack_dataset`. The train stage is the trainer's
(:meth:`PipelineConfig.trainer.run <sftdata.pipeline.config.TrainStage.run>`, which
``sftdata_train.pipeline`` supplies): ``sftdata`` never imports ``sftdata_train``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import ConfigError, RowError
from ..output.load import MIX_STATS_FILE, STATS_FILE
from .config import DatasetEntry, PipelineConfig
from ..tools_file import read_tools_file
from .validate import load_config
from ..hashing import FileHasher
from .fingerprint import digest, source_identity, tokenizer_identity

STAGE_FILE = "sftdata_stage.json"
CONFIG_FILE = "sftdata_pipeline.yaml"
#: ``until`` values: the last stage to run (``prepare`` includes the mix).
UNTIL = ("prepare", "pack", "train")


@dataclass
class StageResult:
    """What happened to one stage: ``status`` is ``ran``, ``skipped``, ``resumed`` or, in a dry run, ``would run``/``would skip``."""

    stage: str
    output: Path
    fingerprint: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    summary: str = ""


@dataclass
class PipelineResult:
    """Returned by :func:`run_pipeline`: the resolved config, one :class:`StageResult` per stage, the training result."""

    config: PipelineConfig
    stages: list[StageResult] = field(default_factory=list)
    train_result: Any = None

    def stage(self, name: str) -> StageResult:
        """The result of stage ``name`` (``prepare:<label>``, ``mix``, ``pack``, ``train``).

        Raises:
            StopIteration: no such stage ran.
        """
        return next(s for s in self.stages if s.stage == name)


def read_stage(path: Path) -> dict | None:
    """The ``sftdata_stage.json`` record of a stage dir, or None."""
    f = Path(path) / STAGE_FILE
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class WithTools:
    """Rows of ``source`` with ``tools`` added to every row that has none (``tools_file``)."""

    def __init__(self, source: Any, tools: list, tools_field: str | None) -> None:
        self.source, self.tools, self.tools_field = source, tools, tools_field

    def __iter__(self) -> Iterator[Any]:
        from ..formats import iter_inputs

        keys = (self.tools_field,) if self.tools_field else ("tools", "functions")
        sources = self.source if isinstance(self.source, list) else [self.source]
        for _, row in iter_inputs(sources):
            if isinstance(row, RowError) or any(row.get(k) not in (None, "", []) for k in keys):
                yield row
            else:
                yield {**row, keys[0]: self.tools}


def build_source(entry: DatasetEntry) -> Any:
    """The source :func:`sftdata.prepare` reads for one dataset entry."""
    from ..formats.hub import resolve_source

    source = resolve_source(**entry.source)
    if entry.tools_file:
        source = WithTools(source, read_tools_file(entry.tools_file), entry.options.tools_field)
    return source


class StageRunner:
    """Runs the stages of one config: decides, runs and records each (``record``, ``results``, ``log``)."""

    def __init__(self, cfg: PipelineConfig, *, force: bool, dry_run: bool, progress: bool,
                 log: Callable[[str], None]) -> None:
        from ..masking.tokenizer import load_tokenizer

        self.cfg, self.force, self.dry_run, self.progress, self.log = cfg, force, dry_run, progress, log
        self.hasher = FileHasher()
        self.results: list[StageResult] = []
        try:
            self.tokenizer = load_tokenizer(cfg.tokenizer, chat_template=cfg.chat_template)
        except ConfigError as e:
            raise ConfigError(f"tokenizer: {e}") from None
        self.tok_id = tokenizer_identity(self.tokenizer)

    # ------------------------------------------------------------ bookkeeping
    def _decide(self, out: Path, fp: str) -> tuple[bool, str]:
        rec = read_stage(out)
        if self.force:
            return True, "forced"
        if rec is None:
            if out.exists() and any(out.iterdir()):
                raise ConfigError(f"{out} exists but was not written by `sftdata run` (no {STAGE_FILE}): "
                                  "remove it, or pass --force to replace it")
            return True, "no previous output"
        if rec.get("fingerprint") != fp:
            return True, f"config changed (fingerprint {rec.get('fingerprint')} → {fp})"
        if not rec.get("completed"):
            return True, "previous run incomplete"
        return False, "up to date"

    def record(self, out: Path, stage: str, fp: str, *, completed: bool, seconds: float, extra: Mapping = {}) -> None:
        """Write ``out/sftdata_pipeline.yaml`` and then, atomically, ``out/sftdata_stage.json``
        (stage, fingerprint, completed, seconds, version, ``extra``)."""
        from .. import __version__

        self.cfg.to_yaml(out / CONFIG_FILE)
        record = {"stage": stage, "fingerprint": fp, "completed": completed, "seconds": round(seconds, 3),
                  "sftdata_version": __version__, **extra}
        tmp = out / (STAGE_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / STAGE_FILE)

    def _stage(self, name: str, out: Path, fp: str, work: Callable[[], str]) -> StageResult:
        """Run ``work`` (returns a one-line summary) into a fresh ``out`` unless the stage is up to date."""
        run, reason = self._decide(out, fp)
        if self.dry_run:
            res = StageResult(name, out, fp, "would run" if run else "would skip", reason)
        elif not run:
            res = StageResult(name, out, fp, "skipped", reason)
        else:
            if out.exists():
                shutil.rmtree(out)
            t0 = time.perf_counter()
            summary = work()
            seconds = time.perf_counter() - t0
            self.record(out, name, fp, completed=True, seconds=seconds)
            res = StageResult(name, out, fp, "ran", reason, seconds, summary)
        self.results.append(res)
        self.log(f"{res.stage}: {res.status} ({res.reason}){' - ' + res.summary if res.summary else ''} -> {out}")
        return res

    # ------------------------------------------------------------ stages
    def prepare(self, entry: DatasetEntry) -> str:
        """Run (or skip) the prepare stage of one dataset; returns its fingerprint.

        Raises:
            ConfigError, RowError: as :func:`sftdata.prepare.run_prepare`.
        """
        from .config import options_dict

        cfg = self.cfg
        fp = digest({
            "stage": "prepare", "source": source_identity(entry.source, self.hasher),
            "tools_file": self.hasher.file(entry.tools_file) if entry.tools_file else None,
            "options": options_dict(entry.options), "tokenizer": self.tok_id, "on_error": cfg.on_error,
            "version": _version(),
        })

        def work() -> str:
            from ..prepare import run_prepare
            from ..prepare_config import PrepareConfig

            out = cfg.prepared_dir(entry)
            out.parent.mkdir(parents=True, exist_ok=True)
            run = PrepareConfig(num_proc=cfg.num_proc, on_error=cfg.on_error, progress=self.progress)
            s = run_prepare(build_source(entry), self.tokenizer, out, options=entry.options, config=run).stats
            return (f"{s['rows_in']} rows in, {s['rows_out']} out, {s['rows_rejected']} rejected; "
                    f"{s['examples_out']} examples, {s['tokens_trained']}/{s['tokens_total']} tokens trained")

        self._stage(f"prepare:{entry.label}", cfg.prepared_dir(entry), fp, work)
        return fp

    def mix(self, prepare_fps: list[str]) -> str:
        """Run (or skip) the mix stage over the prepared datasets (their fingerprints, in order);
        returns its fingerprint."""
        cfg = self.cfg
        fp = digest({"stage": "mix", "seed": cfg.seed, "version": _version(), "parts": [
            (e.label, f, e.weight, e.num_rows) for e, f in zip(cfg.datasets, prepare_fps)]})

        def work() -> str:
            import datasets

            from .mix import MixPart, mix_datasets

            parts = []
            for e in cfg.datasets:
                d = cfg.prepared_dir(e)
                stats = json.loads((d / STATS_FILE).read_text(encoding="utf-8"))
                parts.append(MixPart(e.label, datasets.load_from_disk(str(d)), stats["rows_in"], e.weight, e.num_rows))
            mixed, report = mix_datasets(parts, cfg.seed)
            cfg.mixed_dir.parent.mkdir(parents=True, exist_ok=True)
            mixed.save_to_disk(str(cfg.mixed_dir))
            (cfg.mixed_dir / MIX_STATS_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            return f"{report['rows']} rows from " + ", ".join(
                f"{p['label']}: {p['conversations_taken']}/{p['conversations_available']} conversations"
                for p in report["datasets"])

        self._stage("mix", cfg.mixed_dir, fp, work)
        return fp

    def pack(self, data_fp: str) -> str:
        """Run (or skip) the pack stage over the data of fingerprint ``data_fp``; returns its fingerprint.

        Raises:
            ConfigError: the config has no ``pack:`` section.
        """
        cfg, spec = self.cfg, self.cfg.pack
        if spec is None:
            raise ConfigError("the config has no `pack:` section")
        fp = digest({"stage": "pack", "data": data_fp, "pack": vars(spec), "seed": cfg.seed, "version": _version()})

        def work() -> str:
            import datasets

            from ..packing import pack_dataset, save_packed

            ds = datasets.load_from_disk(str(cfg.mixed_dir))
            packed, report = pack_dataset(ds, spec.max_length, strategy=spec.strategy, seed=cfg.seed,
                                          truncation=spec.truncation, shuffle=spec.shuffle)
            cfg.packed_dir.parent.mkdir(parents=True, exist_ok=True)
            save_packed(packed, report, cfg.packed_dir)
            return report.summary().splitlines()[0]

        self._stage("pack", cfg.packed_dir, fp, work)
        return fp


def _version() -> str:
    from .. import __version__

    return __version__


def run_pipeline(
    config: PipelineConfig | str | os.PathLike | Mapping,
    *,
    until: str = "train",
    force: bool = False,
    dry_run: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = False,
    log: Callable[[str], None] = print,
    trainer: Any = None,
) -> PipelineResult:
    """Run the stages of a pipeline config up to ``until``.

    Args:
        config: a :class:`PipelineConfig`, a YAML path or a mapping (validated first, whole).
        until: ``prepare`` (prepare + mix), ``pack`` or ``train``; a stage that the config
            does not have (no ``pack``/``train``) is passed over.
        force: run every stage even when its output is up to date (replacing it).
        dry_run: decide and report what would run, run nothing, write nothing.
        overrides: ``key.path=value`` strings applied to a path/mapping config.
        progress: progress bars for prepare.
        log: receives one line per stage.
        trainer: what checks and runs ``train:`` (see :func:`load_config`); ``sftdata_train.pipeline.run_pipeline``
            passes it.

    Returns:
        A :class:`PipelineResult`.

    Raises:
        ConfigError: a bad config (every bad key listed), an output dir the pipeline did not write,
            a train dir holding another config's run (without ``force``), a failing input.
    """
    if until not in UNTIL:
        raise ConfigError(f"until must be one of {', '.join(UNTIL)}, got {until!r}")
    cfg = config if isinstance(config, PipelineConfig) else load_config(config, overrides, trainer=trainer)
    runner = StageRunner(cfg, force=force, dry_run=dry_run, progress=progress, log=log)
    if not dry_run:
        cfg.root.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(cfg.root / CONFIG_FILE)
    result = PipelineResult(cfg, runner.results)
    fps = [runner.prepare(e) for e in cfg.datasets]
    data_fp = runner.mix(fps) if cfg.needs_mix else fps[0]
    if cfg.pack is not None and until in ("pack", "train"):
        data_fp = runner.pack(data_fp)
    if cfg.train is not None and until == "train":
        if cfg.trainer is None:
            raise ConfigError("the config has a `train:` section but no trainer: use sftdata_train.pipeline.run_pipeline")
        result.train_result = cfg.trainer.run(runner, data_fp)
    return result
