"""Other tools' keys whose *value* must be translated to become a :class:`~sftdata_train.config.TrainConfig` field.

:data:`CONVERTERS` maps such a key (``bf16: true``, LLaMA-Factory's ``finetuning_type: lora``,
``optim``, the ``*_strategy`` keys …) to a function that writes the equivalent field values into
a :class:`KeyValues`, or records one error for a value without an exact equivalent (never
approximated). Used by :func:`sftdata_train.config.aliases.resolve_keys`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw")


class KeyValues:
    """The field values being built from one source, with the key each came from (for conflict messages)."""

    def __init__(self, prefix: str) -> None:
        self.values: dict[str, Any] = {}
        self.source: dict[str, str] = {}
        self.errors: list[str] = []
        self.prefix = prefix
        self.default_rank: tuple[str, int | None] | None = None  # (key, rank) of a tool's LoRA switch

    def where(self, key: str) -> str:
        """The key path of ``key`` in messages (the source's prefix + the key)."""
        return f"{self.prefix}{key}"

    def set(self, name: str, value: Any, key: str) -> None:
        """Set field ``name`` from ``key``; a second, different value for the same field (or LoRA
        both on and off) is recorded as one error naming both keys."""
        if name == "use_peft" and name in self.values and self.values[name] != value:
            off, on = (key, self.source[name]) if value is False else (self.source[name], key)
            self.errors.append(f"{self.where(off)}: full fine-tuning, but {self.where(on)} turns LoRA on; keep one")
            return
        if name in self.values and self.values[name] != value:
            self.errors.append(
                f"{self.where(key)}: sets `{name}` (= {value!r}), which {self.where(self.source[name])} already "
                f"sets to {self.values[name]!r}; keep one"
            )
            return
        self.values[name] = value
        self.source[name] = key

    def error(self, key: str, message: str) -> None:
        """Record one error message for ``key``."""
        self.errors.append(f"{self.where(key)}: {message}")

    def lora_switch(self, key: str, *, on: bool, rank: int | None = None) -> None:
        """A tool's key that turns LoRA on (with that tool's default rank; None: no default) or off."""
        self.set("use_peft", on, key)
        if on:
            self.default_rank = (key, rank)


def _finetuning_type(out: KeyValues, key: str, value: Any) -> None:
    if value == "full":
        out.lora_switch(key, on=False)
    elif value == "lora":
        out.lora_switch(key, on=True, rank=8)  # LLaMA-Factory's default lora_rank
    else:
        out.error(key, f"expected full or lora, got {value!r}" + (" (not supported)" if value in ("freeze", "oft")
                                                                else ""))


def _adapter(out: KeyValues, key: str, value: Any) -> None:
    if value in (None, ""):
        out.lora_switch(key, on=False)
    elif value in ("lora", "qlora"):
        out.lora_switch(key, on=True, rank=None)  # Axolotl has no default rank
        if value == "qlora":
            out.set("load_in_4bit", True, key)
    else:
        out.error(key, f"expected lora or qlora, got {value!r}")


def _bf16(out: KeyValues, key: str, value: Any) -> None:
    if value == "auto" or value is True:
        out.set("precision", "bf16-mixed", key)
    elif value is False:
        out.set("precision", "fp32", key)
    else:
        out.error(key, f"expected true, false or auto, got {value!r}")


def _false_only(reason: str) -> Callable[[KeyValues, str, Any], None]:
    def convert(out: KeyValues, key: str, value: Any) -> None:
        if value not in (False, None):
            out.error(key, reason)

    return convert


def _scheduler_kwargs(out: KeyValues, key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        out.error(key, f"expected a mapping, got {type(value).__name__}")
        return
    for k, v in value.items():
        if k in ("min_lr_rate", "min_lr_ratio"):
            out.set("min_lr_ratio", v, f"{key}.{k}")
        else:
            out.error(f"{key}.{k}", "not supported (only min_lr_rate, the final lr as a fraction of the peak)")


def _optim(out: KeyValues, key: str, value: Any) -> None:
    if value not in _OPTIMIZERS:
        out.error(key, f"{value!r} is not available: sftdata_train uses torch AdamW ({', '.join(_OPTIMIZERS)})")


def _strategy(out: KeyValues, key: str, value: Any) -> None:
    if value != "steps":
        step_key = {"eval": "eval_steps", "evaluation": "eval_steps", "save": "save_steps"}.get(
            key.split("_")[0], "logging_steps"
        )
        out.error(key, f"only 'steps' is supported (got {value!r}): set {step_key}")


def _fraction(out: KeyValues, key: str, value: Any) -> None:
    if isinstance(value, float) and 0.0 <= value < 1.0:
        out.set("eval_fraction", value, key)
    else:
        out.error(key, f"only a fraction in [0, 1) is supported (got {value!r}): it maps to eval_fraction")


def _flash_attention(out: KeyValues, key: str, value: Any) -> None:
    if value is True:
        out.set("attn_implementation", "flash_attn", key)
    elif value not in (False, None):
        out.error(key, f"expected true or false, got {value!r}")


def _loss_type(out: KeyValues, key: str, value: Any) -> None:
    if value != "nll":
        out.error(key, f"only 'nll' (cross-entropy on the trained tokens) is implemented, got {value!r}")


def _lora_target(out: KeyValues, key: str, value: Any) -> None:
    """LLaMA-Factory ``lora_target``: ``all`` (every linear layer: sftdata_train's default) or names."""
    targets = [v.strip() for v in (value if isinstance(value, (list, tuple)) else str(value).split(","))]
    out.set("lora_target_modules", None if targets == ["all"] else ",".join(t for t in targets if t), key)


def _lora_target_linear(out: KeyValues, key: str, value: Any) -> None:
    """Axolotl ``lora_target_linear: true``: every linear layer, sftdata_train's default target."""
    if value is True:
        out.set("lora_target_modules", None, key)
    elif value not in (False, None):
        out.error(key, f"expected true or false, got {value!r}")


def _quantization_bit(out: KeyValues, key: str, value: Any) -> None:
    if value == 4:
        out.set("load_in_4bit", True, key)
    elif value is not None:
        out.error(key, f"only 4 (QLoRA through bitsandbytes) is supported, got {value!r}")


def _one_of(*accepted: Any, what: str) -> Callable[[KeyValues, str, Any], None]:
    def convert(out: KeyValues, key: str, value: Any) -> None:
        if value not in (None, *accepted):
            out.error(key, f"{value!r} is not supported: {what}")

    return convert


CONVERTERS: dict[str, Callable[[KeyValues, str, Any], None]] = {
    "loss_type": _loss_type,  # TRL
    "finetuning_type": _finetuning_type,  # LLaMA-Factory
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


__all__ = ["CONVERTERS", "KeyValues"]
