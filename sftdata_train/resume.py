"""What a checkpoint records about the run besides the tensors, and restoring it (``state.json``).

``state.json`` holds the step, the token counters, the data position (epoch and micro-batches
consumed in it, see :class:`sftdata_train.data.MicroBatchStream`), and what fixes the
learning-rate schedule and the data order: world size, ``max_tokens_per_batch``, ``grad_accum``
and the total number of steps. Resuming with any of those changed is refused unless
``--allow-schedule-change`` (:func:`sftdata_train.guards.check_schedule`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import checkpoint as ckpt, guards

def resume_state(trainer) -> dict[str, Any]:
    """The JSON-able ``state.json`` of ``trainer`` (a :class:`sftdata_train.loop.Trainer`)."""
    sampler_state = None
    if hasattr(trainer.sampler, "state_dict"):
        try:
            sampler_state = trainer.sampler.state_dict()
        except Exception:  # noqa: BLE001 - informational only
            sampler_state = None
    return {
        "step": trainer.step,
        "total_steps": trainer.total_steps,
        "tokens_seen": trainer.tokens_seen,
        "trained_tokens_seen": trainer.trained_tokens_seen,
        "skipped_steps": trainer.skipped_steps,
        "world_size": trainer.info.world_size,
        "max_tokens_per_batch": trainer.config.max_tokens_per_batch,
        "grad_accum": trainer.config.grad_accum,
        "stream": trainer.stream.state_dict(),
        "sampler": sampler_state,
        "runtime": trainer.describe(),
        "config": trainer.config.to_dict(),
    }


def restore(trainer, path: Path) -> None:
    """Load checkpoint ``path`` into ``trainer``: schedule check, tensors (DCP), scheduler, RNG, position."""
    state = ckpt.load_training_state(path)
    saved = dict(state)
    for key in ("max_tokens_per_batch", "grad_accum"):
        saved.setdefault(key, state.get("config", {}).get(key))
    current = {
        "world_size": trainer.info.world_size, "max_tokens_per_batch": trainer.config.max_tokens_per_batch,
        "grad_accum": trainer.config.grad_accum, "total_steps": trainer.total_steps,
    }
    guards.check_schedule(saved, current, allow=trainer.config.allow_schedule_change)
    ckpt.load_checkpoint(path, wrapper=trainer.wrapper, optimizer=trainer.optimizer, scheduler=trainer.scheduler,
                         info=trainer.info, trainable_only=getattr(trainer, "adapter", None) is not None)
    trainer.stream.load_state_dict(state["stream"])
    trainer.step = int(state["step"])
    trainer.tokens_seen = int(state.get("tokens_seen", 0))
    trainer.trained_tokens_seen = int(state.get("trained_tokens_seen", 0))
    trainer.skipped_steps = int(state.get("skipped_steps", 0))
