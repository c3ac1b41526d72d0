"""Process group set-up and FSDP2 (``torch.distributed.fsdp.fully_shard``).

Launch with ``torchrun --nproc-per-node N -m sftdata_train ...``: torchrun sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; we initialise NCCL on CUDA (gloo on CPU), put each rank on
``cuda:LOCAL_RANK`` and shard the model with FSDP2: every decoder layer is its own
``fully_shard`` unit, and the :class:`~sftdata_train.loss.SFTLossModel` wrapper is the root
unit (embeddings, final norm and the possibly tied LM head). Data is sharded by rank through
the batch sampler (``num_replicas=WORLD_SIZE, rank=RANK``).

``bf16-mixed`` always runs through FSDP2's ``MixedPrecisionPolicy`` (bf16 compute, fp32 master
weights and gradient reduction), on one process too (a one-rank process group,
:func:`ensure_process_group`), so that a run computes the same numbers on 1 or N GPUs.

Loading: every rank builds the model with its parameters on the meta device
(:func:`sftdata_train.model.build_skeleton`), shards it, allocates its shards
(:func:`materialize`) and receives the weights from rank 0, the only rank that reads them
(:func:`load_full_state_dict`: ``set_model_state_dict(..., broadcast_from_rank0=True)``).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass
class DistInfo:
    """Where this process runs. ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files and prints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True with several processes (a process group exists)."""
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``cuda:local_rank`` when CUDA is available (or required), else CPU."""
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def ensure_process_group(device: torch.device) -> bool:
    """A one-rank default process group for FSDP2 in a single process; True if created here.

    (NCCL on CUDA, gloo on CPU, over an in-memory ``HashStore``: nothing listens on a port.)
    """
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **kwargs)
    return True


def cleanup() -> None:
    """Destroy the process group if we created one.

    All ranks meet at a barrier first: a rank that tears gloo down while another still
    has collective work in flight aborts the process ("terminate called without an
    active exception"), which failed the two-process test now and then.
    """
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            # free what still holds collective work (tensors of finished gloo work) while the
            # interpreter is fully alive: released during interpreter shutdown instead, a gloo
            # worker thread's tensor needs the GIL and the process aborts (pytorch/pytorch#179291)
            gc.collect()
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process; on CUDA with this rank's device)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place when distributed); returns ``t``."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, info: DistInfo):
    """``obj`` of rank 0 on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def decide_on_main(fn, info: DistInfo):
    """Run ``fn()`` on rank 0 only and return its result on every rank; a ``ConfigError`` it raises
    is raised on every rank (no rank is left waiting in a collective)."""
    from sftdata.errors import ConfigError

    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except ConfigError as e:
            error = str(e)
    result, error = broadcast_object((result, error), info)
    if error is not None:
        raise ConfigError(error)
    return result


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks of a HF model (classes named in ``_no_split_modules``)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        base = getattr(model, getattr(model, "base_model_prefix", "model"), model)
        layers = list(getattr(base, "layers", []))
    return layers


def mixed_precision_policy(precision: str):
    """``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` for ``bf16-mixed``, else None."""
    if precision != "bf16-mixed":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def apply_fsdp2(wrapper: nn.Module, hf_model: nn.Module, *, precision: str, reshard_after_forward: bool = True) -> None:
    """Shard ``wrapper`` with FSDP2 in place: one unit per decoder layer of ``hf_model``, root last.

    ``bf16-mixed`` uses :func:`mixed_precision_policy` over fp32 sharded master weights;
    ``bf16-true`` and ``fp32`` shard the parameters as they are. Gradients are averaged over
    ranks by the reduce-scatter (the loop scales the loss by the world size so that the result
    is the per-token mean of the whole global step). Works on meta parameters (then
    :func:`materialize`).
    """
    from torch.distributed.fsdp import fully_shard

    mp = mixed_precision_policy(precision)
    kwargs = {"mp_policy": mp} if mp is not None else {}
    reshard = reshard_after_forward
    layers = decoder_layers(hf_model)
    for i, layer in enumerate(layers):
        # the last layer is gathered again right away by backward: keep it unsharded
        fully_shard(layer, reshard_after_forward=reshard and i < len(layers) - 1, **kwargs)
    fully_shard(wrapper, reshard_after_forward=reshard, **kwargs)


def materialize(module: nn.Module, device: torch.device) -> None:
    """Allocate ``module``'s meta parameters on ``device`` (uninitialised), keeping its buffers' values."""
    buffers = {name: b.detach().clone() for name, b in module.named_buffers() if b.device.type != "meta"}
    # swap the tensors into the existing Parameter objects: tied weights (one Parameter shared by the
    # embedding and the LM head) stay tied; a plain to_empty would give each module its own copy
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        module.to_empty(device=device)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)
    with torch.no_grad():
        for name, b in module.named_buffers():
            if name in buffers:
                b.copy_(buffers[name])


def load_full_state_dict(wrapper: nn.Module, full: dict[str, torch.Tensor] | None, info: DistInfo) -> None:
    """Fill ``wrapper``'s (sharded) parameters from rank 0's full state dict ``full`` (keys of
    ``wrapper.state_dict()``); other ranks pass None. One broadcast, no file read off rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(
        wrapper, full if info.is_main else {},
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
    )
