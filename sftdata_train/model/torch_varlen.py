"""Calling PyTorch's ``torch.nn.attention.varlen.varlen_attn`` the way the installed release accepts.

The function changed its signature from one release to the next (``torch/nn/attention/varlen.py``):

=========  =====================================================================================
release    keyword arguments after ``(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)``
=========  =====================================================================================
2.10       ``is_causal=False, return_aux=None``
2.11       keyword-only ``return_aux=None, scale=None, window_size=(-1, -1)``; causal is
           ``window_size=(-1, 0)``
2.12       adds ``enable_gqa=False`` (without it, ``Hq != Hkv`` is an error)
2.13       adds ``seqused_k``, ``block_table``, ``num_splits`` (inference only)
=========  =====================================================================================

Choosing the backend because the module imports is not enough (the 2.11 call crashed on
``enable_gqa``), so :func:`probe` reads ``inspect.signature`` once and :func:`call` passes only
what the signature accepts:

* causal: ``window_size=(-1, 0)`` when accepted, else ``is_causal=True``; with neither the
  function cannot do causal attention and :attr:`VarlenSpec.usable` is False (``auto`` then
  falls through to flash-attn, flex or sdpa);
* scale: ``scale=`` when accepted; otherwise a non-default scale is folded into the query
  (``q * scale * sqrt(D)``: the kernel multiplies by ``D ** -0.5``);
* GQA: ``enable_gqa=True`` when accepted; otherwise K/V heads are repeated to ``Hq``.

Everything here runs outside any compiled region except :func:`call`, which takes the probed
:class:`VarlenSpec` as a constant.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class VarlenSpec:
    """How to call the installed ``varlen_attn``.

    Attributes:
        available: the function imports.
        causal: ``"window_size"``, ``"is_causal"`` or None (no causal form: not usable).
        scale: it accepts ``scale=``.
        gqa: it accepts ``enable_gqa=``.
        signature: the probed signature as text (for messages), or why it is unavailable.
    """

    available: bool
    causal: str | None = None
    scale: bool = False
    gqa: bool = False
    signature: str = ""

    @property
    def usable(self) -> bool:
        """Whether causal padding-free attention can be run with it."""
        return self.available and self.causal is not None

    def describe(self) -> str:
        """One line: whether ``varlen_attn`` is usable and how it is called (causal form, GQA)."""
        if not self.available:
            return f"torch varlen_attn unavailable ({self.signature})"
        if self.causal is None:
            return f"torch varlen_attn has no causal form: varlen_attn{self.signature}"
        gqa = "enable_gqa" if self.gqa else "K/V repeated for GQA"
        scale = "scale=" if self.scale else "scale folded into q"
        return f"torch varlen_attn: causal via {self.causal}, {scale}, {gqa}"


def probe(fn: Callable | None) -> VarlenSpec:
    """:class:`VarlenSpec` of ``fn`` (a ``varlen_attn``), from its ``inspect.signature``."""
    if fn is None:
        return VarlenSpec(False, signature="torch.nn.attention.varlen does not import")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:  # a builtin without a signature: do not guess
        return VarlenSpec(False, signature=f"no inspectable signature: {e}")
    params = sig.parameters
    if "window_size" in params:
        causal: str | None = "window_size"
    elif "is_causal" in params:
        causal = "is_causal"
    else:
        causal = None
    return VarlenSpec(True, causal=causal, scale="scale" in params, gqa="enable_gqa" in params, signature=str(sig))


def load() -> Callable | None:
    """``torch.nn.attention.varlen.varlen_attn`` or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except Exception:  # noqa: BLE001 - any import failure means "not there"
        return None
    return varlen_attn


@functools.lru_cache(None)
def spec() -> VarlenSpec:
    """The probed spec of the installed function (cached; ``spec.cache_clear()`` after patching it)."""
    return probe(load())


def call(
    fn: Callable,
    spec_: VarlenSpec,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    max_length: int,
    scale: float | None,
) -> torch.Tensor:
    """Causal attention within each sequence through ``fn`` called as ``spec_`` says.

    Args:
        query: ``(T, Hq, D)``; key, value: ``(T, Hkv, D)`` (contiguous, bf16/fp16 on CUDA).
        cu_seq_lens: ``(n+1,)`` int32 offsets; max_length: the longest sequence, in tokens.
        scale: softmax scale (None: ``D ** -0.5``).

    Returns:
        ``(T, Hq, D)``.

    Raises:
        ValueError: ``spec_`` has no causal form (check :attr:`VarlenSpec.usable` first).
    """
    if spec_.causal is None:
        raise ValueError(spec_.describe())
    hq, hkv, d = query.shape[1], key.shape[1], query.shape[2]
    kwargs: dict[str, Any] = {}
    if spec_.causal == "window_size":
        kwargs["window_size"] = (-1, 0)
    else:
        kwargs["is_causal"] = True
    if scale is not None:
        if spec_.scale:
            kwargs["scale"] = scale
        elif scale != d**-0.5:
            query = query * (scale * d**0.5)  # the kernel applies D ** -0.5
    if hq != hkv:
        if spec_.gqa:
            kwargs["enable_gqa"] = True
        else:
            key = key.repeat_interleave(hq // hkv, dim=1)
            value = value.repeat_interleave(hq // hkv, dim=1)
    return fn(query, key, value, cu_seq_lens, cu_seq_lens, max_length, max_length, **kwargs)
