"""``final/`` of a LoRA run: the adapter, or (``merge_lora``) the full model with the adapter merged.

The merge is peft's ``merge_and_unload`` (``W + (alpha / r) B A`` written into each adapted
weight, the LoRA layers replaced by plain ``nn.Linear``), run on rank 0 on CPU:

* LoRA: the trained model's full state (frozen weights and adapters, gathered under FSDP2) is
  loaded without a copy (``assign``) into a meta-built model with the same adapters, tied
  weights tied again, then merged;
* QLoRA: the unquantized model is loaded again from ``model`` and the adapter merged into it
  (merging into the 4-bit weights would round the result to 4 bits again).

The merged model is written like a full fine-tuning ``final/`` (``save_dtype``, tokenizer).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from .adapter import Adapter, peft_model, quiet_peft


def merged_model(adapter: Adapter, *, wrapper: nn.Module, hf_model: nn.Module, info, cfg, tokenizer,
                 merge: bool = True):
    """The merged HF model on rank 0's CPU (None on other ranks); collective under FSDP2.
    ``merge=False``: the base model alone (peft's ``unload``: the LoRA layers removed, nothing merged).

    LoRA: the trained model's full state (frozen weights + adapters, gathered under FSDP2) is
    loaded into a meta-built copy with the same adapters, then ``merge_and_unload``. QLoRA:
    the unquantized model is loaded again from ``model`` (in the dtype of its unquantized
    layers) and the adapters are merged into it: merging into the 4-bit weights would round
    the result to 4 bits again.
    """
    from ..checkpoint.export import full_model_state_dict
    from ..model.loading import build_skeleton, load_model

    if cfg.load_in_4bit:
        state = adapter.trainable_state(wrapper, info)
        if not info.is_main:
            return None
        base = load_model(cfg.model, tokenizer=tokenizer, dtype=hf_model.dtype, attn_implementation="sdpa",
                          seed=cfg.seed)
        pm = peft_model(base, adapter.config_kwargs)
        result = pm.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"merging the adapter: unexpected keys {result.unexpected_keys[:5]}")
    else:
        full = full_model_state_dict(wrapper, info)  # collective when sharded
        if not info.is_main:
            return None
        full = {k: v.detach().to("cpu", copy=True) for k, v in full.items()}  # never alias the trained model
        base = build_skeleton(copy.deepcopy(hf_model.config), dtype=torch.float32, attn_implementation="sdpa")
        pm = peft_model(base, adapter.config_kwargs)
        _load_keeping_ties(base, full)
    with quiet_peft():
        return pm.merge_and_unload() if merge else pm.unload()


def _load_keeping_ties(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(state, assign=True)`` (no second copy of the weights), then every group of
    names that shared one Parameter before (tied embeddings) shares one again."""
    from ..checkpoint.export import tied_names

    groups = tied_names(model)
    model.load_state_dict(state, strict=True, assign=True)
    for first, *aliases in groups:
        shared = model.get_parameter(first)
        for name in aliases:
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner), leaf, shared)


def export(path: str | Path, *, adapter: Adapter, wrapper: nn.Module, hf_model: nn.Module, tokenizer, info, cfg,
           dtype: torch.dtype | None) -> Path:
    """Write ``final/`` atomically (all ranks must call): with ``merge_lora`` the full HF model with the
    adapter merged (``AutoModelForCausalLM.from_pretrained`` loads it), else the adapter, each in
    ``dtype``, with the tokenizer.

    The adapter's ``adapter_config.json`` names a base that loads offline
    (``AutoPeftModelForCausalLM.from_pretrained(path)``, or ``AutoModelForCausalLM`` with peft
    installed): the Hub id as given, a local model dir as an absolute path, and for the embedded
    default (which exists nowhere else) the base model itself, written to ``final/base/``
    (``base_model_name_or_path`` is then the absolute path of ``final/base``: after moving the
    folder, load the base from its new place and ``PeftModel.from_pretrained(base, path)``).
    """
    from ..checkpoint.directories import write_dir_atomic
    from ..checkpoint.export import write_hf

    if cfg.merge_lora:
        merged = merged_model(adapter, wrapper=wrapper, hf_model=hf_model, info=info, cfg=cfg, tokenizer=tokenizer)
        return write_dir_atomic(path, info, lambda tmp: write_hf(tmp, merged, tokenizer, merged.state_dict(), dtype))
    base = None
    if cfg.model is None:  # the embedded default: the base exists only in this run
        base = merged_model(adapter, wrapper=wrapper, hf_model=hf_model, info=info, cfg=cfg, tokenizer=tokenizer,
                            merge=False)
    state = adapter.trainable_state(wrapper, info)  # collective under FSDP2
    final = Path(path).resolve()

    def write(tmp: Path) -> None:
        adapter.save(tmp, state, dtype)
        if base is not None:
            write_hf(tmp / BASE_DIR, base, tokenizer, base.state_dict(), dtype)
        _set_base_reference(tmp, base_reference(cfg.model, final))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))

    return write_dir_atomic(path, info, write)


BASE_DIR = "base"  # final/base: the embedded default base model of a LoRA adapter


def base_reference(model: str | None, final: Path) -> str:
    """What ``adapter_config.json`` names as the base: ``final/base`` (absolute) for the embedded
    default, an existing local dir as its absolute path, else the Hub id as given."""
    if model is None:
        return str(Path(final).resolve() / BASE_DIR)
    local = Path(model).expanduser()
    return str(local.resolve()) if local.exists() else model


def _set_base_reference(path: Path, ref: str) -> None:
    import json

    f = path / "adapter_config.json"
    conf = json.loads(f.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = ref
    f.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_hint(final: str | Path) -> str:
    """The Python line that loads ``final`` (a run's ``final/``): ``AutoPeftModelForCausalLM`` for
    an adapter, ``AutoModelForCausalLM`` for a full model."""
    final = Path(final)
    if (final / "adapter_config.json").is_file():
        return f"from peft import AutoPeftModelForCausalLM; AutoPeftModelForCausalLM.from_pretrained({str(final)!r})"
    return f"from transformers import AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained({str(final)!r})"


__all__ = ["BASE_DIR", "base_reference", "export", "load_hint", "merged_model"]
