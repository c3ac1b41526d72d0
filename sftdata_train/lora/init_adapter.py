"""Starting LoRA training from an adapter trained before (``lora_init_adapter``; Axolotl's
``lora_model_dir``, LLaMA-Factory's ``adapter_name_or_path``).

The adapter's own config (``peft.PeftConfig.from_pretrained``) defines the run's adapter: rank,
alpha, target modules, ``modules_to_save``, rslora and DoRA. Keys the run leaves at their
defaults take its values; a key set to another value is a :class:`ConfigError` (never a silent
choice). Its weights (``peft.utils.load_peft_weights``) fill the adapter :func:`sftdata_train.lora.apply`
builds, on rank 0's full copy under FSDP2 (the broadcast carries them to the other ranks). The
optimizer and the schedule start afresh: ``resume`` is what continues a run of sftdata_train.
"""

from __future__ import annotations

import importlib.util

from sftdata.errors import ConfigError

from .adapter import ADAPTER_NAME, DEFAULTS, PEFT_PIP, quiet_peft, names

def _adapter_config(source: str):
    """``peft.PeftConfig.from_pretrained(source)`` (a dir or a Hub id), checked to be a LoRA adapter
    that this trainer can continue. Raises :class:`ConfigError`."""
    if importlib.util.find_spec("peft") is None:
        raise ConfigError(f"lora_init_adapter needs the `peft` package, which is not installed: {PEFT_PIP}")
    import peft

    if "," in source:
        raise ConfigError(f"lora_init_adapter {source!r}: one adapter only (merging several is not supported)")
    try:
        pc = peft.PeftConfig.from_pretrained(source)
    except Exception as e:  # noqa: BLE001 - peft/huggingface_hub raise ValueError, OSError, HTTP errors...
        raise ConfigError(f"lora_init_adapter {source!r}: not a peft adapter (no readable adapter_config.json): {e}") from e
    kind = str(getattr(pc, "peft_type", ""))
    if not kind.endswith("LORA") or kind.endswith("ADALORA"):
        raise ConfigError(f"lora_init_adapter {source!r}: a {kind} adapter; only LoRA adapters can be continued")
    unsupported = [name for name in ("rank_pattern", "alpha_pattern", "layers_to_transform", "target_parameters")
                   if getattr(pc, name, None)]
    if getattr(pc, "bias", "none") != "none":
        unsupported.append(f"bias={pc.bias!r}")
    if isinstance(pc.target_modules, str) and pc.target_modules != "all-linear":
        unsupported.append("target_modules as a regular expression")
    if unsupported:
        raise ConfigError(f"lora_init_adapter {source!r}: the adapter uses {', '.join(unsupported)}, "
                          "which sftdata_train does not train")
    return pc


def adopt_adapter_config(cfg) -> None:
    """``lora_init_adapter``: the adapter's own config defines the run's adapter. Keys left at
    their defaults take its values; a key set to another value is an error (never a silent
    choice between the two). ``lora_dropout`` stays the run's (a training setting).

    Raises:
        ConfigError: naming every key whose value differs from the adapter's, or see
            :func:`_adapter_config`.
    """
    pc = _adapter_config(cfg.lora_init_adapter)
    file_values = {
        "lora_r": pc.r, "lora_alpha": float(pc.lora_alpha),
        "lora_target_modules": pc.target_modules if isinstance(pc.target_modules, str)
        else ",".join(sorted(pc.target_modules or ())) or None,
        "lora_modules_to_save": ",".join(pc.modules_to_save) if pc.modules_to_save else None,
        "use_rslora": bool(pc.use_rslora), "use_dora": bool(getattr(pc, "use_dora", False)),
    }
    clashes = []
    for key, value in file_values.items():
        mine = getattr(cfg, key)
        default = DEFAULTS[key]
        if key == "lora_target_modules" and mine is not None:
            mine = ",".join(sorted(names(mine) or ())) if mine != "all-linear" else mine
        if mine == default or mine is None:
            setattr(cfg, key, value)
        elif (float(mine) if key == "lora_alpha" else mine) != value:
            clashes.append(f"{key}: {mine!r} here, {value!r} in the adapter")
    if clashes:
        raise ConfigError(f"lora_init_adapter {cfg.lora_init_adapter!r} defines the adapter otherwise ({'; '.join(clashes)}): "
                          "leave these keys unset (the adapter's values are used) or set them to its values")


def load_init_weights(peft_model, source: str) -> None:
    """Copy the trained adapter ``source`` into ``peft_model``'s adapter (``peft.utils.load_peft_weights``
    + ``set_peft_model_state_dict``); every adapter tensor must be filled, nothing may be left over.

    Raises:
        ConfigError: keys the adapter has and the model has not, or the other way round.
    """
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    state = load_peft_weights(source, device="cpu")
    with quiet_peft():
        result = set_peft_model_state_dict(peft_model, state, adapter_name=ADAPTER_NAME)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    missing = sorted(k for k in result.missing_keys if k in trainable)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        raise ConfigError(
            f"lora_init_adapter {source!r} does not fit the model: "
            + (f"{len(missing)} adapter tensors not in it (e.g. {missing[0]})" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"{len(unexpected)} of its tensors have no place in the model (e.g. {unexpected[0]})" if unexpected else "")
        )


__all__ = ["adopt_adapter_config", "load_init_weights"]
