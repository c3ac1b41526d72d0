"""The resolved pipeline config: :class:`PipelineConfig`, its datasets and pack spec, its layout.

Built by :func:`sftdata.pipeline.validate.load_config`, which fills in every default;
:meth:`PipelineConfig.to_dict` is that resolved config, and loading it again gives the same
config (``tests/pipeline/test_pipeline.py`` checks the round trip). See ``docs/pipeline.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Protocol

import yaml

from ..options import EncodeOptions
from ..errors import ConfigError


class TrainStage(Protocol):
    """What checks and runs a pipeline's ``train:`` section. The data package does not import the trainer:
    :data:`sftdata_train.pipeline.TRAINER` is passed in by ``sftdata_train.pipeline`` (and ``sftdata run``)."""

    def key_hint(self, key: str) -> str | None:
        """The message for ``key`` written at the top level when it is a training key, else None."""

    def check(self, section: Any, top: Mapping[str, Any], errors: list) -> dict[str, Any] | None:
        """The resolved training keys of ``section`` (``top``: output_dir, seed, tokenizer), appending
        ``"train.<key>: <reason>"`` to ``errors``; None when it has errors."""

    def run(self, runner: Any, data_fp: str) -> Any:
        """Run the train stage with ``runner`` (a :class:`sftdata.pipeline.runner.StageRunner`)."""


@dataclass
class DatasetEntry:
    """One entry of ``datasets:``: where the rows come from, how they are encoded, how much of them is used."""

    label: str
    source: dict[str, Any]  # the SOURCE_KEYS (path, name, split, …)
    options: EncodeOptions
    tools_file: str | None = None
    weight: float | None = None
    num_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry as resolved-config keys (label, source keys, tools_file, weight, num_rows, options)."""
        return {"label": self.label, **self.source, "tools_file": self.tools_file, "weight": self.weight,
                "num_rows": self.num_rows, **options_dict(self.options)}


@dataclass
class PackSpec:
    """``pack:``: rows of at most ``max_length`` tokens (see :func:`sftdata.packing.pack_dataset`)."""

    max_length: int
    strategy: str = "mbs"
    truncation: str = "drop"
    shuffle: bool = True


@dataclass
class PipelineConfig:
    """A validated pipeline config with every default filled in.

    Stage outputs: ``<output_dir>/prepared/<label>`` per dataset, ``<output_dir>/mixed`` (when
    there are several datasets or a ``weight``/``num_rows``), ``<output_dir>/packed`` (with
    ``pack``) and ``train.output_dir`` (default ``<output_dir>/train``).
    """

    output_dir: str
    datasets: list[DatasetEntry]
    defaults: dict[str, Any]  # the top-level encode options, resolved
    tokenizer: str | None = None
    chat_template: str | None = None
    seed: int = 0
    on_error: str = "skip"
    num_proc: int = 1
    pack: PackSpec | None = None
    train: dict[str, Any] | None = None  # the trainer's resolved keys, all of them but `data`
    path: str | None = field(default=None, compare=False)  # the file it was read from
    trainer: TrainStage | None = field(default=None, compare=False, repr=False)  # checks and runs `train`

    # ---------------------------------------------------------------- layout
    @property
    def root(self) -> Path:
        """``output_dir``, the directory every stage writes under."""
        return Path(self.output_dir)

    def prepared_dir(self, entry: DatasetEntry) -> Path:
        """``<output_dir>/prepared/<label>``: the prepare stage's output for ``entry``."""
        return self.root / "prepared" / entry.label

    @property
    def needs_mix(self) -> bool:
        """Whether a mix stage runs (several datasets, or a ``weight``/``num_rows``)."""
        return len(self.datasets) > 1 or any(d.weight is not None or d.num_rows is not None for d in self.datasets)

    @property
    def mixed_dir(self) -> Path:
        """``<output_dir>/mixed``, or the one prepared dataset when there is no mix."""
        return self.root / "mixed" if self.needs_mix else self.prepared_dir(self.datasets[0])

    @property
    def packed_dir(self) -> Path:
        """``<output_dir>/packed``: the pack stage's output."""
        return self.root / "packed"

    @property
    def train_dir(self) -> Path | None:
        """``train.output_dir``, or ``None`` without a train section."""
        return Path(self.train["output_dir"]) if self.train else None

    @property
    def data_dir(self) -> Path:
        """The dataset the train stage reads: packed, else mixed, else the single prepared one."""
        return self.packed_dir if self.pack else self.mixed_dir

    def train_config(self) -> dict[str, Any]:
        """The trainer's keys of the train stage (``data`` = :attr:`data_dir`)."""
        if not self.train:
            raise ConfigError("the config has no `train:` section")
        return {**self.train, "data": str(self.data_dir)}

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """The resolved config (plain YAML-able values); :func:`load_config` of it gives this config back."""
        pack = None if self.pack is None else {f.name: getattr(self.pack, f.name) for f in fields(PackSpec)}
        return {
            "output_dir": self.output_dir,
            "tokenizer": self.tokenizer,
            "chat_template": self.chat_template,
            "seed": self.seed,
            "on_error": self.on_error,
            "num_proc": self.num_proc,
            **self.defaults,
            "pack": pack,
            "datasets": [d.to_dict() for d in self.datasets],
            "train": None if self.train is None else dict(self.train),
        }

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as YAML to ``path`` (with a header comment)."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("# resolved sftdata pipeline config: every default filled in (sftdata run FILE re-runs it)\n")
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False, allow_unicode=True)


def options_dict(options: EncodeOptions) -> dict[str, Any]:
    """EncodeOptions as YAML-able values (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.to_dict().items()}
