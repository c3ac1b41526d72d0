"""Checkpointing: what a run keeps, so that it can continue exactly, and what it hands over at the end.

* :mod:`~sftdata_train.checkpoint.state`: the run's state as ``Stateful`` components (model,
  optimizer, RNG, counters, schedule);
* :mod:`~sftdata_train.checkpoint.manager`: the one ``CheckpointManager`` that saves and loads them
  (``torch.distributed.checkpoint``);
* :mod:`~sftdata_train.checkpoint.directories`: ``checkpoint-<step>/`` names, listing, the manifest that
  proves a checkpoint intact, atomic writes;
* :mod:`~sftdata_train.checkpoint.export`: ``final/``, the model alone in Hugging Face format.

``sftdata_train.checkpoint`` was one module: its names (``from sftdata_train.checkpoint import
latest_checkpoint`` ...) are read from :mod:`sftdata_train.checkpoint.directories` on first use, without
a warning (docs/architecture.md).
"""

from __future__ import annotations

from sftdata.module_aliases import reexport

__getattr__ = reexport(__name__, "directories")

__all__ = [
    "DCP_DIR", "MANIFEST", "STATE_DIR", "broadcast_object", "checkpoint_damage", "checkpoint_name", "export_model",
    "latest_checkpoint", "list_checkpoints", "load_training_state", "replace_dir", "resolve_resume", "tied_names",
    "verify_checkpoint", "write_dir_atomic", "write_manifest",
]
