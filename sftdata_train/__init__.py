"""sftdata_train: the bf16 SFT training loop for `sftdata` data (plain PyTorch, FSDP2, resumable).

    >>> from sftdata_train import train
    >>> result = train({"data": "out/prepared", "output_dir": "runs/tiny", "max_steps": 10})  # doctest: +SKIP

See ``docs/training.md`` for the config keys, the loss definition and the checkpoint layout.

One folder per concept (``sftdata_train`` imports ``sftdata``, never the reverse; docs/architecture.md):

* ``config/``: :mod:`~sftdata_train.config.train_config` (``TrainConfig``),
  :mod:`~sftdata_train.config.command_line` (the flags), :mod:`~sftdata_train.config.aliases` and
  :mod:`~sftdata_train.config.alias_converters` (other tools' keys);
* ``model/``: :mod:`~sftdata_train.model.loading` (model and tokenizer), :mod:`~sftdata_train.model.attention`,
  :mod:`~sftdata_train.model.seq_layout`, :mod:`~sftdata_train.model.torch_varlen`,
  :mod:`~sftdata_train.model.tree_attention`, :mod:`~sftdata_train.model.compiling`,
  :mod:`~sftdata_train.model.recompute`;
* ``lora/``: :mod:`~sftdata_train.lora.adapter`, :mod:`~sftdata_train.lora.qlora`,
  :mod:`~sftdata_train.lora.init_adapter`, :mod:`~sftdata_train.lora.merge`;
* ``checkpoint/``: :mod:`~sftdata_train.checkpoint.state` (the ``Stateful`` components),
  :mod:`~sftdata_train.checkpoint.manager`, :mod:`~sftdata_train.checkpoint.directories` (dirs, manifest),
  :mod:`~sftdata_train.checkpoint.export` (``final/``);
* ``loop/``: :mod:`~sftdata_train.loop.trainer` (``Trainer``, ``train``), :mod:`~sftdata_train.loop.step`
  (one optimizer step), :mod:`~sftdata_train.loop.optim`, :mod:`~sftdata_train.loop.guards`,
  :mod:`~sftdata_train.loop.metrics`, :mod:`~sftdata_train.loop.peaks`, :mod:`~sftdata_train.loop.tracking`,
  :mod:`~sftdata_train.loop.interrupt`;
* at the top, the front door and what the folders share: :mod:`~sftdata_train.cli`,
  :mod:`~sftdata_train.pipeline` (``sftdata run``'s train stage), :mod:`~sftdata_train.hf_trainer` (the
  same loss in HF's ``Trainer``), :mod:`~sftdata_train.loss`, :mod:`~sftdata_train.data` (datasets, batch
  sampler, the micro-batch stream), :mod:`~sftdata_train.build` (the model a run trains),
  :mod:`~sftdata_train.setup` (building a run), :mod:`~sftdata_train.distributed`,
  :mod:`~sftdata_train.compat`, :mod:`~sftdata_train.testing`.

The old flat paths (``sftdata_train.attention`` ...) still import, with a ``DeprecationWarning``
(:mod:`sftdata_train._moved`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from .config.train_config import TrainConfig
    from .loop.trainer import TrainResult, Trainer, train


def __getattr__(name: str) -> Any:
    # Lazy: `import sftdata_train` stays cheap (no torch import) until something is used.
    if name == "TrainConfig":
        from .config.train_config import TrainConfig

        return TrainConfig
    if name in ("Trainer", "TrainResult", "train"):
        from .loop import trainer as loop

        return getattr(loop, name)
    raise AttributeError(f"module 'sftdata_train' has no attribute {name!r}")


# Old flat module paths (sftdata_train.attention -> sftdata_train.model.attention ...): the same module
# object, with a DeprecationWarning; the table is in docs/architecture.md.
from . import _moved  # noqa: E402

__getattr__ = _moved.install(__name__, __getattr__)
