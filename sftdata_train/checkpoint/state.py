"""The trainer's state as :class:`Stateful` components, each saved and loaded by the checkpoint manager.

The pattern of ``torch.distributed.checkpoint.stateful.Stateful`` (and torchtitan's
``CheckpointManager``): every piece of state the run needs to continue exactly is an object with
``state_dict()`` and ``load_state_dict(state)``; :class:`sftdata_train.checkpoint.manager.CheckpointManager`
saves and loads them all, and nothing writes the trainer's attributes from outside.

Components (the name is the key under which the manager stores it):

========== =========================== ===================================================
name       component                   stored as
========== =========================== ===================================================
model      :class:`ModelState`         DCP tensors ``model.*`` (sharded under FSDP2)
optim      :class:`OptimizerState`     DCP tensors ``optim.*`` (sharded like the parameters)
rng        :class:`RngState`           DCP bytes ``rng.rank<r>`` (each rank its own)
scheduler  the ``LambdaLR`` itself     ``scheduler.json``
counters   :class:`TrainCounters`      ``state.json["counters"]``
schedule   :class:`RunSchedule`        ``state.json["schedule"]`` (checked, not loaded)
data       :class:`~sftdata_train.data.MicroBatchStream`  ``state.json["data"]`` (the batch
           sampler's state: epoch and micro-batches consumed in it)
========== =========================== ===================================================
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn

from ..loop import guards


@runtime_checkable
class Stateful(Protocol):
    """What the checkpoint manager saves and loads (``torch.distributed.checkpoint.stateful.Stateful``)."""

    def state_dict(self) -> dict[str, Any]:
        """The component's state (tensors for DCP components, JSON values for the others)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict` (in place)."""


# ----------------------------------------------------------------------------- tensors (DCP)
class ModelState:
    """The model's parameters through DCP's ``get_model_state_dict``/``set_model_state_dict``.

    Args:
        wrapper: the trained module (FSDP2 root when sharded): its sharded parameters are saved
            as DTensors, each rank writing its own shards.
        trainable_only: LoRA: only the parameters with ``requires_grad`` (the frozen ones are
            rebuilt from their source and never come from a checkpoint).
    """

    def __init__(self, wrapper: nn.Module, *, trainable_only: bool = False) -> None:
        self.wrapper = wrapper
        self.trainable_only = trainable_only

    def state_dict(self) -> dict[str, Any]:
        """``{fqn: tensor}`` in the master dtype (the tensors DCP loads into, in place)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        sd = get_model_state_dict(self.wrapper)
        if self.trainable_only:
            keep = {n for n, p in self.wrapper.named_parameters(remove_duplicate=False) if p.requires_grad}
            sd = {k: v for k, v in sd.items() if k in keep}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set the parameters from ``state_dict``.

        Raises:
            ValueError: LoRA (``trainable_only``): the saved adapter's keys do not match the model's
                trainable parameters (the manager re-raises it as a ``ConfigError`` naming the checkpoint).
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        loaded = set_model_state_dict(self.wrapper, state_dict, options=StateDictOptions(strict=not self.trainable_only))
        if self.trainable_only:
            trainable = {n for n, p in self.wrapper.named_parameters() if p.requires_grad}
            missing = sorted(trainable & set(loaded.missing_keys))
            if missing or loaded.unexpected_keys:
                raise ValueError(f"the checkpoint's adapter does not fit the model (missing {missing[:3]}, "
                                 f"unexpected {list(loaded.unexpected_keys)[:3]})")


class OptimizerState:
    """The optimizer's state (AdamW moments and step counts) through DCP, sharded like the parameters."""

    def __init__(self, wrapper: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.wrapper = wrapper
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        """DCP's ``get_optimizer_state_dict`` (parameter names as keys, so it reshards)."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.wrapper, self.optimizer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the optimizer (``set_optimizer_state_dict``)."""
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.wrapper, self.optimizer, optim_state_dict=state_dict)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain Python values (loadable with ``weights_only=True``).

    Keys: ``python`` (``random``), ``torch`` (CPU ``uint8`` tensor), ``numpy`` (its keys as an
    ``int64`` tensor) and, when CUDA is initialised, ``cuda``.
    """
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": (version, list(internal), gauss), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states :func:`rng_state` returned (a missing ``numpy``/``cuda`` entry is left as is)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class RngState:
    """This rank's python/numpy/torch/CUDA RNG states, as one ``torch.save`` blob under ``rank<r>``.

    Each rank saves its own entry; a rank without one in the checkpoint (more ranks than when
    saved) loads rank 0's (:meth:`template`).
    """

    def __init__(self, rank: int) -> None:
        self.rank = int(rank)

    def state_dict(self) -> dict[str, Any]:
        """``{"rank<r>": BytesIO}``: the current states, serialised (tensors and plain values only)."""
        buf = io.BytesIO()
        torch.save(rng_state(), buf)
        buf.seek(0)
        return {f"rank{self.rank}": buf}

    def template(self, saved_keys: set[str]) -> dict[str, Any]:
        """What to load into, given the keys ``saved_keys`` (``rank<r>``) the checkpoint holds."""
        key = f"rank{self.rank}" if f"rank{self.rank}" in saved_keys else "rank0"
        return {key: io.BytesIO()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set this process's RNG states from the one blob in ``state_dict`` (read with ``weights_only``)."""
        (buf,) = state_dict.values()
        buf.seek(0)
        set_rng_state(torch.load(buf, map_location="cpu", weights_only=True))


# ----------------------------------------------------------------------------- JSON
@dataclass
class TrainCounters:
    """The loop's counters: optimizer ``step``\\ s done, real ``tokens_seen`` and
    ``trained_tokens_seen`` (over all ranks), and updates dropped for a non-finite gradient."""

    step: int = 0
    tokens_seen: int = 0
    trained_tokens_seen: int = 0
    skipped_steps: int = 0

    def state_dict(self) -> dict[str, Any]:
        """The four counters as ints."""
        return asdict(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Set the counters (a missing one is 0; ``step`` is required).

        Raises:
            KeyError: no ``step``.
        """
        self.step = int(state_dict["step"])
        self.tokens_seen = int(state_dict.get("tokens_seen", 0))
        self.trained_tokens_seen = int(state_dict.get("trained_tokens_seen", 0))
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))


class RunSchedule:
    """What fixes the learning-rate schedule and the data order: world size, tokens per
    micro-batch, ``grad_accum`` and the total number of optimizer steps.

    It is recorded, not restored: :meth:`load_state_dict` compares the checkpoint's values with
    this run's (:func:`sftdata_train.loop.guards.check_schedule`).
    """

    KEYS = ("world_size", "max_tokens_per_batch", "grad_accum", "total_steps")

    def __init__(self, *, world_size: int, max_tokens_per_batch: int, grad_accum: int, total_steps: int,
                 allow_change: bool = False) -> None:
        self.values = {"world_size": world_size, "max_tokens_per_batch": max_tokens_per_batch,
                       "grad_accum": grad_accum, "total_steps": total_steps}
        self.allow_change = allow_change

    def state_dict(self) -> dict[str, Any]:
        """The four values (ints)."""
        return dict(self.values)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Check the checkpoint's values against this run's.

        Raises:
            sftdata.errors.ConfigError: one differs and ``allow_change`` is false (a warning otherwise).
        """
        guards.check_schedule(state_dict, self.values, allow=self.allow_change)


__all__ = [
    "ModelState", "OptimizerState", "RngState", "RunSchedule", "Stateful", "TrainCounters", "rng_state",
    "set_rng_state",
]
