"""sftdata_train: the bf16 SFT training loop for `sftdata` data (plain PyTorch, FSDP2, resumable).

    >>> from sftdata_train import train
    >>> result = train({"data": "out/prepared", "output_dir": "runs/tiny", "max_steps": 10})  # doctest: +SKIP

See ``docs/training.md`` for the config keys, the loss definition and the checkpoint layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from .config import TrainConfig
    from .loop import TrainResult, Trainer, train


def __getattr__(name: str) -> Any:
    # Lazy: `import sftdata_train` stays cheap (no torch import) until something is used.
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("Trainer", "TrainResult", "train"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'sftdata_train' has no attribute {name!r}")
