"""AdamW with decay/no-decay parameter groups, and the warm-up + decay learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (weight decay) and norms/biases/other 1-D params (no decay).

    A parameter gets no decay when it has fewer than 2 dims (biases, RMSNorm/LayerNorm gains,
    including Qwen3's q_norm/k_norm) or its name contains ``norm``. Tied parameters appear once.
    """
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config, device: torch.device) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over :func:`param_groups`; the fused kernel on CUDA, PyTorch's default elsewhere."""
    kwargs = {}
    if device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        **kwargs,
    )


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, kind: str = "cosine", min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr used for optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, then with
    ``p = (step - warmup_steps) / max(1, total_steps - warmup_steps)`` in [0, 1):
    ``cosine``: ``min + (1 - min) * (1 + cos(pi p)) / 2``; ``linear``: ``min + (1 - min) * (1 - p)``;
    ``constant``: 1. So the first step after warm-up runs at the peak, and the decay reaches
    ``min_ratio`` one step *after* the last (``step == total_steps``, as in transformers'
    schedules): with ``min_ratio = 0`` the last step still trains (linear: ``1 / (total - warmup)``
    of the peak), it does not run at learning rate 0.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    if kind == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - p)
    raise ValueError(f"unknown lr schedule {kind!r}")


def warmup_steps_for(config, total_steps: int) -> int:
    """Warm-up length in steps: ``warmup_steps`` if set, else ``ceil(warmup_ratio * total_steps)``."""
    if config.warmup_steps is not None:
        return max(0, int(config.warmup_steps))
    return int(math.ceil(config.warmup_ratio * total_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, config, total_steps: int) -> LambdaLR:
    """``LambdaLR`` applying :func:`lr_factor`; call ``.step()`` once per optimizer step."""
    warmup = warmup_steps_for(config, total_steps)
    kind, min_ratio = config.lr_scheduler, config.min_lr_ratio

    def fn(step: int) -> float:
        return lr_factor(step, total_steps=total_steps, warmup_steps=warmup, kind=kind, min_ratio=min_ratio)

    return LambdaLR(optimizer, fn)
