"""Standard Hugging Face / TRL (and Axolotl, LLaMA-Factory) training keys → :class:`TrainConfig` keys.

A YAML written for ``transformers.TrainingArguments`` / ``trl.SFTConfig`` mostly works as is:

* :data:`RENAMES`: same meaning, another name (``learning_rate`` → ``lr``,
  ``num_train_epochs`` → ``num_epochs``, ``gradient_accumulation_steps`` → ``grad_accum``, …);
* :data:`_CONVERTERS`: same meaning once the value is translated (``bf16: true`` →
  ``precision: bf16-mixed``, ``lr_scheduler_type: constant_with_warmup`` → ``lr_scheduler: constant``,
  ``warmup_steps: 0.1`` → ``warmup_ratio: 0.1`` as in transformers ≥ 5, …); a value without an
  exact equivalent is an error, never approximated;
* :data:`UNSUPPORTED`: keys whose feature sftdata_train does not have, or that belong to the data
  stages (``max_length``, ``packing``, …): an error that says what to do instead;
* LoRA switches (TRL ``use_peft``, LLaMA-Factory ``finetuning_type: lora``, Axolotl
  ``adapter: lora|qlora``) turn LoRA on with that tool's default rank when ``lora_r`` is not
  given (TRL 16, LLaMA-Factory 8; Axolotl has none: ``lora_r`` is required); the other LoRA
  defaults stay sftdata_train's (``lora_alpha`` 2 × r, dropout 0, every linear layer of the decoder);
* any other unknown key: an error with a "did you mean" suggestion.

Defaults stay sftdata_train's (e.g. ``warmup_ratio`` 0.03, ``weight_decay`` 0.01, bf16-mixed),
not transformers'; ``docs/migrating.md`` lists every key side by side.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from sftdata.errors import ConfigError
from sftdata.suggest import did_you_mean

#: Foreign key → TrainConfig key, the value kept as is.
RENAMES: dict[str, str] = {
    "learning_rate": "lr",
    "num_train_epochs": "num_epochs",
    "gradient_accumulation_steps": "grad_accum",
    "adam_epsilon": "adam_eps",
    "logging_steps": "log_steps",
    "gradient_checkpointing": "activation_checkpointing",
    "torch_compile": "compile",
    "dataloader_num_workers": "num_workers",
    "resume_from_checkpoint": "resume",
    "model_name_or_path": "model",
    "base_model": "model",  # Axolotl
    "tokenizer_name": "tokenizer",
    "tokenizer_name_or_path": "tokenizer",
    "wandb_project": "project",  # Axolotl
    "wandb_name": "run_name",  # Axolotl
    "trackio_project": "project",
    "lora_rank": "lora_r",  # LLaMA-Factory
    "additional_target": "lora_modules_to_save",  # LLaMA-Factory
    "peft_use_rslora": "use_rslora",  # Axolotl
    "peft_use_dora": "use_dora",  # Axolotl
    "lora_model_dir": "lora_init_adapter",  # Axolotl
    "adapter_name_or_path": "lora_init_adapter",  # LLaMA-Factory
    "use_bnb_nested_quant": "bnb_4bit_use_double_quant",  # TRL
    "double_quantization": "bnb_4bit_use_double_quant",  # LLaMA-Factory
    "quantization_type": "bnb_4bit_quant_type",  # LLaMA-Factory
}

#: The :data:`RENAMES` that ``sftdata-train`` also accepts as flags (the transformers/TRL names,
#: ``--learning_rate`` and ``--learning-rate``).
FLAG_ALIASES = (
    "learning_rate", "num_train_epochs", "gradient_accumulation_steps", "adam_epsilon", "logging_steps",
    "gradient_checkpointing", "torch_compile", "dataloader_num_workers", "resume_from_checkpoint",
    "model_name_or_path", "use_bnb_nested_quant",
)
#: TrainConfig keys whose flag also takes the underscore spelling of TRL's command line (``--lora_r``).
UNDERSCORE_FLAGS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save", "use_rslora",
    "use_dora", "load_in_4bit", "bnb_4bit_quant_type",
)

_DATA = "a data option: set it at the top level of the pipeline config (see docs/pipeline.md)"
_BATCH = (
    "sftdata_train batches by tokens, not rows: set max_tokens_per_batch (about batch size × sequence "
    "length; one micro-batch per rank)"
)
_HUB = "sftdata_train does not push to the Hub: upload <output_dir>/final yourself (huggingface-cli upload)"

#: Foreign keys without an equivalent → what to do instead.
UNSUPPORTED: dict[str, str] = {
    **{k: _BATCH for k in ("per_device_train_batch_size", "per_device_eval_batch_size", "train_batch_size",
                           "eval_batch_size", "micro_batch_size", "batch_size", "auto_find_batch_size",
                           "eval_accumulation_steps")},
    **{k: _DATA for k in ("max_length", "max_seq_length", "sequence_len", "cutoff_len", "packing",
                          "sample_packing", "packing_strategy", "pad_to_sequence_len", "dataset_name",
                          "dataset", "datasets", "dataset_config", "dataset_text_field", "dataset_num_proc",
                          "dataset_kwargs", "assistant_only_loss", "completion_only_loss", "train_on_inputs",
                          "chat_template", "chat_template_path", "template", "eos_token", "pad_token",
                          "dataset_train_split", "dataset_test_split", "dataset_streaming", "preprocessing_num_workers",
                          "truncation_mode", "shuffle_dataset", "eval_packing", "neat_packing", "train_on_prompt",
                          "mask_history", "max_samples", "mix_strategy", "interleave_probs", "streaming")},
    "lora_target_parameters": "LoRA on bare parameters (MoE experts) is not supported: set lora_target_modules",
    "loraplus_lr_ratio": "LoRA+ (another lr for B) is not supported: remove it",
    "peft_layers_to_transform": "LoRA on a subset of layers is not supported: remove it",
    "qlora_sharded_model_loading": "QLoRA runs on one GPU (FSDP2 cannot shard 4-bit weights): remove it",
    **{k: _HUB for k in ("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
                         "hub_always_push", "hub_revision")},
    "overwrite_output_dir": "sftdata_train resumes a run (resume) or starts one in output_dir: remove an old run yourself",
    "do_train": "sftdata_train always trains: remove it",
    "do_eval": "eval runs when eval_data or eval_fraction is set (every eval_steps): remove it",
    "do_predict": "sftdata_train does not predict: remove it",
    "logging_dir": "TensorBoard events go to <output_dir>/tensorboard: remove it",
    "use_liger_kernel": "the chunked loss of sftdata_train already avoids materialising the logits: remove it",
    "neftune_noise_alpha": "NEFTune is not implemented: remove it",
    "label_smoothing_factor": "label smoothing is not implemented (the loss is plain cross-entropy): remove it",
    "deepspeed": "DeepSpeed is not used: under torchrun sftdata_train shards with FSDP2 on its own",
    "fsdp": "FSDP2 is used automatically under torchrun (fsdp_reshard_after_forward tunes it): remove it",
    "fsdp_config": "FSDP2 is used automatically under torchrun (fsdp_reshard_after_forward tunes it): remove it",
    "gradient_checkpointing_kwargs": "non-reentrant activation checkpointing is always used: remove it",
    "torch_dtype": "set precision: bf16-mixed (fp32 weights, bf16 compute), bf16-true or fp32",
    "dtype": "set precision: bf16-mixed (fp32 weights, bf16 compute), bf16-true or fp32",
    "model_init_kwargs": "not supported: set model, precision and attn_implementation",
    "load_best_model_at_end": "not supported: every checkpoint keeps its eval loss in metrics.jsonl",
    "metric_for_best_model": "not supported: every checkpoint keeps its eval loss in metrics.jsonl",
    "dataloader_pin_memory": "automatic (pinned on CUDA): remove it",
    "saves_per_epoch": "use save_steps",
    "evals_per_epoch": "use eval_steps",
    "logging_first_step": "not supported: use log_steps",
    "eval_on_start": "not supported: eval runs every eval_steps and at the end",
    "data_seed": "the data order follows seed",
    "trackio_space_id": "sftdata_train logs to a local trackio project only: remove it",
    "trust_remote_code": "models load without remote code: remove it",
    "model_revision": "give a local dir or the Hub id of the revision to train: remove it",
    "router_aux_loss_coef": "not supported: remove it",
    "plot_loss": "the loss is in metrics.jsonl and the trackers (report_to): remove it",
    "stage": "sftdata_train does supervised fine-tuning only: remove it",
    "overwrite_cache": "stages re-run when their inputs change (fingerprints); `sftdata run --force` re-runs all",
}

_SCHEDULES = {
    "cosine": "cosine",
    "linear": "linear",
    "constant": "constant",
    "constant_with_warmup": "constant",
    "cosine_with_min_lr": "cosine",
}
_ATTN = {"flash_attention_2": "flash_attn", "flex_attention": "flex"}
_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw")
_TRACKERS = ("tensorboard", "wandb", "trackio", "none")


class _Out:
    """The canonical keys being built, with where each came from (for conflict messages)."""

    def __init__(self, prefix: str) -> None:
        self.values: dict[str, Any] = {}
        self.source: dict[str, str] = {}
        self.errors: list[str] = []
        self.prefix = prefix
        self.switches: list[tuple[str, bool, int | None]] = []  # (key, LoRA on?, the tool's default rank)

    def where(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def set(self, name: str, value: Any, key: str) -> None:
        if name in self.values and self.values[name] != value:
            self.errors.append(
                f"{self.where(key)}: sets `{name}` (= {value!r}), which {self.where(self.source[name])} already "
                f"sets to {self.values[name]!r}; keep one"
            )
            return
        self.values[name] = value
        self.source[name] = key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.where(key)}: {message}")

    def lora_switch(self, key: str, *, on: bool, rank: int | None = None) -> None:
        """A key that turns LoRA on (with its tool's default rank, None: no default) or off."""
        self.switches.append((key, on, rank))

    def finish_lora(self) -> None:
        """Apply the LoRA switches: the rank when ``lora_r`` is not given; conflicts are errors."""
        on = [(k, r) for k, o, r in self.switches if o]
        off = [k for k, o, _ in self.switches if not o]
        rank = self.values.get("lora_r")
        if on and off:
            self.error(off[0], f"full fine-tuning, but {self.where(on[0][0])} turns LoRA on; keep one")
        elif off and rank:
            self.error(off[0], f"full fine-tuning, but {self.where(self.source['lora_r'])} sets lora_r = {rank}")
        elif on and rank == 0:
            self.error(on[0][0], f"turns LoRA on, but {self.where(self.source['lora_r'])} sets lora_r = 0")
        elif on and rank is None:
            key, default = on[0]
            if default is None:
                self.error(key, "turns LoRA on: set lora_r (the rank; there is no default)")
            else:
                self.set("lora_r", default, key)


def _bf16(out: _Out, key: str, value: Any) -> None:
    if value == "auto" or value is True:
        out.set("precision", "bf16-mixed", key)
    elif value is False:
        out.set("precision", "fp32", key)
    else:
        out.error(key, f"expected true, false or auto, got {value!r}")


def _false_only(reason: str) -> Callable[[_Out, str, Any], None]:
    def convert(out: _Out, key: str, value: Any) -> None:
        if value not in (False, None):
            out.error(key, reason)

    return convert


def _scheduler(out: _Out, key: str, value: Any) -> None:
    if value not in _SCHEDULES:
        out.error(key, f"{value!r} has no equivalent; accepted: {', '.join(sorted(_SCHEDULES))}")
        return
    out.set("lr_scheduler", _SCHEDULES[value], key)


def _scheduler_kwargs(out: _Out, key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        out.error(key, f"expected a mapping, got {type(value).__name__}")
        return
    for k, v in value.items():
        if k in ("min_lr_rate", "min_lr_ratio"):
            out.set("min_lr_ratio", v, f"{key}.{k}")
        else:
            out.error(f"{key}.{k}", "not supported (only min_lr_rate, the final lr as a fraction of the peak)")


def _optim(out: _Out, key: str, value: Any) -> None:
    if value not in _OPTIMIZERS:
        out.error(key, f"{value!r} is not available: sftdata_train uses torch AdamW ({', '.join(_OPTIMIZERS)})")


def _strategy(out: _Out, key: str, value: Any) -> None:
    if value != "steps":
        step_key = {"eval": "eval_steps", "evaluation": "eval_steps", "save": "save_steps"}.get(
            key.split("_")[0], "log_steps"
        )
        out.error(key, f"only 'steps' is supported (got {value!r}): set {step_key}")


def _fraction(out: _Out, key: str, value: Any) -> None:
    if isinstance(value, float) and 0.0 <= value < 1.0:
        out.set("eval_fraction", value, key)
    else:
        out.error(key, f"only a fraction in [0, 1) is supported (got {value!r}): it maps to eval_fraction")


def _flash_attention(out: _Out, key: str, value: Any) -> None:
    if value is True:
        out.set("attn_implementation", "flash_attn", key)
    elif value not in (False, None):
        out.error(key, f"expected true or false, got {value!r}")


def _loss_type(out: _Out, key: str, value: Any) -> None:
    if value != "nll":
        out.error(key, f"only 'nll' (cross-entropy on the trained tokens) is implemented, got {value!r}")


def _finetuning_type(out: _Out, key: str, value: Any) -> None:
    if value == "full":
        out.lora_switch(key, on=False)
    elif value == "lora":
        out.lora_switch(key, on=True, rank=8)  # LLaMA-Factory's default lora_rank
    else:
        out.error(key, f"expected full or lora, got {value!r}" + (" (not supported)" if value in ("freeze", "oft")
                                                                else ""))


def _use_peft(out: _Out, key: str, value: Any) -> None:
    if isinstance(value, bool):
        out.lora_switch(key, on=value, rank=16)  # TRL's default lora_r
    else:
        out.error(key, f"expected true or false, got {value!r}")


def _adapter(out: _Out, key: str, value: Any) -> None:
    if value in (None, ""):
        out.lora_switch(key, on=False)
    elif value in ("lora", "qlora"):
        out.lora_switch(key, on=True, rank=None)  # Axolotl has no default rank
        if value == "qlora":
            out.set("load_in_4bit", True, key)
    else:
        out.error(key, f"expected lora or qlora, got {value!r}")


def _lora_target(out: _Out, key: str, value: Any) -> None:
    """LLaMA-Factory ``lora_target``: ``all`` (every linear layer: sftdata_train's default) or names."""
    targets = [v.strip() for v in (value if isinstance(value, (list, tuple)) else str(value).split(","))]
    out.set("lora_target_modules", None if targets == ["all"] else ",".join(t for t in targets if t), key)


def _lora_target_linear(out: _Out, key: str, value: Any) -> None:
    """Axolotl ``lora_target_linear: true``: every linear layer, sftdata_train's default target."""
    if value is True:
        out.set("lora_target_modules", None, key)
    elif value not in (False, None):
        out.error(key, f"expected true or false, got {value!r}")


def _quantization_bit(out: _Out, key: str, value: Any) -> None:
    if value == 4:
        out.set("load_in_4bit", True, key)
    elif value is not None:
        out.error(key, f"only 4 (QLoRA through bitsandbytes) is supported, got {value!r}")


def _one_of(*accepted: Any, what: str) -> Callable[[_Out, str, Any], None]:
    def convert(out: _Out, key: str, value: Any) -> None:
        if value not in (None, *accepted):
            out.error(key, f"{value!r} is not supported: {what}")

    return convert


_CONVERTERS: dict[str, Callable[[_Out, str, Any], None]] = {
    "loss_type": _loss_type,  # TRL
    "finetuning_type": _finetuning_type,  # LLaMA-Factory
    "use_peft": _use_peft,  # TRL
    "adapter": _adapter,  # Axolotl
    "lora_target": _lora_target,  # LLaMA-Factory
    "lora_target_linear": _lora_target_linear,  # Axolotl
    "quantization_bit": _quantization_bit,  # LLaMA-Factory
    "quantization_method": _one_of("bnb", "bitsandbytes", what="QLoRA quantizes with bitsandbytes (bnb)"),
    "lora_task_type": _one_of("CAUSAL_LM", what="sftdata_train trains causal LMs (CAUSAL_LM)"),
    "bnb_4bit_quant_storage": _one_of("uint8", what="the 4-bit weights are stored as bitsandbytes' uint8"),
    "load_in_8bit": _false_only("8-bit loading is not supported: use load_in_4bit (QLoRA) or LoRA on bf16 weights"),
    "lora_fan_in_fan_out": _false_only("fan_in_fan_out is for GPT-2's Conv1D layers, which are not targeted"),
    "activation_offloading": _false_only("activation offloading is not implemented: use activation_checkpointing"),
    "bf16": _bf16,
    "fp16": _false_only("fp16 training is not supported: use bf16 (precision: bf16-mixed) or fp32"),
    "tf32": _false_only("TF32 matmuls are not enabled by sftdata_train: remove it"),
    "lr_scheduler_type": _scheduler,
    "lr_scheduler_kwargs": _scheduler_kwargs,
    "optim": _optim,
    "optimizer": _optim,  # Axolotl
    "eval_strategy": _strategy,
    "evaluation_strategy": _strategy,
    "save_strategy": _strategy,
    "logging_strategy": _strategy,
    "val_size": _fraction,  # LLaMA-Factory
    "val_set_size": _fraction,  # Axolotl
    "flash_attention": _flash_attention,  # Axolotl
}


def _canonical_value(out: _Out, name: str, key: str, value: Any) -> None:
    """Value spellings that transformers/TRL use for keys sftdata_train shares."""
    if name == "warmup_steps" and isinstance(value, float) and 0.0 < value < 1.0:
        out.set("warmup_ratio", value, key)  # transformers >= 5: a float < 1 is a ratio
        return
    if name == "attn_implementation" and value in _ATTN:
        value = _ATTN[value]
    if name in ("lora_target_modules", "lora_modules_to_save") and isinstance(value, (list, tuple)):
        value = ",".join(str(v).strip() for v in value)  # YAML lists: the flag's comma-separated form
    if name == "report_to":
        value = report_to_string(value, where=out.where(key), errors=out.errors)
        if value is None:
            return
    out.set(name, value, key)


def report_to_string(value: Any, *, where: str = "report_to", errors: list[str] | None = None) -> str | None:
    """``report_to`` as a comma-separated string of tracker names (``"none"`` for none).

    Accepts a list or a comma-separated string of ``tensorboard``, ``wandb``, ``trackio``, ``none``
    (``None`` and ``[]`` mean none). Returns None and appends to ``errors`` (or raises
    :class:`ConfigError` when ``errors`` is None) for anything else; ``all`` is refused because
    it would depend on what happens to be installed.
    """
    if value is None:
        return "none"
    items = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else str(value).split(",")
    names = [v.strip() for v in items if v.strip()]
    bad = [n for n in names if n not in _TRACKERS]
    if bad:
        hint = did_you_mean(bad[0], _TRACKERS)
        msg = (
            f"{where}: unknown tracker {bad[0]!r} (choose from {', '.join(_TRACKERS)})"
            + (f"; {hint}" if hint else "")
            + ("; 'all' is not accepted: name the trackers" if "all" in bad else "")
        )
        if errors is None:
            raise ConfigError(msg)
        errors.append(msg)
        return None
    names = [n for n in dict.fromkeys(names) if n != "none"]
    return ",".join(names) if names else "none"


def known_keys(names: Iterable[str]) -> list[str]:
    """Every accepted key: the canonical names plus the aliases."""
    return sorted(set(names) | set(RENAMES) | set(_CONVERTERS))


def canonical_keys(d: Mapping[str, Any], names: Iterable[str], *, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Translate a mapping of training keys into :class:`TrainConfig` field names.

    Args:
        d: keys as written (``-`` accepted for ``_``), canonical or alias.
        names: the :class:`TrainConfig` field names.
        prefix: prepended to key paths in messages (``"train."`` in a pipeline config).

    Returns:
        ``(values, errors)``: the canonical mapping and one message per bad key, each naming the
        key path (``train.learnig_rate: unknown key; did you mean 'learning_rate'?``).
    """
    names = set(names)
    out = _Out(prefix)
    for raw_key, value in (d or {}).items():
        key = str(raw_key)
        norm = key.replace("-", "_")
        if norm in names:
            _canonical_value(out, norm, key, value)
        elif norm in RENAMES:
            _canonical_value(out, RENAMES[norm], key, value)
        elif norm in _CONVERTERS:
            _CONVERTERS[norm](out, key, value)
        elif norm in UNSUPPORTED:
            out.error(key, UNSUPPORTED[norm])
        else:
            hint = did_you_mean(norm, known_keys(names))
            out.error(key, "unknown key" + (f"; {hint}" if hint else "") + " (keys: sftdata-train --help)")
    out.finish_lora()
    return out.values, out.errors
