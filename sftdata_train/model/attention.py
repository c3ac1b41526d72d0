"""Padding-free (varlen) causal attention, registered with transformers' ``AttentionInterface``.

A padding-free batch is one row ``(1, T)`` holding several sequences back to back, described
by ``cu_seq_lens_q``/``cu_seq_lens_k`` (``(n+1,)`` int32 offsets) and ``max_length_q/k``,
which the model forwards untouched to its attention function as keyword arguments. Tokens
of different sequences never attend to each other on any backend:

* ``varlen``: PyTorch's own ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention
  kernels shipped inside PyTorch; CUDA, bf16/fp16; no flash-attn build needed), called the
  way the installed release accepts (:mod:`sftdata_train.model.torch_varlen`);
* ``flash_attn``: ``flash_attn.flash_attn_varlen_func`` when the package is installed;
* ``flex``: ``flex_attention`` with a document-causal ``BlockMask`` (compiled on CUDA);
* ``sdpa``: ``scaled_dot_product_attention`` with a block-diagonal causal bool mask of shape
  ``(1, 1, T, T)`` for rows up to :data:`DENSE_MASK_MAX_TOKENS` tokens, one causal call per
  sequence for longer rows (eager only); this is the CPU path the tests use.

``auto`` resolves, once per run (:func:`resolve_backend`), to the first of varlen, flash_attn,
flex that works on CUDA with bf16/fp16 inputs (varlen only when its signature has a causal
form), else sdpa.

Compile-friendliness: the trainer resolves the backend and builds the per-forward metadata
(dense mask, ``BlockMask``, sequence bounds) *before* the decoder layers run
(:func:`plan_forward`, passed down as the ``sftdata_attn_*`` keyword arguments), so the
function called inside a compiled layer does no host sync, no ``.item()`` and keeps no Python
cache. Called without a plan (a model used outside the trainer) it resolves and builds what
it needs per call.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch
import torch.nn.functional as F

from . import torch_varlen
from .seq_layout import block_causal_mask, cu_seq_lens_from_position_ids, flex_block_mask, sequence_ids  # noqa: F401 (re-exported)

ATTN_NAME = "sftdata_varlen"
BACKENDS = ("auto", "varlen", "flash_attn", "flex", "sdpa")
#: Rows up to this many tokens use one SDPA call with a (T, T) block-diagonal mask; longer rows
#: run SDPA once per sequence (causal), which costs sum(L_i^2) instead of T^2.
DENSE_MASK_MAX_TOKENS = 1024
#: Keyword arguments of a forward plan (see :func:`plan_forward`), read by the attention function.
PLAN_KEYS = ("sftdata_attn_backend", "sftdata_attn_mask", "sftdata_attn_bounds")

# The backend used by ATTN_NAME when no plan is passed; set with set_backend().
_BACKEND = "auto"


def set_backend(name: str) -> None:
    """Choose the varlen backend used by :data:`ATTN_NAME` (one of :data:`BACKENDS`).

    Raises:
        ValueError: unknown name; ``varlen`` with a ``varlen_attn`` that is missing or has no
            causal form (the message gives its signature); ``flash_attn`` without the package.
    """
    global _BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown varlen attention backend {name!r}; choose from {BACKENDS}")
    if name == "varlen" and not has_torch_varlen():
        raise ValueError(
            f"attn_implementation=varlen is not usable with torch {torch.__version__}: "
            f"{torch_varlen.spec().describe()}; use auto, flash_attn, flex or sdpa"
        )
    if name == "flash_attn" and not has_flash_attn():
        raise ValueError("attn_implementation=flash_attn needs the flash-attn package")
    _BACKEND = name


def get_backend() -> str:
    """The backend :data:`ATTN_NAME` uses when no forward plan is passed (:func:`set_backend`)."""
    return _BACKEND


def has_torch_varlen() -> bool:
    """Whether PyTorch's ``varlen_attn`` exists *and* can be called causally (see :mod:`torch_varlen`)."""
    return torch_varlen.spec().usable


# (varlen_attn, its VarlenSpec), bound eagerly so that compiled code only reads a global.
_VARLEN_CALL: tuple[Any, torch_varlen.VarlenSpec] | None = None


def _varlen_call() -> tuple[Any, torch_varlen.VarlenSpec]:
    global _VARLEN_CALL
    if _VARLEN_CALL is None:
        _VARLEN_CALL = (torch_varlen.load(), torch_varlen.spec())
    return _VARLEN_CALL


def reset_probes() -> None:
    """Forget the probed ``varlen_attn``/flash-attn/flex availability (after patching them in tests)."""
    global _VARLEN_CALL
    _VARLEN_CALL = None
    torch_varlen.spec.cache_clear()
    has_flash_attn.cache_clear()
    has_flex.cache_clear()


@functools.lru_cache(None)
def has_flash_attn() -> bool:
    """Whether the ``flash_attn`` package is importable."""
    return importlib.util.find_spec("flash_attn") is not None


@functools.lru_cache(None)
def has_flex() -> bool:
    """Whether ``torch.nn.attention.flex_attention`` imports."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def resolve_backend(device: torch.device, dtype: torch.dtype, requested: str | None = None) -> str:
    """The concrete backend that ``requested`` (default: the current one) means on ``device``/``dtype``.

    ``auto`` on CUDA with bf16/fp16: ``varlen`` when PyTorch's ``varlen_attn`` has a causal form,
    else ``flash_attn`` when installed, else ``flex``, else ``sdpa``; anywhere else ``sdpa``.
    ``varlen``/``flash_attn`` asked for on a CPU or with fp32 inputs also give ``sdpa`` (their
    kernels need CUDA and 16-bit inputs).
    """
    name = requested or _BACKEND
    fast = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    if name == "auto":
        if fast and has_torch_varlen():
            return "varlen"
        if fast and has_flash_attn():
            return "flash_attn"
        if fast and has_flex():
            return "flex"
        return "sdpa"
    if name in ("varlen", "flash_attn") and not fast:
        return "sdpa"
    return name


@functools.lru_cache(None)
def compiled_flex():
    """``flex_attention`` under ``torch.compile(dynamic=True)``, built once per process (eager
    ``flex_attention`` materialises the scores: a reference path, not a kernel)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


def plan_forward(
    cu_seq_lens: torch.Tensor,
    total: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    backend: str | None = None,
    compiled: bool = False,
    needs_grad: bool = True,
) -> dict[str, Any]:
    """Everything the attention function needs for one padding-free forward, built eagerly once.

    Args:
        cu_seq_lens: ``(n+1,)`` int32 offsets; total: tokens in the row.
        device, dtype: where and in which dtype attention will run (the autocast dtype if any).
        backend: requested backend (default: the current one); resolved here.
        compiled: the decoder layers are compiled: no per-sequence Python bounds (they would
            be specialised on), sdpa always uses the dense mask.
        needs_grad: a backward will follow (flex has no CPU backward: sdpa is used instead).

    Returns:
        keyword arguments for the model's forward: ``sftdata_attn_backend`` (str),
        ``sftdata_attn_mask`` (``(1, 1, T, T)`` bool, a ``BlockMask`` or None) and
        ``sftdata_attn_bounds`` (tuple of ints or None).
    """
    name = resolve_backend(device, dtype, backend)
    if name == "varlen":
        _varlen_call()  # bind the probed function now, outside any compiled region
    if name == "flex" and device.type != "cuda" and needs_grad:
        name = "sdpa"  # flex_attention has no CPU backward
    cu = cu_seq_lens.to(device=device, dtype=torch.int32)
    mask: Any = None
    bounds: tuple[int, ...] | None = None
    if name == "flex":
        mask = flex_block_mask(cu, total)
    elif name == "sdpa" and cu.numel() > 2:
        if total <= DENSE_MASK_MAX_TOKENS or compiled:
            mask = block_causal_mask(cu, total)
        else:
            bounds = tuple(int(x) for x in cu.tolist())
    return {"sftdata_attn_backend": name, "sftdata_attn_mask": mask, "sftdata_attn_bounds": bounds}


# ----------------------------------------------------------------------------- the kernel calls
def varlen_causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    max_length: int,
    *,
    scale: float | None = None,
    backend: str | None = None,
    mask: Any = None,
    bounds: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Causal attention within each sequence of a padding-free row.

    Args:
        query: ``(T, Hq, D)``; key, value: ``(T, Hkv, D)`` with ``Hq % Hkv == 0`` (GQA).
        cu_seq_lens: ``(n+1,)`` int32 offsets of the n sequences (``cu[0] == 0``).
        max_length: the longest sequence length, in tokens.
        scale: softmax scale (default ``D ** -0.5``).
        backend: one of :data:`BACKENDS` (default: the current one, see :func:`set_backend`);
            resolved for the inputs' device/dtype unless already concrete from a plan.
        mask, bounds: from :func:`plan_forward` (built here when missing).

    Returns:
        ``(T, Hq, D)`` in the dtype of ``query``.
    """
    total, hq, _ = query.shape
    hkv = key.shape[1]
    gqa = hq != hkv
    name = resolve_backend(query.device, query.dtype, backend)
    if name == "flex" and not query.is_cuda and torch.is_grad_enabled() and query.requires_grad:
        name = "sdpa"  # flex_attention has no CPU backward
    cu = cu_seq_lens if cu_seq_lens.dtype == torch.int32 else cu_seq_lens.to(torch.int32)
    if name == "varlen":
        q, k, v = query.contiguous(), key.contiguous(), value.contiguous()
        fn, spec = _VARLEN_CALL if _VARLEN_CALL is not None else _varlen_call()
        return torch_varlen.call(fn, spec, q, k, v, cu, max_length, scale)
    if name == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        q, k, v = query.contiguous(), key.contiguous(), value.contiguous()
        return flash_attn_varlen_func(
            q, k, v, cu, cu, max_length, max_length, dropout_p=0.0, softmax_scale=scale, causal=True
        )
    # (1, H, T, D) layouts for sdpa/flex
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
    if name == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        block_mask = mask if mask is not None else flex_block_mask(cu, total)
        compiling = torch.compiler.is_compiling()
        fn = flex_attention if (compiling or not query.is_cuda) else compiled_flex()
        out = fn(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=gqa)
    elif name == "sdpa":
        if mask is None and bounds is None and cu.numel() > 2:  # several sequences and no plan: make one
            plan = plan_forward(cu, total, device=query.device, dtype=query.dtype, backend="sdpa")
            mask, bounds = plan["sftdata_attn_mask"], plan["sftdata_attn_bounds"]
        if bounds is not None and len(bounds) > 2:  # long rows: sum(L_i^2) work, no (T, T) mask
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(
                        q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=scale, enable_gqa=gqa
                    )
                    for a, b in zip(bounds[:-1], bounds[1:])
                    if b > a
                ],
                dim=2,
            )
        elif mask is not None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
        else:  # one sequence: plain causal
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    else:
        raise ValueError(f"unknown varlen attention backend {name!r}")
    return out[0].transpose(0, 1)


def checked_inputs(query, key, value, *, dropout: float, sliding_window: int | None, attention_mask, path: str,
                   mask_hint: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refuse what the padding-free and tree paths do not implement, then cast q/k/v to the
    compute dtype (under autocast the q/k norms may hand over fp32: the kernel runs in the
    autocast dtype).

    Raises:
        ValueError: attention dropout, a sliding window, or an ``attention_mask`` (``mask_hint``).
    """
    if dropout:
        raise ValueError(f"attention dropout is not supported on the {path} path")
    if sliding_window is not None:
        raise ValueError(f"sliding-window attention is not supported on the {path} path")
    if attention_mask is not None:
        raise ValueError(mask_hint)
    dtype = query.dtype
    dev = query.device.type
    if torch.is_autocast_enabled(dev):
        dtype = torch.get_autocast_dtype(dev)
    return query.to(dtype), key.to(dtype), value.to(dtype)


def sftdata_varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function (``AttentionInterface`` signature) for padding-free rows.

    Args:
        query: ``(B, Hq, T, D)``; key, value: ``(B, Hkv, T, D)`` (transformers' layout).
        attention_mask: must be None: this path is for padding-free batches (padded batches
            use ``sdpa``); with B > 1 each row is one causal sequence.
        kwargs: ``cu_seq_lens_q`` (``(n+1,)`` int32) and ``max_length_q`` (int) from the
            collator, and the ``sftdata_attn_*`` plan of :func:`plan_forward`; without the
            offsets they are derived from ``position_ids`` ``(1, T)`` (a host sync). With
            ``subtree_end`` (a prefix-tree batch) the call goes to
            :func:`sftdata_train.model.tree_attention.sftdata_tree_attention_forward`.

    Returns:
        ``((B, T, Hq, D) output, None)``.
    """
    if kwargs.get("subtree_end") is not None:  # a prefix-tree batch: ancestor-or-self attention
        from .tree_attention import sftdata_tree_attention_forward

        return sftdata_tree_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, sliding_window=sliding_window,
            **kwargs,
        )
    query, key, value = checked_inputs(
        query, key, value, dropout=dropout, sliding_window=sliding_window, attention_mask=attention_mask,
        path="padding-free", mask_hint=f"{ATTN_NAME} is for padding-free batches; padded batches must use attn 'sdpa'",
    )
    bsz, _, total, _ = query.shape
    cu = kwargs.get("cu_seq_lens_q")
    max_len = kwargs.get("max_length_q")
    if bsz != 1:
        if cu is not None:
            raise ValueError("cu_seq_lens_q given with batch size > 1; padding-free rows have batch size 1")
        out = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
        )
        return out.transpose(1, 2).contiguous(), None
    if cu is None:
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            cu = torch.tensor([0, total], dtype=torch.int32, device=query.device)
            max_len = total
        else:
            cu = cu_seq_lens_from_position_ids(position_ids)
            max_len = None
    if max_len is None:
        max_len = int((cu[1:] - cu[:-1]).max().item())
    out = varlen_causal_attention(
        query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
        cu, max_len, scale=scaling, backend=kwargs.get("sftdata_attn_backend"),
        mask=kwargs.get("sftdata_attn_mask"), bounds=kwargs.get("sftdata_attn_bounds"),
    )
    return out.unsqueeze(0), None


def register() -> str:
    """Register :data:`ATTN_NAME` with transformers (idempotent); returns the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, sftdata_varlen_attention_forward)
    return ATTN_NAME


register()
