"""Training configuration: one dataclass, loadable from YAML, every key also a CLI flag.

``TrainConfig`` is the single source of truth. :func:`build_arg_parser` derives one
flag per field (``output_dir`` -> ``--output-dir``; booleans get ``--x/--no-x``), and
:func:`parse_args` merges, in increasing priority: the dataclass defaults, the YAML file
given by ``--config``, then the flags given explicitly on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from sftdata.errors import ConfigError

PRECISIONS = ("auto", "bf16-mixed", "bf16-true", "fp32")
SWITCHES = ("auto", "on", "off")
NONFINITE_GRAD = ("stop", "skip")
SCHEDULERS = ("cosine", "linear", "constant")
ATTN_IMPLEMENTATIONS = ("auto", "varlen", "flash_attn", "flex", "sdpa", "eager")
DEVICES = ("auto", "cpu", "cuda")
SAVE_DTYPES = ("auto", "bfloat16", "float32")
BNB_4BIT_QUANT_TYPES = ("nf4", "fp4")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """All options of ``sftdata-train``; see ``docs/training.md`` for the full reference.

    Units: token counts are tokens (after tokenisation), ``lr`` is per optimizer step,
    ``*_steps`` count optimizer steps (one step = ``grad_accum`` micro-batches per rank).
    """

    # --- data and output
    data: str | None = _f(None, "Dataset dir written by `sftdata prepare` or `sftdata pack` (required).")
    output_dir: str | None = _f(None, "Where checkpoints, the final model and metrics.jsonl go (required).")
    eval_data: str | None = _f(None, "Held-out dataset dir (same formats as --data) for the eval loss.")
    eval_fraction: float = _f(0.0, "Hold out this fraction of --data rows for eval when --eval-data is not given.")
    # --- model
    model: str | None = _f(
        None, "Local HF model dir or Hub id; empty/`embedded` trains the embedded tiny Qwen3 default (random init)."
    )
    tokenizer: str | None = _f(None, "Tokenizer dir or Hub id (default: the model's, or the embedded tokenizer).")
    attn_implementation: str = _f(
        "auto", "Attention path: auto|varlen|flash_attn|flex|sdpa|eager (see docs/training.md).",
        choices=ATTN_IMPLEMENTATIONS,
    )
    # --- batching
    max_tokens_per_batch: int = _f(
        8192, "Token budget of one micro-batch on one rank (padded tokens count when --no-padding-free)."
    )
    grad_accum: int = _f(1, "Micro-batches per rank per optimizer step (gradient accumulation).")
    padding_free: bool = _f(True, "Concatenate sequences into one row (varlen attention); --no-padding-free pads.")
    pad_to_multiple_of: int | None = _f(None, "Round batch lengths up to a multiple of this (e.g. 64 for kernels).")
    shuffle: bool = _f(True, "Shuffle batches every epoch (seeded by --seed and the epoch).")
    num_workers: int = _f(0, "DataLoader worker processes for collation.")
    # --- length of training
    max_steps: int = _f(-1, "Optimizer steps to run; -1 derives them from --num-epochs.")
    num_epochs: float = _f(1.0, "Epochs over --data when --max-steps is -1.")
    stop_at_step: int | None = _f(
        None, "Stop (with a checkpoint) after this step while keeping the schedule of the full run, e.g. time-boxed jobs."
    )
    # --- optimiser and schedule
    lr: float = _f(2e-5, "Peak learning rate (AdamW).")
    min_lr_ratio: float = _f(0.0, "Final learning rate as a fraction of --lr (cosine/linear decay).")
    lr_scheduler: str = _f("cosine", "Decay after warm-up: cosine|linear|constant.", choices=SCHEDULERS)
    warmup_steps: int | None = _f(None, "Linear warm-up steps (overrides --warmup-ratio).")
    warmup_ratio: float = _f(0.03, "Warm-up as a fraction of the total steps.")
    weight_decay: float = _f(0.01, "AdamW weight decay on matrices (never on norms or biases).")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    adam_eps: float = _f(1e-8, "AdamW epsilon.")
    max_grad_norm: float = _f(1.0, "Clip the global gradient L2 norm to this; 0 disables clipping.")
    # --- numerics and speed
    precision: str = _f(
        "auto", "auto (bf16-mixed on CUDA, fp32 on CPU) | bf16-mixed (fp32 master weights, bf16 compute) | "
        "bf16-true | fp32.", choices=PRECISIONS,
    )
    activation_checkpointing: str = _f(
        "auto", "Recompute decoder-layer activations in backward: auto (the fewest layers that make the step fit "
        "the free device memory or --memory-budget-gb) | on (all layers) | off (flag alone = on).",
        choices=SWITCHES, nargs="?", const="on",
    )
    memory_budget_gb: float | None = _f(
        None, "Device memory (GB, 1e9 bytes) the auto activation checkpointing plans for (default: the free memory)."
    )
    compile: str = _f(
        "auto", "torch.compile each decoder layer: auto (on CUDA) | on | off (flag alone = on).",
        choices=SWITCHES, nargs="?", const="on",
    )
    loss_chunk_size: int = _f(1024, "Trained positions per lm_head/cross-entropy chunk (bounds the logits memory).")
    seed: int = _f(0, "Seed for the embedded model's init, data order and RNGs.")
    device: str = _f("auto", "auto|cpu|cuda.", choices=DEVICES)
    fsdp_reshard_after_forward: bool = _f(True, "FSDP2: free gathered parameters after forward (ZeRO-3 style).")
    fsdp_defer_grad_sync: bool = _f(
        False, "FSDP2: reduce-scatter gradients on the last micro-batch of a step only (less communication, but "
        "unsharded gradients held across micro-batches); default: every micro-batch.",
    )
    nonfinite_grad: str = _f(
        "stop", "A non-finite gradient norm before optimizer.step(): stop (error) | skip (drop the update, count it).",
        choices=NONFINITE_GRAD,
    )
    # --- checkpoints
    save_steps: int = _f(0, "Save a checkpoint every N steps (0: only at the end).")
    save_total_limit: int | None = _f(None, "Keep at most this many checkpoints (oldest deleted).")
    save_dtype: str = _f(
        "auto", "dtype of the exported final/ model: auto (bf16 for bf16 precisions)|bfloat16|float32.",
        choices=SAVE_DTYPES,
    )
    overwrite: bool = _f(False, "Start over in a non-empty --output-dir (deletes its checkpoints, final/, metrics).")
    allow_schedule_change: bool = _f(
        False, "Resume although the world size, token budget, grad_accum or step count differ from the checkpoint's."
    )
    resume: str | None = _f(
        None, "Resume from a checkpoint dir, or `latest` for the newest one in --output-dir (flag alone = latest).",
        nargs="?", const="latest",
    )
    # --- eval and metrics
    eval_steps: int = _f(0, "Compute the eval loss every N steps (0: only at the end, when there is eval data).")
    log_steps: int = _f(1, "Write a metrics.jsonl record and refresh the progress bar every N steps.")
    progress_bar: bool = _f(True, "Show a tqdm progress bar on rank 0.")
    tensorboard: bool = _f(False, "Same as adding tensorboard to --report-to.")
    report_to: str = _f(
        "none", "Trackers fed the metrics.jsonl records and the resolved config: comma-separated "
        "tensorboard,wandb,trackio or none (see docs/training.md)."
    )
    project: str | None = _f(None, "W&B/trackio project (W&B default: $WANDB_PROJECT; trackio: sftdata).")
    run_name: str | None = _f(None, "W&B/trackio run name (default: the output dir's name).")
    peak_tflops: float | None = _f(
        None, "Per-device dense bf16 peak TFLOP/s for `mfu` (default: the datasheet value of known GPUs)."
    )
    check_tokenizer: bool = _f(
        True, "Refuse data whose recorded tokenizer fingerprint differs from the training tokenizer's."
    )
    # --- LoRA / QLoRA (peft; see docs/training.md#lora-and-qlora and sftdata_train/lora.py)
    lora_r: int = _f(0, "LoRA rank: >0 trains peft LoRA adapters on the frozen model; 0 = full fine-tuning.")
    lora_alpha: float | None = _f(None, "LoRA alpha (scale = alpha / r); default 2 x lora_r.")
    lora_dropout: float = _f(0.0, "Dropout on the input of the LoRA adapters.")
    lora_target_modules: str | None = _f(
        None, "Module names to adapt (q_proj,v_proj or q_proj v_proj) or all-linear; default: every linear layer "
        "of the decoder layers (never the LM head).", nargs="+",
    )
    lora_modules_to_save: str | None = _f(
        None, "Modules trained in full and saved with the adapter (e.g. lm_head: the LM head is frozen "
        "otherwise; a tied input embedding stays tied to it).", nargs="+",
    )
    use_rslora: bool = _f(False, "Rank-stabilised LoRA: scale = alpha / sqrt(r).")
    use_dora: bool = _f(
        False, "DoRA (weight-decomposed LoRA): a trained magnitude per output feature times the direction of W + BA."
    )
    lora_init_adapter: str | None = _f(
        None, "Start from a trained peft LoRA adapter (a dir or Hub id with adapter_config.json): its rank, alpha, "
        "targets, modules_to_save, rslora and DoRA define this run's adapter, its weights are the starting point.",
    )
    load_in_4bit: bool = _f(False, "QLoRA: load the frozen model in 4 bits (bitsandbytes, CUDA, one process).")
    bnb_4bit_quant_type: str = _f("nf4", "QLoRA 4-bit data type: nf4|fp4.", choices=BNB_4BIT_QUANT_TYPES)
    bnb_4bit_use_double_quant: bool = _f(False, "QLoRA: quantize the quantization constants too (nested quant).")
    merge_lora: bool = _f(
        False, "At the end, export final/ as the full model with the adapter merged (peft merge_and_unload)."
    )

    # ------------------------------------------------------------------ helpers
    def validate(self) -> "TrainConfig":
        """Check required keys and ranges; returns self. Raises :class:`ConfigError`."""
        if not self.data:
            raise ConfigError("`data` (--data DIR) is required: a dir from `sftdata prepare` or `sftdata pack`")
        if not self.output_dir:
            raise ConfigError("`output_dir` (--output-dir DIR) is required")
        for name in ("compile", "activation_checkpointing"):  # YAML/API booleans of older configs
            value = getattr(self, name)
            if isinstance(value, bool):
                setattr(self, name, "on" if value else "off")
        for name in (
            "precision", "lr_scheduler", "attn_implementation", "device", "save_dtype", "compile",
            "activation_checkpointing", "nonfinite_grad", "bnb_4bit_quant_type",
        ):
            choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(self)}[name]
            if getattr(self, name) not in choices:
                raise ConfigError(f"`{name}` must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.grad_accum < 1:
            raise ConfigError(f"`grad_accum` must be >= 1, got {self.grad_accum}")
        if self.max_tokens_per_batch < 1:
            raise ConfigError(f"`max_tokens_per_batch` must be >= 1, got {self.max_tokens_per_batch}")
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise ConfigError(f"`memory_budget_gb` must be > 0, got {self.memory_budget_gb}")
        if self.loss_chunk_size < 1:
            raise ConfigError(f"`loss_chunk_size` must be >= 1, got {self.loss_chunk_size}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"`eval_fraction` must be in [0, 1), got {self.eval_fraction}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"`max_steps` must be -1 or >= 1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_epochs <= 0:
            raise ConfigError(f"`num_epochs` must be > 0, got {self.num_epochs}")
        if self.lr < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("`lr` must be >= 0 and `min_lr_ratio` in [0, 1]")
        if self.model in ("", "embedded"):
            self.model = None
        if isinstance(self.resume, bool):
            self.resume = "latest" if self.resume else None
        from .tracking import check_installed, parse_report_to

        trackers = parse_report_to(self.report_to)
        if self.tensorboard and "tensorboard" not in trackers:
            trackers.append("tensorboard")
        self.report_to = ",".join(trackers) or "none"
        check_installed(trackers)
        from .lora import validate_config

        validate_config(self)
        return self

    def trackers(self) -> list[str]:
        """The tracker names of ``report_to`` (``[]`` for none)."""
        from .tracking import parse_report_to

        return parse_report_to(self.report_to)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-able) of all keys."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict of field names (``-`` accepted for ``_``) or their HF/TRL aliases
        (``learning_rate``, ``num_train_epochs``, ``bf16``, …; see :mod:`sftdata_train.aliases`).

        Raises:
            ConfigError: listing every unknown key (with a "did you mean" suggestion), every
                unsupported foreign key and every conflicting pair.
        """
        from .aliases import canonical_keys

        clean, errors = canonical_keys(d or {}, [f.name for f in dataclasses.fields(cls)])
        if errors:
            raise ConfigError("bad config key" + ("s" if len(errors) > 1 else "") + ":\n  " + "\n  ".join(errors))
        return cls(**clean)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a YAML mapping of config keys."""
        with open(path, encoding="utf-8") as fh:
            d = yaml.safe_load(fh) or {}
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a YAML mapping of config keys, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write all keys to a YAML file."""
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


EXAMPLE = """\
examples:
  # the embedded tiny default model on a prepared dataset (runs offline on CPU)
  sftdata-train --data out/prepared --output-dir runs/tiny --max-steps 50 --precision fp32

  # a real model from a YAML file, a flag overriding one key
  sftdata-train --config examples/train.yaml --max-steps 1000

  # resume the newest checkpoint of a run
  sftdata-train --config examples/train.yaml --resume

  # 8 GPUs with FSDP2
  torchrun --nproc-per-node 8 -m sftdata_train --config examples/train.yaml

example train.yaml:
  data: out/packed
  output_dir: runs/qwen3-sft
  model: Qwen/Qwen3-0.6B
  max_tokens_per_batch: 16384
  grad_accum: 4
  lr: 1.0e-5
  num_epochs: 2
  save_steps: 500
  eval_fraction: 0.01
  eval_steps: 200
"""


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a field annotation like ``int | None``."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing), {})  # annotations are strings under `from __future__ import annotations`
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _parse_optional(scalar: type):
    def parse(text: str):
        if text.lower() in ("none", "null", ""):
            return None
        return scalar(text)

    parse.__name__ = scalar.__name__
    return parse


def build_arg_parser() -> argparse.ArgumentParser:
    """The ``sftdata-train`` parser: ``--config`` plus one flag per :class:`TrainConfig` key.

    Every flag defaults to ``argparse.SUPPRESS`` so that only flags given explicitly
    override the YAML file.
    """
    parser = argparse.ArgumentParser(
        prog="sftdata-train",
        description="Fine-tune a causal LM on `sftdata prepare`/`sftdata pack` output (bf16, padding-free, resumable).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    from .aliases import FLAG_ALIASES, RENAMES, UNDERSCORE_FLAGS

    parser.add_argument("--config", "-c", help="YAML file of config keys (flags override it).")
    parser.add_argument("--use-peft", "--use_peft", type=_parse_bool, nargs="?", const=True, help=argparse.SUPPRESS)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        aliases = [s for a in FLAG_ALIASES if RENAMES[a] == f.name for s in ("--" + a.replace("_", "-"), "--" + a)]
        aliases += ["--" + f.name] if f.name in UNDERSCORE_FLAGS else []  # TRL's spelling (--lora_r)
        scalar, optional = _base_type(f.type)
        help_text = f.metadata.get("help", "")
        default = f.default
        help_text += f" [default: {default}]"
        kw: dict[str, Any] = {"dest": f.name, "help": help_text}
        if scalar is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            for alias in aliases:  # HF spelling: --gradient_checkpointing true|false
                parser.add_argument(alias, type=_parse_bool, nargs="?", const=True, help=argparse.SUPPRESS, dest=f.name)
            continue
        if aliases and "on" in f.metadata.get("choices", ()):  # HF's boolean (--gradient_checkpointing [true|false])
            for alias in aliases:
                parser.add_argument(alias, type=_parse_bool, nargs="?", const=True, help=argparse.SUPPRESS, dest=f.name)
            aliases = []
        kw["type"] = _parse_optional(scalar) if optional else scalar
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if "nargs" in f.metadata:
            kw["nargs"] = f.metadata["nargs"]
            if "const" in f.metadata:
                kw["const"] = f.metadata["const"]
        kw["metavar"] = f.name.upper() if scalar is not str or "choices" not in f.metadata else None
        if kw["metavar"] is None:
            del kw["metavar"]
        parser.add_argument(flag, *dict.fromkeys(aliases), **kw)
    return parser


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a validated :class:`TrainConfig` (defaults < YAML < flags)."""
    ns = vars(build_arg_parser().parse_args(argv))
    path = ns.pop("config", None)
    base = _yaml_keys(path) if path else {}
    if ns.get("use_peft") and not base.get("lora_r"):
        base.pop("lora_r", None)  # the file's lora_r is the default 0: --use_peft picks the rank
    base.update(ns)
    return TrainConfig.from_dict(base).validate()


def _yaml_keys(path: str) -> dict[str, Any]:
    """The keys of a train YAML, or the ``train:`` section of a pipeline config (``sftdata run``'s file,
    recognised by its ``datasets:`` key) with ``data`` = the pipeline's final dataset."""
    with open(path, encoding="utf-8") as fh:
        d = yaml.safe_load(fh) or {}
    if isinstance(d, dict) and "datasets" in d:
        from sftdata.pipeline import load_config

        return load_config(path).train_config()
    return TrainConfig.from_yaml(path).to_dict()


def as_config(config: "TrainConfig | dict | str | os.PathLike") -> TrainConfig:
    """Accept a :class:`TrainConfig`, a dict of keys, or a YAML path; returns a validated copy."""
    if isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config)
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict(config)
    elif isinstance(config, (str, os.PathLike)):
        cfg = TrainConfig.from_yaml(config)
    else:
        raise ConfigError(f"expected a TrainConfig, a dict or a YAML path, got {type(config).__name__}")
    return cfg.validate()
