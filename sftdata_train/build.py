"""Setting up a run's model: precision, loading or sharding, attention, compile, activation checkpointing.

Order (each step decides once, before the first training step):

1. precision: ``auto`` is ``bf16-mixed`` on CUDA and ``fp32`` on a CPU (bf16 matmuls on a CPU are
   several times slower than fp32);
2. the model: ``bf16-mixed`` and multi-process runs go through FSDP2 (a one-rank process group
   on a single process): every rank builds the model with meta parameters, shards it, allocates
   its shards and gets the weights broadcast from rank 0 (or from a sharded checkpoint);
   ``fp32``/``bf16-true`` on one process load the model as it is;
3. attention: the backend is resolved for the device and compute dtype and bound
   (:func:`sftdata_train.model.attention.set_backend`) before anything is compiled;
4. compile: each decoder layer's ``forward`` (:mod:`sftdata_train.model.compiling`);
5. activation checkpointing: planned from the memory estimate (:mod:`sftdata_train.model.recompute`)
   and wrapped around the (compiled) ``forward`` of the chosen layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from sftdata.errors import ConfigError

from .model import attention
from .lora import adapter as lora_mod
from .model.compiling import compile_layers, resolve_compile
from .distributed import (
    DistInfo,
    apply_fsdp2,
    decoder_layers,
    ensure_process_group,
    load_full_state_dict,
    materialize,
)
from .loss import SFTLossModel
from .model.loading import attn_for, build_skeleton, load_model, model_config
from .model.recompute import LayerShape, MemoryPlan, checkpoint_layers, free_device_memory, plan, step_memory


def resolve_precision(precision: str, device: torch.device, *, lora: bool = False) -> str:
    """``auto`` -> ``bf16-mixed`` on CUDA (``bf16-true`` under LoRA: frozen bf16 weights, fp32 adapters),
    ``fp32`` elsewhere; other values unchanged."""
    if lora:
        return lora_mod.resolve_precision(precision, device)
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "fp32"
    return precision


def param_dtype(precision: str) -> torch.dtype:
    """dtype of the stored (master) parameters: bf16 for ``bf16-true``, fp32 otherwise."""
    return torch.bfloat16 if precision == "bf16-true" else torch.float32


def compute_dtype(precision: str) -> torch.dtype:
    """dtype the matmuls run in: bf16 for the bf16 precisions, fp32 for ``fp32``."""
    return torch.bfloat16 if precision.startswith("bf16") else torch.float32


def uses_fsdp(precision: str, info: DistInfo) -> bool:
    """FSDP2 for several processes, and for ``bf16-mixed`` (``MixedPrecisionPolicy``) on one."""
    return info.distributed or precision == "bf16-mixed"


def build_model(
    cfg, *, info: DistInfo, precision: str, tokenizer, model: nn.Module | None = None, resume_path=None,
) -> dict[str, Any]:
    """The run's HF model and its :class:`SFTLossModel` wrapper, on ``info.device``, sharded if FSDP.

    Returns a dict: ``hf_model``, ``wrapper``, ``fsdp`` (bool), ``created_pg`` (a one-rank process
    group was created here), ``adapter`` (:class:`sftdata_train.lora.Adapter` under LoRA, else None).

    LoRA (``lora_r > 0``): the frozen model is always built from its source (``model`` / the
    passed object, even when resuming: a LoRA checkpoint holds the adapter only), then the adapters
    are added (:func:`sftdata_train.lora.apply`) before the wrapper is made and sharded: on rank
    0's full copy before its weights are broadcast, and on the meta skeleton of every rank.
    QLoRA loads the 4-bit model onto the device (one process, no FSDP2).
    """
    lora = lora_mod.enabled(cfg)
    if lora:
        lora_mod.check_runtime(cfg, info)
        resume_path = None  # the base comes from its source; the checkpoint fills the adapters
    quantized = lora and cfg.load_in_4bit
    if quantized and model is not None:
        raise ConfigError("load_in_4bit loads `model` in 4 bits itself: pass no model object (or drop load_in_4bit)")
    attn_impl, backend = attn_for(cfg.padding_free, cfg.attn_implementation)
    fsdp = uses_fsdp(precision, info) and not quantized
    created_pg = ensure_process_group(info.device) if fsdp else False
    pdtype = param_dtype(precision)
    full: dict[str, torch.Tensor] | None = None
    meta = False
    if model is not None and resume_path is None:
        attention.register()
        model.set_attn_implementation(attn_impl)
        model.to(pdtype)
        model.config.use_cache = False
        model.train()
        hf = model
    elif resume_path is not None or fsdp:
        config = model_config(str(resume_path) if resume_path is not None else cfg.model, tokenizer)
        if resume_path is None and info.is_main:  # only rank 0 reads the weights
            source = load_model(cfg.model, tokenizer=tokenizer, dtype=pdtype, attn_implementation=attn_impl,
                                seed=cfg.seed)
            if lora:  # the adapters' initial values travel with the broadcast
                lora_mod.apply(source, cfg, seed=cfg.seed)
            full = {f"model.{k}": v for k, v in source.state_dict().items()}
            config = source.config
            del source
        hf = build_skeleton(config, dtype=pdtype, attn_implementation=attn_impl)
        meta = True
    elif quantized:
        hf = lora_mod.load_quantized(cfg, tokenizer=tokenizer, device=info.device, dtype=compute_dtype(precision),
                                     attn_implementation=attn_impl)
    else:
        hf = load_model(cfg.model, tokenizer=tokenizer, dtype=pdtype, attn_implementation=attn_impl, seed=cfg.seed)
    adapter = lora_mod.apply(hf, cfg, seed=cfg.seed) if lora else None
    rows = hf.get_input_embeddings().weight.shape[0]
    if tokenizer is not None and len(tokenizer) > rows:
        raise ConfigError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows")
    wrapper = SFTLossModel(hf, chunk_size=cfg.loss_chunk_size)
    wrapper.attn_dtype = compute_dtype(precision)
    if not meta and not quantized:  # a 4-bit model is loaded onto its device
        wrapper.to(info.device)
    if fsdp:
        apply_fsdp2(wrapper, hf, precision=precision, reshard_after_forward=cfg.fsdp_reshard_after_forward)
    if meta:
        materialize(wrapper, info.device)
        if resume_path is None:
            load_full_state_dict(wrapper, full, info)
    del full
    if backend is not None:
        # resolved here, once, for this device and compute dtype, before anything is compiled
        attention.set_backend(attention.resolve_backend(info.device, compute_dtype(precision), backend))
    return dict(hf_model=hf, wrapper=wrapper, fsdp=fsdp, created_pg=created_pg, adapter=adapter)


def local_trainable_params(module: nn.Module) -> int:
    """Elements of the trainable parameters held by this rank (local shards under FSDP2)."""
    seen: set[int] = set()
    n = 0
    for p in module.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        n += (p.to_local() if hasattr(p, "to_local") else p).numel()
    return n


def speed_and_memory(cfg, *, wrapper: SFTLossModel, hf_model: nn.Module, info: DistInfo, precision: str,
                     tokens: int, fsdp: bool) -> dict[str, Any]:
    """Compile the decoder layers (``cfg.compile``) and checkpoint the planned ones (``cfg.activation_checkpointing``).

    Args:
        tokens: the largest micro-batch, in tokens (the activation estimate scales with it).

    Returns a dict: ``compiled`` (bool), ``plan`` (:class:`~sftdata_train.model.recompute.MemoryPlan`).
    """
    layers = decoder_layers(hf_model)
    compiled = resolve_compile(cfg.compile, info.device)
    if compiled:
        compile_layers(layers)
        wrapper.compiled = True
    shape = LayerShape.from_model(hf_model)
    e = compute_dtype(precision).itemsize
    budget: int | None
    if cfg.memory_budget_gb is not None:
        budget = int(cfg.memory_budget_gb * 1e9)
    else:
        budget = free_device_memory(info.device)
    head = hf_model.get_output_embeddings().weight
    vocab = head.shape[0]
    other = step_memory(
        shape, tokens=tokens, elem_bytes=e, trainable_params=local_trainable_params(wrapper), vocab=vocab,
        head_trained=head.requires_grad, loss_chunk=cfg.loss_chunk_size,
    )
    if fsdp:
        other += 2 * e * vocab * shape.hidden  # the root unit (embedding / tied head) unsharded in compute dtype
    mplan: MemoryPlan = plan(cfg.activation_checkpointing, n_layers=len(layers), shape=shape, tokens=tokens,
                             elem_bytes=e, budget=budget, other=other)
    if mplan.layers:
        checkpoint_layers(layers[i] for i in mplan.layers)
    return dict(compiled=compiled, plan=mplan)


def describe_run(cfg, info: DistInfo, *, fsdp: bool, compiled: bool, memory_plan: MemoryPlan) -> str:
    """One line: device, precision, attention backend, compile and activation checkpointing as resolved."""
    backend = attention.get_backend() if cfg.padding_free else "transformers sdpa (padded)"
    if backend == "varlen":
        backend += f" ({attention.torch_varlen.spec().describe()})"
    where = f"{info.world_size} x {info.device.type}" if info.distributed else str(info.device)
    return (f"{where}, {cfg.precision}{' (FSDP2)' if fsdp else ''}, attention {backend}, "
            f"compile {'on' if compiled else 'off'}, activation checkpointing {memory_plan.describe()}")
