"""LoRA and QLoRA through peft: the adapter a run trains instead of the full model.

* :mod:`~sftdata_train.lora.adapter`: the adapter's config, applying it to the model, its parameters
  under FSDP2, resuming it;
* :mod:`~sftdata_train.lora.qlora`: the 4-bit base model (bitsandbytes) under the adapter;
* :mod:`~sftdata_train.lora.init_adapter`: starting from an adapter trained before
  (``lora_init_adapter``);
* :mod:`~sftdata_train.lora.merge`: ``final/`` (the adapter, or the merged model) and how to load it.

``sftdata_train.lora`` was one module: its names (``from sftdata_train.lora import apply`` ...) are read
from :mod:`sftdata_train.lora.adapter` on first use, without a warning (docs/architecture.md).
"""

from __future__ import annotations

from sftdata.module_aliases import reexport

__getattr__ = reexport(__name__, "adapter")

__all__ = [
    "Adapter", "apply", "check_qlora", "check_resume", "check_runtime", "config_kwargs", "describe", "enabled",
    "flops_params", "load_quantized", "peft_model", "quiet_peft", "resolve_precision", "target_modules", "validate_config",
]
