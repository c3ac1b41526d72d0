"""sftdata_train: the bf16 SFT training loop for `sftdata` data (plain PyTorch, FSDP2, resumable).

    >>> from sftdata_train import train
    >>> result = train({"data": "out/prepared", "output_dir": "runs/tiny", "max_steps": 10})  # doctest: +SKIP

See ``docs/training.md`` for the config keys, the loss definition and the checkpoint layout.

The modules, grouped by what they own (``sftdata_train`` imports ``sftdata``, never the reverse):

* config: :mod:`~sftdata_train.config` (``TrainConfig``), :mod:`~sftdata_train.config.command_line`
  (the command line), :mod:`~sftdata_train.config.aliases` and :mod:`~sftdata_train.config.alias_converters`
  (other tools' keys), :mod:`~sftdata_train.cli`, :mod:`~sftdata_train.pipeline` (``sftdata run``);
* data: :mod:`~sftdata_train.data` (datasets, batch sampler, the micro-batch stream);
* model and attention: :mod:`~sftdata_train.model`, :mod:`~sftdata_train.build`,
  :mod:`~sftdata_train.model.attention`, :mod:`~sftdata_train.model.seq_layout`,
  :mod:`~sftdata_train.model.torch_varlen`, :mod:`~sftdata_train.model.tree_attention`,
  :mod:`~sftdata_train.model.compiling`, :mod:`~sftdata_train.model.recompute`, :mod:`~sftdata_train.distributed`;
* loss: :mod:`~sftdata_train.loss`, :mod:`~sftdata_train.hf_trainer` (the same loss in HF's ``Trainer``);
* LoRA: :mod:`~sftdata_train.lora`, :mod:`~sftdata_train.lora.qlora`, :mod:`~sftdata_train.lora.init_adapter`,
  :mod:`~sftdata_train.lora.merge`;
* checkpointing: :mod:`~sftdata_train.checkpoint.state` (the ``Stateful`` components),
  :mod:`~sftdata_train.checkpoint.manager`, :mod:`~sftdata_train.checkpoint` (dirs, manifest),
  :mod:`~sftdata_train.checkpoint.export` (``final/``);
* loop: :mod:`~sftdata_train.setup` (building a run), :mod:`~sftdata_train.loop.step` (one optimizer
  step), :mod:`~sftdata_train.loop` (``Trainer``, ``train``), :mod:`~sftdata_train.loop.optim`,
  :mod:`~sftdata_train.loop.guards`, :mod:`~sftdata_train.loop.metrics`, :mod:`~sftdata_train.loop.peaks`,
  :mod:`~sftdata_train.loop.tracking`, :mod:`~sftdata_train.loop.interrupt`.
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
