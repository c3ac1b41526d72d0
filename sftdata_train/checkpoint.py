"""Atomic, resumable checkpoints in Hugging Face format.

Layout of ``<output_dir>/checkpoint-<step>/``::

    config.json  generation_config.json  model.safetensors   # save_pretrained (master dtype)
    tokenizer.json  tokenizer_config.json  chat_template.jinja ...
    training_state/
        state.json          # step, epoch, micro-batches consumed in the epoch, token counters,
                            # world size, the sampler's state_dict, the resolved config
        optimizer.pt        # full (unsharded, FQN-keyed) AdamW state: portable across world sizes
        scheduler.pt        # LambdaLR state
        rng_rank<r>.pt      # python/numpy/torch CPU/CUDA RNG states of rank r

A checkpoint is written into ``<output_dir>/.tmp-checkpoint-<step>`` and renamed into place
only when complete (``os.replace`` of a directory is atomic on POSIX), so an interrupted save
never leaves a directory that :func:`latest_checkpoint` would pick. The model weights are the
master weights (fp32 under ``bf16-mixed``) so that resuming is exact; ``final/`` (written by
:func:`export_model`) holds the model in ``save_dtype`` without training state.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sftdata.errors import ConfigError

from .distributed import DistInfo, barrier, broadcast_object

STATE_DIR = "training_state"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as ``(step, path)``, oldest first."""
    out = []
    root = Path(output_dir)
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / STATE_DIR / "state.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_resume(resume: str | None, output_dir: str) -> Path | None:
    """The checkpoint dir that ``resume`` names (``latest``/``auto``/a path), or None.

    ``latest`` fails when ``output_dir`` holds no checkpoint; ``auto`` then starts from scratch.
    """
    if not resume:
        return None
    if resume in ("latest", "auto", "true", "True"):
        ckpt = latest_checkpoint(output_dir)
        if ckpt is None and resume != "auto":
            raise ConfigError(f"--resume: no complete checkpoint-<step> dir in {output_dir}")
        return ckpt
    path = Path(resume)
    if not (path / STATE_DIR / "state.json").is_file():
        raise ConfigError(f"--resume {resume}: not a complete checkpoint (missing {STATE_DIR}/state.json)")
    return path


# ----------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------- state dicts
def _full_model_state_dict(wrapper: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """Full state dict of the wrapped HF model (keys without the wrapper's ``model.`` prefix).

    Under FSDP2 the shards are gathered to rank 0 on CPU; other ranks get ``{}``.
    """
    if info.distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(wrapper, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        sd = wrapper.state_dict()
    prefix = "model."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def _optimizer_state_dict(wrapper: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(
        wrapper, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=info.distributed)
    )


def load_optimizer_state(wrapper: nn.Module, optimizer: torch.optim.Optimizer, path: Path, info: DistInfo) -> None:
    """Load ``optimizer.pt`` (full, FQN-keyed) into a possibly sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    file = path / STATE_DIR / "optimizer.pt"
    if info.distributed:
        sd = torch.load(file, map_location="cpu", weights_only=False) if info.is_main else {}
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    else:
        sd = torch.load(file, map_location="cpu", weights_only=False)
        options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(wrapper, optimizer, optim_state_dict=sd, options=options)


def _write_hf(
    path: Path, hf_model: nn.Module, tokenizer, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None
) -> None:
    if dtype is not None:
        state_dict = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state_dict.items()}
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


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def save_checkpoint(
    output_dir: str | os.PathLike,
    step: int,
    *,
    wrapper: nn.Module,
    hf_model: nn.Module,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict[str, Any],
    info: DistInfo,
    save_total_limit: int | None = None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically (all ranks must call); returns its path."""
    root = Path(output_dir)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    model_sd = _full_model_state_dict(wrapper, info)  # collective under FSDP2
    optim_sd = _optimizer_state_dict(wrapper, optimizer, info)  # collective under FSDP2
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / STATE_DIR).mkdir(parents=True)
        _write_hf(tmp, hf_model, tokenizer, model_sd, None)
        torch.save(optim_sd, tmp / STATE_DIR / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / STATE_DIR / "scheduler.pt")
        with open(tmp / STATE_DIR / "state.json", "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, default=str)
    del model_sd, optim_sd
    barrier(info)
    torch.save(rng_state(), tmp / STATE_DIR / f"rng_rank{info.rank}.pt")
    barrier(info)
    if info.is_main:
        _replace_dir(tmp, final)
        if save_total_limit:
            for _, old in list_checkpoints(root)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def export_model(
    path: str | os.PathLike, *, wrapper: nn.Module, hf_model: nn.Module, tokenizer, info: DistInfo,
    dtype: torch.dtype | None,
) -> Path:
    """Write the model alone (HF format, ``dtype``) to ``path`` atomically (all ranks must call)."""
    final = Path(path)
    tmp = final.with_name(f".tmp-{final.name}")
    sd = _full_model_state_dict(wrapper, info)
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        _write_hf(tmp, hf_model, tokenizer, sd, dtype)
        _replace_dir(tmp, final)
    barrier(info)
    return final


def load_training_state(path: Path, info: DistInfo) -> dict[str, Any]:
    """``state.json`` of a checkpoint (same on every rank)."""
    with open(path / STATE_DIR / "state.json", encoding="utf-8") as fh:
        return json.load(fh)


def restore_rng(path: Path, info: DistInfo) -> None:
    """Restore this rank's RNG states (rank 0's when the checkpoint had fewer ranks)."""
    file = path / STATE_DIR / f"rng_rank{info.rank}.pt"
    if not file.is_file():
        file = path / STATE_DIR / "rng_rank0.pt"
    set_rng_state(torch.load(file, map_location="cpu", weights_only=False))


__all__ = [
    "STATE_DIR",
    "broadcast_object",
    "checkpoint_name",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "load_optimizer_state",
    "load_training_state",
    "resolve_resume",
    "restore_rng",
    "save_checkpoint",
]
