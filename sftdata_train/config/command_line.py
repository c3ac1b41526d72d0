"""The ``sftdata-train`` command line: one flag per :class:`~sftdata_train.config.TrainConfig` field.

:func:`parse_args` merges, in increasing priority, the field defaults, ``--config FILE`` and the
flags; a flag the parser does not know is read as the config key of the same name (translated
or refused by :mod:`sftdata_train.config.aliases`, as in a file). Errors are one line each
(:class:`ConfigError`; exit 2 in the CLI), never argparse's usage + exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import yaml
from transformers import HfArgumentParser

from sftdata.errors import ConfigError

from .train_config import TrainConfig, file_keys, raise_errors


EXAMPLE = """\
examples:
  # the embedded tiny default model on a prepared dataset (runs offline on CPU)
  sftdata-train --data out/prepared --output_dir runs/tiny --max_steps 50 --precision fp32

  # the TrainingArguments / TRL names, as trl sft takes them
  sftdata-train --data out/packed --output_dir runs/x --learning_rate 1e-4 --warmup_ratio 0.1 \\
      --lr_scheduler_type cosine --max_steps 500 --save_steps 100 --report_to none

  # a real model from a YAML file (same key names), a flag overriding one key
  sftdata-train --config examples/train.yaml --max_steps 1000

  # resume the newest checkpoint of a run
  sftdata-train --config examples/train.yaml --resume_from_checkpoint

  # 8 GPUs with FSDP2
  torchrun --nproc-per-node 8 -m sftdata_train --config examples/train.yaml

example train.yaml (an `env:` mapping sets environment variables):
  data: out/packed
  output_dir: runs/qwen3-sft
  model: Qwen/Qwen3-0.6B
  max_tokens_per_batch: 16384
  gradient_accumulation_steps: 4
  learning_rate: 1.0e-5
  num_train_epochs: 2
  save_steps: 500
  eval_fraction: 0.01
  eval_steps: 200
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help of every option, the examples as written."""


def _or_none(parse):
    def convert(text: str):
        return None if text.lower() in ("none", "null") else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its messages
    return convert


class _Parser(HfArgumentParser):
    """HfArgumentParser whose errors are one line (:class:`ConfigError`, exit 2 in the CLI), not usage + exit."""

    def error(self, message: str):
        raise ConfigError(f"{message} (sftdata-train --help lists the options)")


def build_arg_parser() -> HfArgumentParser:
    """The ``sftdata-train`` parser: ``--config`` plus one flag per :class:`TrainConfig` field
    (``--field_name`` and ``--field-name``; the earlier sftdata names as aliases)."""
    parser = _Parser(
        TrainConfig, prog="sftdata-train", allow_abbrev=False, epilog=EXAMPLE,
        description="Fine-tune a causal LM on `sftdata prepare`/`sftdata pack` output (bf16, padding-free, resumable). "
        "Every option is also a YAML key of --config; keys of TrainingArguments/SFTConfig/Axolotl/LLaMA-Factory "
        "are translated or refused with what to do instead (docs/migrating.md).",
    )
    parser.formatter_class = _Formatter
    optional = {f.name for f in dataclasses.fields(TrainConfig) if f.default is None}
    for action in parser._actions:  # `--warmup_steps none` sets an optional number back to None
        if action.dest in optional and action.type in (int, float):
            action.type = _or_none(action.type)
    parser.add_argument("--config", "-c", help="YAML file of config keys, or a pipeline config (flags override it).")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a validated :class:`TrainConfig` (defaults < ``--config`` < flags).

    A flag that is not an option (``--packing``, ``--per_device_train_batch_size 8``, ``--bf16``) is read as
    the YAML key of the same name: translated, or refused with the message that key gets in a file.

    Raises:
        ConfigError: every bad key or value, one line each.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_arg_parser()
    if not {"-h", "--help"} & set(argv):  # only the flags given, so that they override the file's keys
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    ns, rest = parser.parse_known_args(argv)
    given = vars(ns)
    path = given.pop("config", None)
    from .aliases import merge_sources

    extra, errors = _flags_as_keys(rest)
    values, more = merge_sources(file_keys(path) if path else {}, {**given, **extra}, file_prefix="",
                                 flag_prefix="--")
    raise_errors(errors + more)
    return TrainConfig(**values).validate()


def _flags_as_keys(rest: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Flags the parser does not know, as keys: ``--name VALUE`` (value read as YAML), ``--name`` (true),
    ``--no-name`` (false)."""
    from .aliases import is_training_key

    keys: dict[str, Any] = {}
    errors: list[str] = []
    i = 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--") or item == "--":
            errors.append(f"{item}: unexpected argument (options are --name VALUE; sftdata-train --help)")
            i += 1
            continue
        name, eq, text = item[2:].partition("=")
        values: list[str] = [text] if eq else []
        while not eq and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            values.append(rest[i + 1])
            i += 1
        parsed = [yaml.safe_load(v) if v.strip() else None for v in values]
        norm = name.replace("-", "_")
        if not values and norm.startswith("no_") and is_training_key(norm[3:]):
            keys[name[3:]] = False  # --no-compile, --no-overwrite: the argparse spelling of false for any key
        else:
            keys[name] = True if not values else parsed[0] if len(parsed) == 1 else parsed
        i += 1
    return keys, errors


__all__ = ["EXAMPLE", "build_arg_parser", "parse_args"]
