"""Padding-free (varlen) causal attention, registered with transformers' ``AttentionInterface``.

A padding-free batch is one row ``(1, T)`` holding several sequences back to back, described
by ``cu_seq_lens_q``/``cu_seq_lens_k`` (``(n+1,)`` int32 offsets) and ``max_length_q/k``,
which the model forwards untouched to its attention function as keyword arguments. Tokens
of different sequences never attend to each other on any backend:

* ``varlen``: PyTorch's own ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention
  kernels shipped inside PyTorch; CUDA, bf16/fp16; no flash-attn build needed);
* ``flash_attn``: ``flash_attn.flash_attn_varlen_func`` when the package is installed;
* ``flex``: ``flex_attention`` with a document-causal ``BlockMask`` (compiled on CUDA);
* ``sdpa``: ``scaled_dot_product_attention`` with a block-diagonal causal bool mask of shape
  ``(1, 1, T, T)`` for rows up to :data:`DENSE_MASK_MAX_TOKENS` tokens, one causal call per
  sequence for longer rows; this is the CPU path the tests use.

``auto`` picks, per call: varlen on CUDA with bf16/fp16 inputs when PyTorch has it, else
flash_attn when installed, else sdpa. The function is registered as
:data:`ATTN_NAME` so a model loaded with ``attn_implementation=ATTN_NAME`` uses it.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import torch
import torch.nn.functional as F

ATTN_NAME = "sftdata_varlen"
BACKENDS = ("auto", "varlen", "flash_attn", "flex", "sdpa")
#: Rows up to this many tokens use one SDPA call with a (T, T) block-diagonal mask; longer rows
#: run SDPA once per sequence (causal), which costs sum(L_i^2) instead of T^2.
DENSE_MASK_MAX_TOKENS = 1024

# The backend used by ATTN_NAME; set with set_backend() (a module-level switch rather than a
# model attribute so that the function stays a plain, compile-friendly callable).
_BACKEND = "auto"


def set_backend(name: str) -> None:
    """Choose the varlen backend used by :data:`ATTN_NAME` (one of :data:`BACKENDS`)."""
    global _BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown varlen attention backend {name!r}; choose from {BACKENDS}")
    if name == "varlen" and not has_torch_varlen():
        raise ValueError("attn_implementation=varlen needs torch.nn.attention.varlen (PyTorch >= 2.10) and CUDA")
    if name == "flash_attn" and not has_flash_attn():
        raise ValueError("attn_implementation=flash_attn needs the flash-attn package")
    _BACKEND = name


def get_backend() -> str:
    return _BACKEND


@functools.lru_cache(None)
def has_torch_varlen() -> bool:
    """Whether ``torch.nn.attention.varlen.varlen_attn`` exists in this PyTorch."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(None)
def has_flash_attn() -> bool:
    """Whether the ``flash_attn`` package is importable."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(device: torch.device, dtype: torch.dtype, requested: str | None = None) -> str:
    """The backend that ``requested`` (default: the current one) means for tensors on ``device``/``dtype``."""
    name = requested or _BACKEND
    half = dtype in (torch.bfloat16, torch.float16)
    if name == "auto":
        if device.type == "cuda" and half and has_torch_varlen():
            return "varlen"
        if device.type == "cuda" and half and has_flash_attn():
            return "flash_attn"
        return "sdpa"
    if name in ("varlen", "flash_attn") and not (device.type == "cuda" and half):
        return "sdpa"  # these kernels need CUDA and 16-bit inputs; keep the run going on the exact path
    return name


# ----------------------------------------------------------------------------- sequence layout
def cu_seq_lens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """``(n+1,)`` int32 offsets of the sequences in a ``(1, T)`` ``position_ids`` row.

    A new sequence starts wherever the position does not increase by exactly 1 (as in
    transformers' ``find_packed_sequence_indices``).
    """
    pos = position_ids.reshape(-1)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] != pos[:-1] + 1
    idx = torch.nonzero(starts).reshape(-1)
    end = torch.tensor([pos.numel()], device=pos.device, dtype=idx.dtype)
    return torch.cat([idx, end]).to(torch.int32)


def sequence_ids(cu_seq_lens: torch.Tensor, total: int) -> torch.Tensor:
    """``(total,)`` int64 index of the sequence each token belongs to, from ``(n+1,)`` offsets."""
    lengths = (cu_seq_lens[1:] - cu_seq_lens[:-1]).long()
    ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu_seq_lens.device), lengths)
    if ids.numel() < total:  # trailing positions not covered by any sequence: their own "sequence"
        ids = torch.cat([ids, torch.full((total - ids.numel(),), lengths.numel(), device=ids.device)])
    return ids


class _LastMask:
    """One-entry cache so that all layers of one forward share the mask built from the same offsets."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.cu: torch.Tensor | None = None
        self.value: Any = None

    def get(self, kind: str, cu: torch.Tensor, total: int, build):
        key = (kind, total, cu.device, cu.numel())
        if self.key == key and self.cu is not None and torch.equal(self.cu, cu):
            return self.value
        self.value = build()
        self.key, self.cu = key, cu.detach().clone()
        return self.value


_MASKS = _LastMask()


def block_causal_mask(cu_seq_lens: torch.Tensor, total: int) -> torch.Tensor:
    """``(1, 1, T, T)`` bool mask, True where query i may attend key j (same sequence, j <= i)."""
    seq = sequence_ids(cu_seq_lens, total)
    idx = torch.arange(total, device=seq.device)
    mask = (seq[:, None] == seq[None, :]) & (idx[None, :] <= idx[:, None])
    return mask[None, None]


def _flex_block_mask(cu_seq_lens: torch.Tensor, total: int):
    from torch.nn.attention.flex_attention import create_block_mask

    seq = sequence_ids(cu_seq_lens, total)

    def document_causal(b, h, q_idx, kv_idx):
        return (seq[q_idx] == seq[kv_idx]) & (kv_idx <= q_idx)

    return create_block_mask(document_causal, None, None, total, total, device=seq.device)


@functools.lru_cache(None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


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
) -> torch.Tensor:
    """Causal attention within each sequence of a padding-free row.

    Args:
        query: ``(T, Hq, D)``; key, value: ``(T, Hkv, D)`` with ``Hq % Hkv == 0`` (GQA).
        cu_seq_lens: ``(n+1,)`` int32 offsets of the n sequences (``cu[0] == 0``).
        max_length: the longest sequence length, in tokens.
        scale: softmax scale (default ``D ** -0.5``).
        backend: one of :data:`BACKENDS` (default: the current one, see :func:`set_backend`).

    Returns:
        ``(T, Hq, D)`` in the dtype of ``query``.
    """
    total, hq, _ = query.shape
    hkv = key.shape[1]
    name = resolve_backend(query.device, query.dtype, backend)
    if name == "flex" and not query.is_cuda and torch.is_grad_enabled() and query.requires_grad:
        name = "sdpa"  # flex_attention has no CPU backward
    cu = cu_seq_lens.to(device=query.device, dtype=torch.int32)
    if name in ("varlen", "flash_attn"):
        query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
    if name == "varlen":
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(
            query, key, value, cu, cu, int(max_length), int(max_length),
            scale=scale, window_size=(-1, 0),  # (-1, 0) is what varlen_attn calls causal
            enable_gqa=hq != hkv,
        )
    if name == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(
            query, key, value, cu, cu, int(max_length), int(max_length),
            dropout_p=0.0, softmax_scale=scale, causal=True,
        )
    # (1, H, T, D) layouts for sdpa/flex
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
    if name == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        block_mask = _MASKS.get("flex", cu, total, lambda: _flex_block_mask(cu, total))
        fn = _compiled_flex() if query.is_cuda else flex_attention
        out = fn(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=hq != hkv)
    elif name == "sdpa":
        n_seq = cu.numel() - 1
        if n_seq <= 1:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=hq != hkv)
        elif total <= DENSE_MASK_MAX_TOKENS:
            mask = _MASKS.get("sdpa", cu, total, lambda: block_causal_mask(cu, total))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=hq != hkv)
        else:  # long rows: sum(L_i^2) work instead of T^2, and no (T, T) mask
            bounds = cu.tolist()
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(
                        q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=scale, enable_gqa=hq != hkv
                    )
                    for a, b in zip(bounds[:-1], bounds[1:])
                    if b > a
                ],
                dim=2,
            )
    else:
        raise ValueError(f"unknown varlen attention backend {name!r}")
    return out[0].transpose(0, 1)


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
            collator; without them the offsets are derived from ``position_ids`` ``(1, T)``.
            With ``subtree_end`` (a prefix-tree batch) the call goes to
            :func:`sftdata_train.tree_attention.sftdata_tree_attention_forward`.

    Returns:
        ``((B, T, Hq, D) output, None)``.
    """
    if kwargs.get("subtree_end") is not None:  # a prefix-tree batch: ancestor-or-self attention
        from .tree_attention import sftdata_tree_attention_forward

        return sftdata_tree_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, sliding_window=sliding_window,
            **kwargs,
        )
    if dropout:
        raise ValueError("attention dropout is not supported on the padding-free path")
    if sliding_window is not None:
        raise ValueError("sliding-window attention is not supported on the padding-free path")
    if attention_mask is not None:
        raise ValueError(f"{ATTN_NAME} is for padding-free batches; padded batches must use attn 'sdpa'")
    # Under autocast the q/k norms may hand us fp32: run the kernel in the autocast dtype.
    dtype = query.dtype
    dev = query.device.type
    if torch.is_autocast_enabled(dev):
        dtype = torch.get_autocast_dtype(dev)
    query, key, value = (t.to(dtype) for t in (query, key, value))
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
        else:
            cu = cu_seq_lens_from_position_ids(position_ids)
        max_len = None
    if max_len is None:
        max_len = int((cu[1:] - cu[:-1]).max().item())
    out = varlen_causal_attention(
        query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
        cu, int(max_len), scale=scaling,
    )
    return out.unsqueeze(0), None


def register() -> str:
    """Register :data:`ATTN_NAME` with transformers (idempotent); returns the name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, sftdata_varlen_attention_forward)
    return ATTN_NAME


register()
