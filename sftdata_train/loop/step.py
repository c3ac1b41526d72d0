"""One optimizer step: ``grad_accum`` micro-batches, normalised by the trained tokens of the whole step.

Before running the micro-batches, their trained tokens are counted and summed over ranks
(``N``); each micro-batch then back-propagates ``loss_sum * world_size / N`` (the
reduce-scatter/all-reduce averages over ranks), so the gradient is exactly that of the per-token
mean over the whole global step.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..data import batch_to_device, num_tokens, sum_squared_lengths
from ..distributed import DistInfo, all_reduce_sum
from ..loss import count_trained_tokens
from .metrics import step_flops


@dataclass
class StepOutput:
    """What one optimizer step did. ``loss`` is the SFT loss of the step (nats per trained token)."""

    loss: float
    grad_norm: float
    lr: float
    trained_tokens: int  # over all ranks
    tokens: int  # real tokens over all ranks
    flops: float  # over all ranks
    skipped: bool = False  # non-finite gradient norm: no update (nonfinite_grad=skip)


def grad_norm(params: list[torch.nn.Parameter], device: torch.device) -> torch.Tensor:
    """Global L2 norm (0-dim fp32 tensor on ``device``) of the gradients of ``params`` (those
    holding one; over all shards under FSDP2), before clipping."""
    grads = [p.grad for p in params]
    if not grads:
        return torch.zeros((), device=device)
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if hasattr(total, "full_tensor"):  # DTensor under FSDP2: reduce over shards
        total = total.full_tensor()
    return total


def step_counts(micro_batches: list[dict[str, Any]], info: DistInfo, device: torch.device) -> tuple[int, int, int]:
    """``(trained tokens, real tokens, Σ L²)`` of the micro-batches, summed over all ranks (a collective)."""
    counts = torch.tensor(
        [
            sum(count_trained_tokens(mb.get("labels"), mb.get("shift_labels")) for mb in micro_batches),
            sum(num_tokens(mb) for mb in micro_batches),
            sum(sum_squared_lengths(mb) for mb in micro_batches),
        ],
        dtype=torch.int64,
        device=device,
    )
    all_reduce_sum(counts, info)
    n_global, tokens, sumsq = (int(x) for x in counts.tolist())
    return n_global, tokens, sumsq


def optimizer_step(
    micro_batches: list[dict[str, Any]], *, wrapper: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
    config, info: DistInfo, device: torch.device, fsdp: bool, flops_shape: dict[str, Any], step: int,
) -> StepOutput:
    """One optimizer step over this rank's ``micro_batches`` (collated, on CPU or ``device``).

    The loss is normalised by the trained tokens of all micro-batches on all ranks. The gradient
    norm is checked *before* ``optimizer.step()``: a non-finite norm drops this update
    (``skipped=True``; the schedule still advances) when ``config.nonfinite_grad`` is ``skip``.
    ``step`` is the number of steps done before this one (for the error message).

    Raises:
        FloatingPointError: a non-finite gradient norm with ``nonfinite_grad=stop`` (nothing applied).
    """
    n_global, tokens, sumsq = step_counts(micro_batches, info, device)
    scale = info.world_size / max(n_global, 1)
    loss_acc = torch.zeros((), dtype=torch.float32, device=device)
    wrapper.train()
    for i, mb in enumerate(micro_batches):
        if fsdp:
            last = i == len(micro_batches) - 1
            wrapper.set_requires_gradient_sync(last or not config.fsdp_defer_grad_sync)
        loss_sum, _ = wrapper(**batch_to_device(mb, device))
        (loss_sum * scale).backward()
        loss_acc += loss_sum.detach()
    params = [p for p in wrapper.parameters() if p.grad is not None]  # once per step: norm and clipping
    norm_t = grad_norm(params, device)
    lr = optimizer.param_groups[0]["lr"]
    all_reduce_sum(loss_acc, info)
    loss = float(loss_acc) / max(n_global, 1)
    flops = step_flops(tokens=tokens, sum_sq_lengths=sumsq, **flops_shape)
    norm = float(norm_t)  # one host sync per step, outside any compiled region
    skipped = not math.isfinite(norm)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        if config.nonfinite_grad == "stop":
            raise FloatingPointError(
                f"non-finite gradient norm {norm} (loss {loss}) at step {step + 1}: no update applied; "
                "--nonfinite-grad skip drops such updates instead"
            )
    else:
        if config.max_grad_norm and config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, config.max_grad_norm, norm_t)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # a skipped update steps the schedule without optimizer.step()
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        scheduler.step()
    return StepOutput(loss=loss, grad_norm=norm, lr=lr, trained_tokens=n_global, tokens=tokens, flops=flops,
                      skipped=skipped)


__all__ = ["StepOutput", "grad_norm", "optimizer_step", "step_counts"]
