"""One checkpoint manager for every :class:`~sftdata_train.checkpoint.state.Stateful` component of a run.

The trainer registers its components once (:class:`CheckpointManager`); :meth:`~CheckpointManager.save`
writes them all into ``checkpoint-<step>`` and :meth:`~CheckpointManager.load` loads a
checkpoint back into them, in place. The layout (``training_state/`` inside the checkpoint dir,
see :mod:`sftdata_train.checkpoint`):

* ``tensors`` components go through one ``torch.distributed.checkpoint`` save/load in
  ``training_state/dcp`` under their name (``model.*``, ``optim.*``, ``rng.rank<r>``): each rank
  writes and reads its own shards, DCP reshards when the number of ranks changes;
* ``records`` components are JSON under their name in ``training_state/state.json``
  (``{"version": 2, "counters": ..., "schedule": ..., "data": ..., "config": ..., "runtime": ...}``);
* ``files`` components are JSON files of their own (``training_state/scheduler.json``).

Loading order: records (the schedule check first, so a refused resume touches nothing heavy),
then files, then tensors in the order they were registered (the trainer registers the RNG last,
so nothing loaded after it draws random numbers). Checkpoints written before the components existed
(``state.json`` without ``version``: counters and schedule at the top level, ``stream``
holding ``epoch``/``batch_in_epoch``) load through :func:`upgrade_state`.

A checkpoint is written into ``.tmp-checkpoint-<step>`` and renamed into place when complete,
``manifest.json`` (sizes and sha256 of every file) last.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

from sftdata.errors import ConfigError

from .directories import DCP_DIR, MANIFEST, STATE_DIR, checkpoint_name, list_checkpoints, replace_dir, write_manifest
from ..distributed import DistInfo, barrier
from .state import Stateful

#: Version of ``state.json``'s layout (absent: the layout before components, see :func:`upgrade_state`).
STATE_VERSION = 2


@contextlib.contextmanager
def quiet_dcp():
    """DCP warns that it assumes a single process when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled, unavailable or uninitialized.*")
        yield


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state.json`` of any version in the current layout (version 2; a version-2 dict is returned as is).

    Version 1 (no ``version`` key) held the counters and the schedule at the top level, the data
    position as ``stream: {epoch, batch_in_epoch}`` (micro-batches consumed) and the sampler's own
    state (informational) as ``sampler``; the position becomes the sampler state with
    ``num_yielded`` = the micro-batches consumed.

    Raises:
        ConfigError: a version newer than this code reads.
    """
    version = state.get("version", 1)
    if version == STATE_VERSION:
        return state
    if version != 1:
        raise ConfigError(f"checkpoint state.json has version {version}; this sftdata_train reads up to "
                          f"{STATE_VERSION} (upgrade sftdata_train)")
    config = state.get("config", {})
    stream = state.get("stream") or {"epoch": 0, "batch_in_epoch": 0}
    schedule = {k: state[k] for k in ("world_size", "total_steps") if k in state}
    for key in ("max_tokens_per_batch", "grad_accum"):
        if state.get(key, config.get(key)) is not None:
            schedule[key] = state.get(key, config.get(key))
    return {
        "version": STATE_VERSION,
        "counters": {k: state.get(k, 0) for k in ("step", "tokens_seen", "trained_tokens_seen", "skipped_steps")},
        "schedule": schedule,
        "data": {**(state.get("sampler") or {}), "epoch": int(stream["epoch"]),
                 "num_yielded": int(stream["batch_in_epoch"])},
        "config": config,
        "runtime": state.get("runtime"),
    }


def read_state(path: Path) -> dict[str, Any]:
    """``training_state/state.json`` of checkpoint ``path`` in the current layout (:func:`upgrade_state`)."""
    with open(Path(path) / STATE_DIR / "state.json", encoding="utf-8") as fh:
        return upgrade_state(json.load(fh))


class CheckpointManager:
    """Saves and loads a run's components (all ranks must call both).

    Args:
        output_dir: where ``checkpoint-<step>`` dirs go.
        info: this process's rank and world.
        tensors: components saved through DCP (their ``state_dict`` holds tensors, DTensors or
            ``BytesIO``), loaded in this order (put the RNG last); one with a
            ``template(saved_keys)`` method is asked what to load into.
        records: JSON components, each under its name in ``state.json``; loaded first, in order.
        files: JSON components each written as ``training_state/<name>.json``.
        metadata: extra JSON-able entries of ``state.json`` (e.g. ``config``, ``runtime``),
            recorded for people and checks, never loaded.
        write_files: called on every rank with the temporary checkpoint dir after the tensors are
            written (rank 0 writes the model config / adapter and tokenizer; may be collective).
        save_total_limit: keep only this many newest checkpoints (None: all).
    """

    def __init__(
        self, output_dir: str | Path, info: DistInfo, *, tensors: dict[str, Stateful], records: dict[str, Stateful],
        files: dict[str, Stateful], metadata: Callable[[], dict[str, Any]] = dict,
        write_files: Callable[[Path], None] | None = None, save_total_limit: int | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.info = info
        self.tensors, self.records, self.files = tensors, records, files
        self.metadata = metadata
        self.write_files = write_files
        self.save_total_limit = save_total_limit

    # ------------------------------------------------------------------ save
    def save(self, step: int) -> Path:
        """Write ``<output_dir>/checkpoint-<step>`` atomically and return its path.

        Raises:
            OSError: from the filesystem (the partial ``.tmp-`` dir is never picked up as a checkpoint).
        """
        import torch.distributed.checkpoint as dcp

        info = self.info
        final = self.output_dir / checkpoint_name(step)
        tmp = self.output_dir / f".tmp-{checkpoint_name(step)}"
        if info.is_main and tmp.exists():
            shutil.rmtree(tmp)
        barrier(info)
        (tmp / STATE_DIR).mkdir(parents=True, exist_ok=True)  # every rank, in case its filesystem is its own
        payload = {name: comp.state_dict() for name, comp in self.tensors.items()}
        with quiet_dcp():
            dcp.save(payload, checkpoint_id=str(tmp / STATE_DIR / DCP_DIR))  # collective: each rank its shards
        del payload
        if self.write_files is not None:
            self.write_files(tmp)
        if info.is_main:
            self._write_json(tmp / STATE_DIR)
        barrier(info)
        if info.is_main:
            write_manifest(tmp)  # last: sizes and hashes of every file (all ranks' shards written by now)
            replace_dir(tmp, final)
        barrier(info)
        if not info.is_main and tmp.exists():  # a filesystem of its own: publish this rank's part too
            replace_dir(tmp, final)
        if info.is_main and self.save_total_limit:
            for _, old in list_checkpoints(self.output_dir)[:-self.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(info)
        return final

    def _write_json(self, where: Path) -> None:
        for name, comp in self.files.items():
            (where / f"{name}.json").write_text(json.dumps(comp.state_dict()), encoding="utf-8")
        state = {"version": STATE_VERSION, **{name: comp.state_dict() for name, comp in self.records.items()},
                 **self.metadata(), "manifest": MANIFEST}
        with open(where / "state.json", "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, default=str)

    # ------------------------------------------------------------------ load
    def load(self, path: str | Path) -> dict[str, Any]:
        """Load checkpoint ``path`` into every component, in place; returns its (upgraded) ``state.json``.

        Raises:
            ConfigError: the schedule differs (see :class:`~sftdata_train.checkpoint.state.RunSchedule`), a
                component's record is missing, there are no DCP tensors, or the adapter does not fit.
        """
        import torch.distributed.checkpoint as dcp

        path = Path(path)
        state = read_state(path)
        for name, comp in self.records.items():
            if name not in state:
                raise ConfigError(f"{path}: state.json has no {name!r} record")
            comp.load_state_dict(state[name])
        where = path / STATE_DIR / DCP_DIR
        if not (where / ".metadata").is_file():
            raise ConfigError(f"{path}: no sharded checkpoint in {STATE_DIR}/{DCP_DIR} (written by an older sftdata_train?)")
        saved = set(dcp.FileSystemReader(str(where)).read_metadata().state_dict_metadata)
        payload = {}
        for name, comp in self.tensors.items():
            if hasattr(comp, "template"):
                payload[name] = comp.template({k[len(name) + 1:] for k in saved if k.startswith(name + ".")})
            else:
                payload[name] = comp.state_dict()
        with quiet_dcp():
            dcp.load(payload, checkpoint_id=str(where))
        for name, comp in self.files.items():
            comp.load_state_dict(json.loads((path / STATE_DIR / f"{name}.json").read_text(encoding="utf-8")))
        for name, comp in self.tensors.items():  # in registration order: the RNG is registered last
            try:
                comp.load_state_dict(payload[name])
            except ValueError as e:
                raise ConfigError(f"{path}: {e}") from e
        return state


__all__ = ["STATE_VERSION", "CheckpointManager", "quiet_dcp", "read_state", "upgrade_state"]
