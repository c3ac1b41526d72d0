"""Keys as users write them → :class:`~sftdata_train.config.TrainConfig` fields, with ONE message per bad key.

:class:`TrainConfig`'s fields already carry the ``TrainingArguments``/``SFTConfig``/peft names
(``learning_rate``, ``lr_scheduler_type``, ``lora_r``…), and ``HfArgumentParser`` makes each a flag.
What remains here is what a parser cannot know:

* :data:`RENAMES`: same meaning, another name: sftdata_train's earlier names (``lr``, ``grad_accum``…)
  and Axolotl/LLaMA-Factory names (``base_model``, ``lora_rank``…);
* :data:`~sftdata_train.config.alias_converters.CONVERTERS`: same meaning once the value is translated (``bf16: true`` → ``precision:
  bf16-mixed``, ``warmup_steps: 0.1`` → ``warmup_ratio: 0.1`` as in transformers ≥ 5, LLaMA-Factory's
  ``finetuning_type: lora``…); a value without an exact equivalent is an error, never approximated;
* :data:`UNSUPPORTED` (features sftdata_train does not have) and
  :data:`sftdata.pipeline.keys.DATA_KEY_HINTS` (keys of the data stages: ``packing``,
  ``max_seq_length``, ``assistant_only_loss``…): the one message that says what to do instead,
  the same in a YAML file, under a pipeline's ``train:``, at its top level and as a flag;
* any other unknown key: a "did you mean".

Defaults stay sftdata_train's (e.g. ``warmup_ratio`` 0.03, ``weight_decay`` 0.01, bf16-mixed),
not transformers'; ``docs/migrating.md`` lists every key side by side.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sftdata.errors import ConfigError
from sftdata.pipeline.keys import DATA_KEY_HINTS
from sftdata.suggest import did_you_mean

from .alias_converters import CONVERTERS, KeyValues

#: Earlier sftdata_train names and other tools' names → TrainConfig field, the value kept as is.
RENAMES: dict[str, str] = {
    "lr": "learning_rate",
    "num_epochs": "num_train_epochs",
    "grad_accum": "gradient_accumulation_steps",
    "adam_eps": "adam_epsilon",
    "log_steps": "logging_steps",
    "activation_checkpointing": "gradient_checkpointing",
    "torch_compile": "compile",
    "num_workers": "dataloader_num_workers",
    "resume": "resume_from_checkpoint",
    "lr_scheduler": "lr_scheduler_type",
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

_BATCH = (
    "sftdata_train batches by tokens, not rows: set max_tokens_per_batch (about batch size × sequence "
    "length; one micro-batch per rank)"
)
_HUB = "sftdata_train does not push to the Hub: upload <output_dir>/final yourself (huggingface-cli upload)"

#: Training keys of features sftdata_train does not have → what to do instead.
UNSUPPORTED: dict[str, str] = {
    **{k: _BATCH for k in ("per_device_train_batch_size", "per_device_eval_batch_size", "train_batch_size",
                           "eval_batch_size", "micro_batch_size", "batch_size", "auto_find_batch_size",
                           "eval_accumulation_steps")},
    "lora_target_parameters": "LoRA on bare parameters (MoE experts) is not supported: set lora_target_modules",
    "loraplus_lr_ratio": "LoRA+ (another lr for B) is not supported: remove it",
    "peft_layers_to_transform": "LoRA on a subset of layers is not supported: remove it",
    "qlora_sharded_model_loading": "QLoRA runs on one GPU (FSDP2 cannot shard 4-bit weights): remove it",
    **{k: _HUB for k in ("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
                         "hub_always_push", "hub_revision")},
    "overwrite_output_dir": "use overwrite (start over in a non-empty output_dir) or resume_from_checkpoint",
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
    "logging_first_step": "not supported: use logging_steps",
    "eval_on_start": "not supported: eval runs every eval_steps and at the end",
    "data_seed": "the data order follows seed",
    "trackio_space_id": "sftdata_train logs to a local trackio project only: remove it",
    "trust_remote_code": "models load without remote code: remove it",
    "model_revision": "give a local dir or the Hub id of the revision to train: remove it",
    "router_aux_loss_coef": "not supported: remove it",
    "plot_loss": "the loss is in metrics.jsonl and the trackers (report_to): remove it",
    "stage": "sftdata_train does supervised fine-tuning only: remove it",
}

_ATTN = {"flash_attention_2": "flash_attn", "flex_attention": "flex"}
_TRACKERS = ("tensorboard", "wandb", "trackio", "none")
_SWITCH = {True: "on", False: "off", "true": "on", "false": "off", "True": "on", "False": "off"}


def _field_names() -> tuple[str, ...]:
    from .train_config import TrainConfig

    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def _canonical_value(out: KeyValues, name: str, key: str, value: Any) -> None:
    """The value spellings transformers/TRL/YAML use for a field, as the field's value."""
    from .train_config import SCHEDULERS

    if name == "warmup_steps" and isinstance(value, float) and 0.0 < value < 1.0:
        out.set("warmup_ratio", value, key)  # transformers >= 5: a float < 1 is a ratio
        return
    if name == "lr_scheduler_type" and value not in SCHEDULERS:
        out.error(key, f"{value!r} has no equivalent; accepted: {', '.join(SCHEDULERS)}")
        return
    if name == "attn_implementation" and value in _ATTN:
        value = _ATTN[value]
    if name in ("compile", "gradient_checkpointing") and value in _SWITCH:
        value = _SWITCH[value]  # booleans of TrainingArguments / older configs
    if name == "model" and value in ("", "embedded"):
        value = None
    if name == "resume_from_checkpoint" and isinstance(value, bool):
        value = "latest" if value else None
    if name in ("lora_target_modules", "lora_modules_to_save") and value is not None:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        value = ",".join(s for s in (str(v).strip() for v in items) if s) or None
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
    names = [n.strip() for v in items for n in v.split(",") if n.strip()]
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


def is_training_key(name: str) -> bool:
    """``name`` (``_`` spelling) is a field, an earlier name or another tool's name of one."""
    return name in _field_names() or name in RENAMES or name in CONVERTERS


def foreign_message(name: str, *, data: bool = True) -> str | None:
    """The one message for a key that belongs to another stage or to a feature sftdata_train does not
    have (``data=False``: only the latter), else None."""
    if name in UNSUPPORTED:
        return UNSUPPORTED[name]
    return DATA_KEY_HINTS.get(name) if data else None


def _resolve(d: Mapping[str, Any], prefix: str) -> KeyValues:
    names = _field_names()
    out = KeyValues(prefix)
    for raw_key, value in d.items():
        key = str(raw_key)
        norm = key.replace("-", "_")
        if norm in names:
            _canonical_value(out, norm, key, value)
        elif norm in RENAMES:
            _canonical_value(out, RENAMES[norm], key, value)
        elif norm in CONVERTERS:
            CONVERTERS[norm](out, key, value)
        elif foreign_message(norm):
            out.error(key, foreign_message(norm))
        else:
            hint = did_you_mean(norm, sorted({*names, *RENAMES, *CONVERTERS}))
            out.error(key, "unknown key" + (f"; {hint}" if hint else "") + " (keys: sftdata-train --help)")
    return out


def _finish(outs: list[KeyValues]) -> tuple[dict[str, Any], list[str]]:
    """Merge sources (later ones win) and apply the LoRA switches: ``use_peft`` (or a tool's switch)
    without ``lora_r`` takes the tool's default rank; ``lora_r`` > 0 means ``use_peft``."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    errors: list[str] = []
    rank_default: tuple[str, int | None] | None = None
    for out in outs:
        values.update(out.values)
        where.update({k: out.where(v) for k, v in out.source.items()})
        errors += out.errors
        if out.default_rank:
            rank_default = (out.where(out.default_rank[0]), out.default_rank[1])
    from .train_config import USE_PEFT_RANK

    on, rank = values.get("use_peft"), values.get("lora_r")
    if on and rank is None:
        key, default = rank_default if rank_default and rank_default[0] == where["use_peft"] else (
            where["use_peft"], USE_PEFT_RANK)
        if default is None:
            errors.append(f"{key}: turns LoRA on: set lora_r (the rank; there is no default)")
        else:
            values["lora_r"] = default
    elif on and rank == 0:
        errors.append(f"{where['use_peft']}: turns LoRA on, but {where['lora_r']} sets lora_r = 0")
    elif on is False and rank:
        errors.append(f"{where['use_peft']}: full fine-tuning, but {where['lora_r']} sets lora_r = {rank}; keep one")
    elif rank and on is None:
        values["use_peft"] = True
    return values, errors


def resolve_keys(d: Mapping[str, Any], *, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Translate a mapping of keys as written into :class:`TrainConfig` field values.

    Args:
        d: keys as written (``-`` accepted for ``_``): fields, earlier names, other tools' names.
        prefix: prepended to key paths in messages (``"train."`` in a pipeline config).

    Returns:
        ``(values, errors)``: the field values and one message per bad key, each naming the key path
        (``train.learnig_rate: unknown key; did you mean 'learning_rate'?``).
    """
    return _finish([_resolve(d or {}, prefix)])


def merge_sources(file: Mapping[str, Any], flags: Mapping[str, Any], *, file_prefix: str = "",
                  flag_prefix: str = "--") -> tuple[dict[str, Any], list[str]]:
    """:func:`resolve_keys` of a file's keys and of the flags; a flag overrides the file's key."""
    return _finish([_resolve(file or {}, file_prefix), _resolve(flags or {}, flag_prefix)])


_CONVERTERS = CONVERTERS  # the earlier (private) name, read by tests/train/config/test_train_aliases.py
