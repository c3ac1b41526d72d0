"""Atomic, resumable, sharded checkpoints (PyTorch Distributed Checkpoint), and the final HF export.

Layout of ``<output_dir>/checkpoint-<step>/``::

    config.json                 # the model's HF config (what to build on resume)
    tokenizer.json  tokenizer_config.json  chat_template.jinja ...
    training_state/
        state.json              # step, total steps, epoch + micro-batches consumed in it, token
                                # counters, world size, tokens per micro-batch, the config
        scheduler.json          # LambdaLR state (JSON: no pickle)
        dcp/                    # torch.distributed.checkpoint: .metadata + __<rank>_0.distcp
                                #   model.*   the model's (sharded) parameters, master dtype
                                #   optim.*   AdamW state, sharded like the parameters
                                #   rng.rank<r>  python/numpy/torch/CUDA RNG states of rank r
    manifest.json               # every other file: relative name, size, sha256 (written last)

A LoRA run (:mod:`sftdata_train.lora`) writes the adapter in peft's format
(``adapter_config.json``, ``adapter_model.safetensors``) instead of ``config.json``, and its
``model.*`` entries are the trainable parameters only (the frozen ones are rebuilt from their
source on resume).

Every rank writes only its own shards and its own RNG state, through DCP (no gather to rank 0,
no file a rank writes outside DCP), and loads them back the same way; DCP reshards when the
number of ranks changes (the loop refuses that unless ``--allow-schedule-change``). Tensors are
read by DCP with ``torch.load(weights_only=True)``, the RNG states the same way, the rest is
JSON; the one pickle left is DCP's own ``.metadata`` index (``pickle.load`` inside
``FileSystemReader``), so load checkpoints you trust.

A checkpoint is written into ``<output_dir>/.tmp-checkpoint-<step>`` and renamed into place
only when complete (``os.replace`` of a directory is atomic on POSIX), so an interrupted save
never leaves a directory that :func:`latest_checkpoint` would pick. ``manifest.json`` is written
last; resuming checks every file against it (:func:`verify_checkpoint`: missing, truncated or
altered files, flipped bytes inside the weights included) and refuses a damaged checkpoint with
one line naming the file and the newest intact checkpoint. Checking hashes reads the whole
checkpoint once (a few seconds per GB). ``final/``
(:func:`export_model`) is the only full gather: the model alone in Hugging Face format, in
``save_dtype``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from sftdata.errors import ConfigError

from .distributed import DistInfo, barrier, broadcast_object

STATE_DIR = "training_state"
DCP_DIR = "dcp"
MANIFEST = "manifest.json"  # every other file of the checkpoint: size and sha256, written last
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
        if m and ((p / STATE_DIR / "state.json").is_file() or (p / MANIFEST).is_file()):
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_resume(resume: str | None, output_dir: str) -> Path | None:
    """The checkpoint dir that ``resume`` names (``latest``/``auto``/a path), or None; its files
    are checked against its manifest (:func:`verify_checkpoint`).

    ``latest`` fails when ``output_dir`` holds no checkpoint; ``auto`` then starts from scratch.

    Raises:
        ConfigError: no checkpoint (``latest``), not a checkpoint, or a damaged one (one line
            naming the file and the newest intact checkpoint).
    """
    if not resume:
        return None
    if resume in ("latest", "auto", "true", "True"):
        ckpt = latest_checkpoint(output_dir)
        if ckpt is None and resume != "auto":
            raise ConfigError(f"--resume: no complete checkpoint-<step> dir in {output_dir}")
        if ckpt is not None:
            verify_checkpoint(ckpt)
        return ckpt
    path = Path(resume)
    if not (path / STATE_DIR / "state.json").is_file() and not (path / MANIFEST).is_file():
        raise ConfigError(f"--resume {resume}: not a complete checkpoint (missing {STATE_DIR}/state.json)")
    verify_checkpoint(path)
    return path


# ----------------------------------------------------------------------------- manifest
def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:  # hashlib.file_digest is Python 3.11+
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(path: Path) -> None:
    """Write ``path/manifest.json``: every other file under ``path`` (relative name, size in
    bytes, sha256). Called last, when every file of the checkpoint is written."""
    files = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[f.relative_to(path).as_posix()] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path / MANIFEST)


def checkpoint_damage(path: Path) -> str | None:
    """What is wrong with checkpoint ``path`` against its manifest (``"<file>: <reason>"``), or
    None when every listed file is there with its size and sha256. A checkpoint written before
    manifests existed (``state.json`` without a ``manifest`` key) is not checked."""
    path = Path(path)
    man = path / MANIFEST
    state_file = path / STATE_DIR / "state.json"
    if not man.is_file():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return f"{state_file}: unreadable ({type(e).__name__}) and no {MANIFEST}"
        return f"{man}: missing" if state.get("manifest") else None
    try:
        files = json.loads(man.read_text(encoding="utf-8"))["files"]
        items = [(str(k), int(v["size"]), str(v["sha256"])) for k, v in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{man}: unreadable ({type(e).__name__})"
    for name, size, digest in items:
        f = path / name
        if not f.is_file():
            return f"{f}: missing"
        actual = f.stat().st_size
        if actual != size:
            return f"{f}: {actual:,} bytes, the manifest says {size:,} (truncated or rewritten)"
    for name, size, digest in items:  # sizes first: cheap, then the hashes
        f = path / name
        if _sha256(f) != digest:
            return f"{f}: contents differ from the manifest (sha256 mismatch)"
    return None


def verify_checkpoint(path: Path) -> None:
    """Check checkpoint ``path`` against its manifest (:func:`checkpoint_damage`).

    Raises:
        ConfigError: one line naming the damaged file and the newest intact earlier checkpoint
            of the same directory (or saying there is none).
    """
    path = Path(path)
    damage = checkpoint_damage(path)
    if damage is None:
        return
    m = _NAME.match(path.name)
    step = int(m.group(1)) if m else None
    good = None
    for s, other in reversed(list_checkpoints(path.parent)):
        if other != path and (step is None or s < step) and checkpoint_damage(other) is None:
            good = other
            break
    hint = (f"the last intact checkpoint is {good} (--resume {good})" if good is not None
            else "no earlier intact checkpoint in this directory")
    raise ConfigError(f"checkpoint {path} is damaged: {damage}; {hint}")


# ----------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": (version, list(internal), gauss), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _rng_bytes() -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    buf.seek(0)
    return buf


# ----------------------------------------------------------------------------- DCP
def _dcp_state(
    wrapper: nn.Module, optimizer: torch.optim.Optimizer | None, trainable_only: bool = False
) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state: dict[str, Any] = {"model": get_model_state_dict(wrapper)}
    if trainable_only:  # LoRA: the frozen weights come from their source, never from a checkpoint
        keep = {n for n, p in wrapper.named_parameters(remove_duplicate=False) if p.requires_grad}
        state["model"] = {k: v for k, v in state["model"].items() if k in keep}
    if optimizer is not None:
        state["optim"] = get_optimizer_state_dict(wrapper, optimizer)
    return state


@contextlib.contextmanager
def _quiet_dcp():
    """DCP warns that it assumes a single process when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled, unavailable or uninitialized.*")
        yield


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
    adapter=None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically (all ranks must call); returns its path.

    ``adapter`` (a :class:`sftdata_train.lora.Adapter`, LoRA runs): DCP holds the trainable
    parameters only and the directory gets the adapter in peft's format
    (``adapter_config.json``, ``adapter_model.safetensors``) instead of the model's ``config.json``.
    """
    import torch.distributed.checkpoint as dcp

    root = Path(output_dir)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if info.is_main and tmp.exists():
        shutil.rmtree(tmp)
    barrier(info)
    (tmp / STATE_DIR).mkdir(parents=True, exist_ok=True)  # every rank, in case its filesystem is its own
    payload = _dcp_state(wrapper, optimizer, trainable_only=adapter is not None)
    payload[f"rng.rank{info.rank}"] = _rng_bytes()
    with _quiet_dcp():
        dcp.save(payload, checkpoint_id=str(tmp / STATE_DIR / DCP_DIR))  # collective: each rank its shards
    del payload
    adapter_state = adapter.trainable_state(wrapper, info) if adapter is not None else None  # collective
    if info.is_main:
        if adapter is None:
            hf_model.config.save_pretrained(str(tmp))
        else:
            adapter.save(tmp, adapter_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / STATE_DIR / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
        with open(tmp / STATE_DIR / "state.json", "w", encoding="utf-8") as fh:
            json.dump({**state, "manifest": MANIFEST}, fh, indent=2, default=str)
    barrier(info)
    if info.is_main:
        write_manifest(tmp)  # last: sizes and hashes of every file (all ranks' shards written by now)
        _replace_dir(tmp, final)
    barrier(info)
    if not info.is_main and tmp.exists():  # a filesystem of its own: publish this rank's part too
        _replace_dir(tmp, final)
    if info.is_main and save_total_limit:
        for _, old in list_checkpoints(root)[:-save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def load_checkpoint(
    path: Path, *, wrapper: nn.Module, optimizer: torch.optim.Optimizer | None, scheduler, info: DistInfo,
    trainable_only: bool = False,
) -> None:
    """Load the model (and optimizer, scheduler, this rank's RNG states) of a checkpoint, in place.

    The model may be sharded (FSDP2) and on any number of ranks; every rank reads its own
    shards. A rank without its own RNG state in the checkpoint (more ranks than when saved)
    takes rank 0's. ``trainable_only`` (LoRA): the checkpoint holds the trainable parameters
    only; the frozen ones are left as built.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    where = path / STATE_DIR / DCP_DIR
    if not (where / ".metadata").is_file():
        raise ConfigError(f"{path}: no sharded checkpoint in {STATE_DIR}/{DCP_DIR} (written by an older sftdata_train?)")
    keys = set(dcp.FileSystemReader(str(where)).read_metadata().state_dict_metadata)
    rng_key = f"rng.rank{info.rank}" if f"rng.rank{info.rank}" in keys else "rng.rank0"
    payload = _dcp_state(wrapper, optimizer, trainable_only=trainable_only)
    payload[rng_key] = io.BytesIO()
    with _quiet_dcp():
        dcp.load(payload, checkpoint_id=str(where))
    loaded = set_model_state_dict(wrapper, payload["model"], options=StateDictOptions(strict=not trainable_only))
    if trainable_only:
        trainable = {n for n, p in wrapper.named_parameters() if p.requires_grad}
        missing = sorted(trainable & set(loaded.missing_keys))
        if missing or loaded.unexpected_keys:
            raise ConfigError(f"{path}: the checkpoint's adapter does not fit the model (missing {missing[:3]}, "
                              f"unexpected {list(loaded.unexpected_keys)[:3]})")
    if optimizer is not None:
        set_optimizer_state_dict(wrapper, optimizer, optim_state_dict=payload["optim"])
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((path / STATE_DIR / "scheduler.json").read_text(encoding="utf-8")))
    buf = payload[rng_key]
    buf.seek(0)
    set_rng_state(torch.load(buf, map_location="cpu", weights_only=True))


def load_training_state(path: Path) -> dict[str, Any]:
    """``state.json`` of a checkpoint (same on every rank)."""
    with open(path / STATE_DIR / "state.json", encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------- final export
def _full_model_state_dict(wrapper: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
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


def _write_hf(
    path: Path, hf_model: nn.Module, tokenizer, state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None
) -> None:
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
    sd = _full_model_state_dict(wrapper, info)  # collective when sharded
    return write_dir_atomic(path, info, lambda tmp: _write_hf(tmp, hf_model, tokenizer, sd, dtype))


def write_dir_atomic(path: str | os.PathLike, info: DistInfo, write: Callable[[Path], None]) -> Path:
    """On rank 0, ``write(tmp)`` into a fresh ``.tmp-<name>`` next to ``path``, then replace
    ``path`` by it; every rank waits for that (all ranks must call). Returns ``path``."""
    final = Path(path)
    tmp = final.with_name(f".tmp-{final.name}")
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        write(tmp)
        _replace_dir(tmp, final)
    barrier(info)
    return final


__all__ = [
    "STATE_DIR",
    "broadcast_object",
    "MANIFEST",
    "checkpoint_damage",
    "checkpoint_name",
    "export_model",
    "tied_names",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_training_state",
    "resolve_resume",
    "save_checkpoint",
    "verify_checkpoint",
    "write_dir_atomic",
    "write_manifest",
]
