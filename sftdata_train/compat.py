"""What sftdata_train needs from PyTorch, checked once at start-up with a clear error.

The loop uses, from PyTorch 2.6 on (the floor declared in ``pyproject.toml``):

* ``torch.distributed.fsdp.fully_shard`` and ``MixedPrecisionPolicy`` (FSDP2, public in
  ``torch.distributed.fsdp`` since 2.6; 2.4-2.5 had it under ``torch.distributed._composable``);
* ``torch.nn.utils.get_total_norm`` and ``torch.nn.utils.clip_grads_with_norm_`` (2.6);
* ``torch.distributed.checkpoint`` with ``state_dict.set_model_state_dict(...,
  StateDictOptions(broadcast_from_rank0=True))`` (2.4);
* ``torch.get_autocast_dtype`` (2.4), ``F.scaled_dot_product_attention(enable_gqa=...)`` (2.5).

Features that come later are optional and probed where they are used (PyTorch's own
``varlen_attn``, 2.10+: :mod:`sftdata_train.model.torch_varlen`; ``flex_attention``).
Features are checked, not version strings, so that patched or nightly builds pass when they
have what is needed.
"""

from __future__ import annotations

import torch

from sftdata.errors import ConfigError

MIN_TORCH = "2.6"


def missing_torch_features() -> list[str]:
    """Names of the required PyTorch features this installation lacks (empty when all are there)."""
    missing = []
    for name in ("get_total_norm", "clip_grads_with_norm_"):
        if not hasattr(torch.nn.utils, name):
            missing.append(f"torch.nn.utils.{name}")
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: F401
    except ImportError:
        missing.append("torch.distributed.fsdp.fully_shard / MixedPrecisionPolicy")
    try:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        if "broadcast_from_rank0" not in StateDictOptions.__dataclass_fields__:
            missing.append("StateDictOptions(broadcast_from_rank0=...)")
    except ImportError:
        missing.append("torch.distributed.checkpoint.state_dict")
    if not hasattr(torch, "get_autocast_dtype"):
        missing.append("torch.get_autocast_dtype")
    if not torch.distributed.is_available():
        missing.append("torch.distributed (this build has no distributed support)")
    return missing


def require_torch() -> None:
    """Raise :class:`~sftdata.errors.ConfigError` naming the missing features if PyTorch is too old."""
    missing = missing_torch_features()
    if missing:
        raise ConfigError(
            f"sftdata_train needs torch >= {MIN_TORCH}; torch {torch.__version__} lacks: {', '.join(missing)}"
        )
