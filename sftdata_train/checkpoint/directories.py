"""Checkpoint directories: names, listing, the manifest that proves them intact, atomic writes.

Layout of ``<output_dir>/checkpoint-<step>/``::

    config.json                 # the model's HF config (what to build on resume)
    tokenizer.json  tokenizer_config.json  chat_template.jinja ...
    training_state/
        state.json              # JSON components (version 2): "counters" (step, token counters),
                                # "schedule" (world size, tokens per micro-batch, grad_accum,
                                # total steps), "data" (the batch sampler's state: epoch and
                                # micro-batches consumed in it), plus "config" and "runtime"
        scheduler.json          # LambdaLR state (JSON: no pickle)
        dcp/                    # torch.distributed.checkpoint: .metadata + __<rank>_0.distcp
                                #   model.*   the model's (sharded) parameters, master dtype
                                #   optim.*   AdamW state, sharded like the parameters
                                #   rng.rank<r>  python/numpy/torch/CUDA RNG states of rank r
    manifest.json               # every other file: relative name, size, sha256 (written last)

What goes in there is the run's :mod:`sftdata_train.checkpoint.state` components, saved and loaded by
:class:`sftdata_train.checkpoint.manager.CheckpointManager`.

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
checkpoint once (a few seconds per GB). ``final/`` (:func:`sftdata_train.checkpoint.export.export_model`)
is the only full gather: the model alone in Hugging Face format, in ``save_dtype``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from sftdata.errors import ConfigError

from ..distributed import DistInfo, barrier, broadcast_object

STATE_DIR = "training_state"
DCP_DIR = "dcp"
MANIFEST = "manifest.json"  # every other file of the checkpoint: size and sha256, written last
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_name(step: int) -> str:
    """The dir name of the checkpoint after optimizer step ``step``: ``checkpoint-<step>``."""
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
    """The complete checkpoint of ``output_dir`` with the highest step, or None (see :func:`list_checkpoints`)."""
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



def replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete dir ``tmp`` to ``final`` (``os.replace``, atomic on POSIX); an existing
    ``final`` is moved aside first and deleted after."""
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)



def load_training_state(path: Path) -> dict[str, Any]:
    """``training_state/state.json`` of checkpoint ``path`` in the current layout (same on every rank;
    :func:`sftdata_train.checkpoint.manager.read_state`: an older layout is upgraded)."""
    from .manager import read_state

    return read_state(path)


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
        replace_dir(tmp, final)
    barrier(info)
    return final


def __getattr__(name: str):
    # the final export moved to sftdata_train.checkpoint.export (it needs torch; this module does not)
    if name in ("export_model", "tied_names"):
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DCP_DIR",
    "MANIFEST",
    "STATE_DIR",
    "broadcast_object",
    "checkpoint_damage",
    "checkpoint_name",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "load_training_state",
    "replace_dir",
    "resolve_resume",
    "tied_names",
    "verify_checkpoint",
    "write_dir_atomic",
    "write_manifest",
]
