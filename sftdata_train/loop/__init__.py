"""The training loop: building a run's steps and running them until the run is done or stopped.

* :mod:`~sftdata_train.loop.trainer`: ``Trainer``, ``train``, ``TrainResult`` (steps, evaluation,
  checkpoints, ``final/``);
* :mod:`~sftdata_train.loop.step`: one optimizer step (micro-batches, token-normalised loss, gradient
  norm); :mod:`~sftdata_train.loop.optim`: AdamW parameter groups and the learning-rate schedule;
* :mod:`~sftdata_train.loop.guards`: the checks that refuse a run before its first step;
* :mod:`~sftdata_train.loop.metrics`, :mod:`~sftdata_train.loop.peaks` (datasheet peak FLOP/s) and
  :mod:`~sftdata_train.loop.tracking` (TensorBoard, W&B, trackio): what a run reports;
* :mod:`~sftdata_train.loop.interrupt`: SIGINT/SIGTERM, a checkpoint, and the line that resumes.

``sftdata_train.loop`` was one module: its names (``from sftdata_train.loop import train``, ``Trainer``
...) are read from :mod:`sftdata_train.loop.trainer` on first use, without a warning
(docs/architecture.md).
"""

from __future__ import annotations

from sftdata.module_aliases import reexport

__getattr__ = reexport(__name__, "trainer")

__all__ = ["TrainResult", "Trainer", "train"]
