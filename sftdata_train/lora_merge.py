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

from .lora import Adapter, _peft_model, _quiet_peft


def merged_model(adapter: Adapter, *, wrapper: nn.Module, hf_model: nn.Module, info, cfg, tokenizer):
    """The merged HF model on rank 0's CPU (None on other ranks); collective under FSDP2.

    LoRA: the trained model's full state (frozen weights + adapters, gathered under FSDP2) is
    loaded into a meta-built copy with the same adapters, then ``merge_and_unload``. QLoRA:
    the unquantized model is loaded again from ``model`` (in the dtype of its unquantized
    layers) and the adapters are merged into it: merging into the 4-bit weights would round
    the result to 4 bits again.
    """
    from .checkpoint import _full_model_state_dict
    from .model import build_skeleton, load_model

    if cfg.load_in_4bit:
        state = adapter.trainable_state(wrapper, info)
        if not info.is_main:
            return None
        base = load_model(cfg.model, tokenizer=tokenizer, dtype=hf_model.dtype, attn_implementation="sdpa",
                          seed=cfg.seed)
        pm = _peft_model(base, adapter.config_kwargs)
        result = pm.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"merging the adapter: unexpected keys {result.unexpected_keys[:5]}")
    else:
        full = _full_model_state_dict(wrapper, info)  # collective when sharded
        if not info.is_main:
            return None
        full = {k: v.detach().to("cpu", copy=True) for k, v in full.items()}  # never alias the trained model
        base = build_skeleton(copy.deepcopy(hf_model.config), dtype=torch.float32, attn_implementation="sdpa")
        pm = _peft_model(base, adapter.config_kwargs)
        _load_keeping_ties(base, full)
    with _quiet_peft():
        return pm.merge_and_unload()


def _load_keeping_ties(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(state, assign=True)`` (no second copy of the weights), then every group of
    names that shared one Parameter before (tied embeddings) shares one again."""
    from .checkpoint import tied_names

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
    adapter merged (``AutoModelForCausalLM.from_pretrained`` loads it), else the adapter
    (``PeftModel.from_pretrained(base, path)``), each in ``dtype``, with the tokenizer."""
    from .checkpoint import _write_hf, write_dir_atomic

    if cfg.merge_lora:
        merged = merged_model(adapter, wrapper=wrapper, hf_model=hf_model, info=info, cfg=cfg, tokenizer=tokenizer)
        return write_dir_atomic(path, info, lambda tmp: _write_hf(tmp, merged, tokenizer, merged.state_dict(), dtype))
    state = adapter.trainable_state(wrapper, info)  # collective under FSDP2

    def write(tmp: Path) -> None:
        adapter.save(tmp, state, dtype)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))

    return write_dir_atomic(path, info, write)


__all__ = ["export", "merged_model"]
