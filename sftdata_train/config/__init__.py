"""Config: what a run is asked to do, from every place a key can be written.

* :mod:`~sftdata_train.config.train_config`: :class:`TrainConfig` (one dataclass, the single source of
  truth), reading a YAML, :func:`as_config`, validation;
* :mod:`~sftdata_train.config.command_line`: the ``sftdata-train`` flags (``parse_args``, ``--help``);
* :mod:`~sftdata_train.config.aliases` and :mod:`~sftdata_train.config.alias_converters`: other tools'
  and earlier sftdata keys, translated or refused with one message each.

``sftdata_train.config`` was one module: its names (``from sftdata_train.config import TrainConfig``,
``as_config``, ``parse_args`` ...) are read from :mod:`sftdata_train.config.train_config` on first use,
without a warning (docs/architecture.md).
"""

from __future__ import annotations

from sftdata.module_aliases import reexport

__getattr__ = reexport(__name__, "train_config")

__all__ = [
    "ATTN_IMPLEMENTATIONS", "BNB_4BIT_QUANT_TYPES", "DEVICES", "EXAMPLE", "NONFINITE_GRAD", "PRECISIONS",
    "SAVE_DTYPES", "SCHEDULERS", "SWITCHES", "TrainConfig", "USE_PEFT_RANK", "as_config", "build_arg_parser",
    "file_keys", "parse_args", "raise_errors",
]
