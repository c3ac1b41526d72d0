"""Training configuration: one dataclass, parsed by ``transformers.HfArgumentParser``.

:class:`TrainConfig` is the single source of truth. Its field names are those of
``transformers.TrainingArguments`` / ``trl.SFTConfig`` / peft where the meaning is the same
(``learning_rate``, ``gradient_accumulation_steps``, ``lr_scheduler_type``, ``lora_r``, …);
sftdata_train's own options keep their names (``max_tokens_per_batch``, ``precision``, …).
Every field is a flag in both spellings (``--learning_rate``, ``--learning-rate``), a YAML key of
the same name and a key of the dict :func:`sftdata_train.train` takes; ``--help`` is generated.

Sources, in increasing priority: the field defaults, ``--config FILE`` (a train YAML, or a
pipeline config's ``train:`` section), the flags. A YAML's ``env:`` mapping sets environment
variables (as TRL's ``TrlParser``). Every key, wherever it is written, goes through
:func:`sftdata_train.config.aliases.resolve_keys`: older sftdata names and other tools' names are
translated, a key of another stage or of a feature sftdata_train does not have gets one message
saying what to do instead, any other unknown key a "did you mean". :meth:`TrainConfig.validate`
checks ranges once and changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from sftdata.errors import ConfigError

PRECISIONS = ("auto", "bf16-mixed", "bf16-true", "fp32")
SWITCHES = ("auto", "on", "off")
NONFINITE_GRAD = ("stop", "skip")
#: ``lr_scheduler_type`` values: transformers' names; ``constant_with_warmup`` is ``constant`` (warm-up, then
#: constant) and ``cosine_with_min_lr`` is ``cosine`` with ``min_lr_ratio``.
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_min_lr")
ATTN_IMPLEMENTATIONS = ("auto", "varlen", "flash_attn", "flex", "sdpa", "eager")
DEVICES = ("auto", "cpu", "cuda")
SAVE_DTYPES = ("auto", "bfloat16", "float32")
BNB_4BIT_QUANT_TYPES = ("nf4", "fp4")
#: TRL's default LoRA rank, used when ``use_peft`` is set without ``lora_r``.
USE_PEFT_RANK = 16


def _f(default: Any, help: str, *old: str, **kw: Any) -> Any:
    """A field with its help text; ``old`` are earlier sftdata flag names kept as aliases."""
    aliases = [s for name in old for s in dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))]
    meta = {"help": help, **({"aliases": aliases} if aliases else {}), **kw}
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """All options of ``sftdata-train``; see ``docs/training.md`` for the full reference.

    Units: token counts are tokens (after tokenisation), ``learning_rate`` is per optimizer step,
    ``*_steps`` count optimizer steps (one step = ``gradient_accumulation_steps`` micro-batches
    per rank). The earlier names (``lr``, ``grad_accum``, ``num_epochs``, ``log_steps``, ``resume``,
    ``lr_scheduler``, ``activation_checkpointing``, ``adam_eps``, ``num_workers``) are read-only
    properties, and keys/flags that :func:`~sftdata_train.config.aliases.resolve_keys` translates.
    """

    # --- data and output
    data: str | None = _f(None, "Dataset dir written by `sftdata prepare` or `sftdata pack` (required).")
    output_dir: str | None = _f(None, "Where checkpoints, the final model and metrics.jsonl go (required).")
    eval_data: str | None = _f(None, "Held-out dataset dir (same formats as --data) for the eval loss.")
    eval_fraction: float = _f(0.0, "Hold out this fraction of --data rows for eval when --eval_data is not given.")
    # --- model
    model: str | None = _f(
        None, "Local HF model dir or Hub id; empty/`embedded` trains the embedded tiny Qwen3 default (random init).",
        "model_name_or_path",
    )
    tokenizer: str | None = _f(None, "Tokenizer dir or Hub id (default: the model's, or the embedded tokenizer).")
    attn_implementation: str = _f(
        "auto", "Attention path (see docs/training.md).", choices=ATTN_IMPLEMENTATIONS + ("flash_attention_2",
                                                                                     "flex_attention"),
    )
    # --- batching
    max_tokens_per_batch: int = _f(
        8192, "Token budget of one micro-batch on one rank (padded tokens count with --no_padding_free). "
        "Batches are sized by tokens, not rows: the TrainingArguments per_device_train_batch_size has no equivalent."
    )
    gradient_accumulation_steps: int = _f(1, "Micro-batches per rank per optimizer step.", "grad_accum")
    padding_free: bool = _f(True, "Concatenate sequences into one row (varlen attention); --no_padding_free pads.")
    pad_to_multiple_of: int | None = _f(None, "Round batch lengths up to a multiple of this (e.g. 64 for kernels).")
    shuffle: bool = _f(True, "Shuffle batches every epoch (seeded by --seed and the epoch).")
    dataloader_num_workers: int = _f(0, "DataLoader worker processes for collation.", "num_workers")
    # --- length of training
    max_steps: int = _f(-1, "Optimizer steps to run; -1 derives them from --num_train_epochs.")
    num_train_epochs: float = _f(1.0, "Epochs over --data when --max_steps is -1.", "num_epochs")
    stop_at_step: int | None = _f(
        None, "Stop (with a checkpoint) after this step while keeping the schedule of the full run (time-boxed jobs)."
    )
    # --- optimiser and schedule
    learning_rate: float = _f(2e-5, "Peak learning rate (AdamW).", "lr")
    min_lr_ratio: float = _f(0.0, "Final learning rate as a fraction of the peak (cosine/linear decay).")
    lr_scheduler_type: str = _f(
        "cosine", "Decay after warm-up (constant_with_warmup = constant, cosine_with_min_lr = cosine).",
        "lr_scheduler", choices=SCHEDULERS,
    )
    warmup_steps: int | None = _f(None, "Linear warm-up steps (overrides --warmup_ratio).")
    warmup_ratio: float = _f(0.03, "Warm-up as a fraction of the total steps (rounded up).")
    weight_decay: float = _f(0.01, "AdamW weight decay on matrices (never on norms or biases).")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon.", "adam_eps")
    max_grad_norm: float = _f(1.0, "Clip the global gradient L2 norm to this; 0 disables clipping.")
    # --- numerics and speed
    precision: str = _f(
        "auto", "auto (bf16-mixed on CUDA, fp32 on CPU) | bf16-mixed (fp32 master weights, bf16 compute) | "
        "bf16-true | fp32. The TrainingArguments `bf16 true|false` means bf16-mixed|fp32.", choices=PRECISIONS,
    )
    gradient_checkpointing: str = _f(
        "auto", "Recompute decoder-layer activations in backward: auto (the fewest layers that make the step fit "
        "the free device memory or --memory_budget_gb) | on/true (all layers; the flag alone) | off/false.",
        "activation_checkpointing", nargs="?", const="on",
    )
    memory_budget_gb: float | None = _f(
        None, "Device memory (GB, 1e9 bytes) the auto activation checkpointing plans for (default: the free memory)."
    )
    compile: str = _f(
        "auto", "torch.compile each decoder layer: auto (on CUDA) | on/true (the flag alone) | off/false.",
        "torch_compile", nargs="?", const="on",
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
    overwrite: bool = _f(False, "Start over in a non-empty --output_dir (deletes its checkpoints, final/, metrics).")
    allow_schedule_change: bool = _f(
        False, "Resume although the world size, token budget, gradient_accumulation_steps or step count differ "
        "from the checkpoint's."
    )
    resume_from_checkpoint: str | None = _f(
        None, "Resume from a checkpoint dir, or `latest` for the newest one in --output_dir (the flag alone).",
        "resume", nargs="?", const="latest",
    )
    # --- eval and metrics
    eval_steps: int = _f(0, "Compute the eval loss every N steps (0: only at the end, when there is eval data).")
    logging_steps: int = _f(1, "Write a metrics.jsonl record and refresh the progress bar every N steps.", "log_steps")
    progress_bar: bool = _f(True, "Show a tqdm progress bar on rank 0.")
    tensorboard: bool = _f(False, "Same as adding tensorboard to --report_to.")
    report_to: str = _f(
        "none", "Trackers fed the metrics.jsonl records and the resolved config: tensorboard, wandb, trackio "
        "(several: space- or comma-separated) or none (see docs/training.md).", nargs="+",
    )
    project: str | None = _f(None, "W&B/trackio project (W&B default: $WANDB_PROJECT; trackio: sftdata).")
    run_name: str | None = _f(None, "W&B/trackio run name (default: the output dir's name).")
    peak_tflops: float | None = _f(
        None, "Per-device dense bf16 peak TFLOP/s for `mfu` (default: the datasheet value of known GPUs)."
    )
    check_tokenizer: bool = _f(
        True, "Refuse data whose recorded tokenizer fingerprint differs from the training tokenizer's."
    )
    # --- LoRA / QLoRA (peft; see docs/training.md#lora-and-qlora and sftdata_train/lora/adapter.py)
    use_peft: bool = _f(False, f"Train LoRA adapters (TRL's switch; rank {USE_PEFT_RANK} unless --lora_r is set).")
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
    bnb_4bit_use_double_quant: bool = _f(
        False, "QLoRA: quantize the quantization constants too (nested quant).", "use_bnb_nested_quant"
    )
    merge_lora: bool = _f(
        False, "At the end, export final/ as the full model with the adapter merged (peft merge_and_unload)."
    )

    # ------------------------------------------------------------------ earlier names (read-only)
    lr = property(lambda self: self.learning_rate)
    num_epochs = property(lambda self: self.num_train_epochs)
    grad_accum = property(lambda self: self.gradient_accumulation_steps)
    log_steps = property(lambda self: self.logging_steps)
    adam_eps = property(lambda self: self.adam_epsilon)
    num_workers = property(lambda self: self.dataloader_num_workers)
    resume = property(lambda self: self.resume_from_checkpoint)
    activation_checkpointing = property(lambda self: self.gradient_checkpointing)

    @property
    def lr_scheduler(self) -> str:
        """The decay after the warm-up: ``cosine``, ``linear`` or ``constant``."""
        return {"constant_with_warmup": "constant", "cosine_with_min_lr": "cosine"}.get(
            self.lr_scheduler_type, self.lr_scheduler_type)

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[str]:
        """Every required key missing and every value out of range, ``"<key>: <reason>"`` each."""
        errors = []
        if not self.data:
            errors.append("data: required (--data DIR): a dir from `sftdata prepare` or `sftdata pack`")
        if not self.output_dir:
            errors.append("output_dir: required (--output_dir DIR)")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices") or (SWITCHES if f.name in ("compile", "gradient_checkpointing") else ())
            if choices and getattr(self, f.name) not in choices:
                errors.append(f"{f.name}: must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        checks = [
            ("gradient_accumulation_steps", self.gradient_accumulation_steps >= 1, ">= 1"),
            ("max_tokens_per_batch", self.max_tokens_per_batch >= 1, ">= 1"),
            ("memory_budget_gb", self.memory_budget_gb is None or self.memory_budget_gb > 0, "> 0"),
            ("loss_chunk_size", self.loss_chunk_size >= 1, ">= 1"),
            ("eval_fraction", 0.0 <= self.eval_fraction < 1.0, "in [0, 1)"),
            ("max_steps", self.max_steps == -1 or self.max_steps >= 1, "-1 or >= 1"),
            ("num_train_epochs", self.max_steps != -1 or self.num_train_epochs > 0, "> 0"),
            ("learning_rate", self.learning_rate >= 0, ">= 0"),
            ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]"),
            ("warmup_ratio", 0.0 <= self.warmup_ratio <= 1.0, "in [0, 1]"),
            ("warmup_steps", self.warmup_steps is None or self.warmup_steps >= 0, ">= 0"),
            ("max_grad_norm", self.max_grad_norm >= 0, ">= 0 (0 disables clipping)"),
        ]
        errors += [f"{name}: must be {what}, got {getattr(self, name)!r}" for name, ok, what in checks if not ok]
        if self.use_peft and not self.lora_r:
            errors.append("use_peft: set but lora_r is 0 (full fine-tuning): set lora_r or remove use_peft")
        return errors

    def validate(self) -> "TrainConfig":
        """Check the config once (:meth:`problems`, the trackers installed, the LoRA keys); returns self.

        Raises:
            ConfigError: one line per problem, each naming the key.
        """
        errors = self.problems()
        if errors:
            raise ConfigError("bad config value" + ("s" if len(errors) > 1 else "") + ":\n  " + "\n  ".join(errors))
        from ..loop.tracking import check_installed

        check_installed(self.trackers())
        from ..lora.adapter import validate_config

        validate_config(self)
        self.__dict__["_validated"] = True  # bookkeeping, not a key: as_config does not check it again
        return self

    def trackers(self) -> list[str]:
        """The tracker names of ``report_to`` and ``tensorboard`` (``[]`` for none)."""
        from ..loop.tracking import parse_report_to

        names = parse_report_to(self.report_to)
        return names + (["tensorboard"] if self.tensorboard and "tensorboard" not in names else [])

    # ------------------------------------------------------------------ in and out
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-able) of all keys."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, *, where: str = "") -> "TrainConfig":
        """Build from a mapping of keys as written (``-`` or ``_``, field names, earlier sftdata names,
        other tools' names; see :mod:`sftdata_train.config.aliases`). Not validated: see :func:`as_config`.

        Raises:
            ConfigError: listing every unknown, foreign or conflicting key, each with what to do.
        """
        from .aliases import resolve_keys

        values, errors = resolve_keys(d or {}, prefix=where)
        raise_errors(errors)
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a train YAML, or a pipeline config's ``train:`` section (``data`` = its final dataset)."""
        return cls.from_dict(file_keys(str(path)))

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write all keys to a YAML file."""
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


def raise_errors(errors: list[str]) -> None:
    """Raise one :class:`ConfigError` listing ``errors`` (one line each); nothing when empty."""
    if errors:
        raise ConfigError("bad config key" + ("s" if len(errors) > 1 else "") + ":\n  " + "\n  ".join(errors))


def file_keys(path: str) -> dict[str, Any]:
    """The keys of a train YAML (its ``env:`` mapping applied to ``os.environ``), or a pipeline config's
    ``train:`` section (recognised by its ``datasets:`` key) with ``data`` = the pipeline's final dataset."""
    from sftdata.pipeline.validate import read_yaml

    d = read_yaml(path)
    if "datasets" in d:
        from ..pipeline import load_config

        return load_config(path).train_config()
    env = d.pop("env", None) or {}
    if not isinstance(env, Mapping):
        raise ConfigError(f"{path}: env: expected a mapping of environment variables, got {type(env).__name__}")
    for k, v in env.items():
        os.environ[str(k)] = str(v)
    return d


def as_config(config: "TrainConfig | Mapping | str | os.PathLike") -> TrainConfig:
    """A :class:`TrainConfig`, a mapping of keys, or a YAML path → a validated config (a new object; a
    config that :meth:`TrainConfig.validate` already passed is copied, not checked again)."""
    if isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config)
        if config.__dict__.get("_validated"):  # parse_args validated it: once is enough
            cfg.__dict__["_validated"] = True
            return cfg
    elif isinstance(config, Mapping):
        cfg = TrainConfig.from_dict(config)
    elif isinstance(config, (str, os.PathLike)):
        cfg = TrainConfig.from_yaml(config)
    else:
        raise ConfigError(f"expected a TrainConfig, a mapping or a YAML path, got {type(config).__name__}")
    return cfg.validate()


def __getattr__(name: str) -> Any:
    # the command line (parser, flags read as keys) lives in sftdata_train.config.command_line
    if name in ("EXAMPLE", "build_arg_parser", "parse_args"):
        from . import command_line as config_cli

        return getattr(config_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
