"""``final/``: the model alone in Hugging Face format (the one full gather of a run).

:func:`export_model` gathers the (possibly FSDP2-sharded) parameters to rank 0 on CPU, casts them
to the export dtype keeping tied weights one tensor, and writes ``save_pretrained`` files plus the
tokenizer atomically (:func:`sftdata_train.checkpoint.write_dir_atomic`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from .directories import write_dir_atomic
from ..distributed import DistInfo


def full_model_state_dict(wrapper: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """Full state dict of the wrapped HF model (keys without the wrapper's ``model.`` prefix).

    Sharded (FSDP2) parameters are gathered to rank 0 on CPU; other ranks get ``{}``.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sharded = any(hasattr(p, "full_tensor") for p in wrapper.parameters())
    if sharded:
        sd = get_model_state_dict(wrapper, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        sd = wrapper.state_dict()
    prefix = "model."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def tied_names(model: nn.Module) -> list[list[str]]:
    """The parameter names of ``model`` grouped by Parameter: a group of several names is a set
    of tied weights (e.g. input embedding and LM head)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return list(groups.values())


def write_hf(
    path: Path, hf_model: nn.Module, tokenizer, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None
) -> None:
    """Write ``hf_model``'s config and ``state_dict`` with ``save_pretrained`` (safetensors) into ``path``,
    tied parameters as one tensor, cast to ``dtype`` (None: as they are), and the tokenizer (if any).
    The config's ``dtype`` records the dtype written."""
    # tied parameters (embedding and LM head) under one tensor, so that save_pretrained writes them once
    # (a gathered or cast state dict holds a copy per name)
    state_dict = dict(state_dict)
    for names in tied_names(hf_model):
        present = [n for n in names if n in state_dict]
        for n in present[1:]:
            state_dict[n] = state_dict[present[0]]
    if dtype is not None:
        cast: dict[int, torch.Tensor] = {}  # one cast per tensor: tied weights stay one tensor
        for v in state_dict.values():
            if id(v) not in cast:
                cast[id(v)] = v.to(dtype) if v.is_floating_point() else v
        state_dict = {k: cast[id(v)] for k, v in state_dict.items()}
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar inside the training bar
    try:
        hf_model.save_pretrained(str(path), state_dict=state_dict, safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if dtype is not None:
        # save_pretrained records the in-memory parameter dtype; record the dtype actually written
        cfg_file = path / "config.json"
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        cfg["dtype"] = str(dtype).removeprefix("torch.")
        cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))


def export_model(
    path: str | os.PathLike, *, wrapper: nn.Module, hf_model: nn.Module, tokenizer, info: DistInfo,
    dtype: torch.dtype | None,
) -> Path:
    """Write the model alone (HF format, ``dtype``) to ``path`` atomically (all ranks must call)."""
    sd = full_model_state_dict(wrapper, info)  # collective when sharded
    return write_dir_atomic(path, info, lambda tmp: write_hf(tmp, hf_model, tokenizer, sd, dtype))



__all__ = ["export_model", "full_model_state_dict", "tied_names", "write_hf"]
