"""Activation checkpointing (recomputation), chosen from an estimate of activation memory.

``--activation-checkpointing auto`` (the default) estimates the memory a training step needs
(:func:`step_memory`: activations saved for backward plus the gradients, optimizer state and
LM-head buffers that do not exist yet when the decision is made) and compares it with the free
device memory (or ``--memory-budget-gb``). If everything fits, nothing is recomputed; otherwise
the fewest decoder layers that make it fit are checkpointed (selective, per layer:
:func:`layers_to_checkpoint`); ``on`` checkpoints every layer, ``off`` none. On a CPU without
``--memory-budget-gb`` ``auto`` means off.

The per-token activation count (:func:`layer_activation_bytes`) is the sum of the tensors a
Llama/Qwen3-style decoder layer saves for backward, counted from the autograd graph (PyTorch
saves only what the gradients need; e.g. rotary embeddings save nothing, their ``cos``/``sin``
need no gradient), with element size ``e`` (2 for bf16 compute, 4 for fp32) and a FlashAttention
-style kernel (saves q, k, v, out and an fp32 log-sum-exp per head):

* each RMSNorm over ``d`` features: its fp32 input (a copy when ``e = 2``) ``4d``, the normalised
  tensor in the input dtype ``e d``, and ``4`` bytes of ``rsqrt``;
* the two block norms (``d = hidden``) also hand their output to the projections, which save
  it: ``e d`` more each;
* attention: ``q``, ``k`` (after rotary) and ``v``: ``e (q + 2 kv)``; its output ``e q`` (also
  the ``o_proj`` input); the log-sum-exp ``4 Hq``;
* q/k norms (Qwen3, per head): ``(4 + e)(q + kv) + 4 (Hq + Hkv)``;
* SwiGLU MLP: gate and up outputs, ``silu(gate)``, their product: ``4 e I``.

``tests/train/model/test_train_recompute.py`` checks the formula byte for byte against the tensors saved by
transformers' Qwen3 and Llama layers (fp32 and bf16) and the plan against its definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

MODES = ("auto", "on", "off")
#: Fraction of the budget kept free for what the estimate does not count (allocator
#: fragmentation, cuBLAS/NCCL workspaces, compiled-kernel buffers).
SAFETY_FRACTION = 0.10


@dataclass(frozen=True)
class LayerShape:
    """Sizes of one decoder layer: widths in features, ``qk_norm`` for Qwen3-style per-head norms."""

    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    qk_norm: bool = False

    @classmethod
    def from_model(cls, model: nn.Module) -> "LayerShape":
        """Read the sizes from a HF model's config (``qk_norm`` from the first layer's attention)."""
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        attn = next((m for m in model.modules() if hasattr(m, "q_proj")), None)
        return cls(
            hidden=c.hidden_size, intermediate=c.intermediate_size, n_heads=c.num_attention_heads,
            n_kv_heads=getattr(c, "num_key_value_heads", None) or c.num_attention_heads, head_dim=head_dim,
            qk_norm=attn is not None and hasattr(attn, "q_norm"),
        )


def layer_activation_bytes(shape: LayerShape, tokens: int, elem_bytes: int) -> int:
    """Bytes one decoder layer saves for backward over ``tokens`` tokens (formula in the module doc).

    Args:
        shape: the layer's sizes; tokens: tokens in the micro-batch; elem_bytes: 2 (bf16/fp16
            compute) or 4 (fp32).
    """
    e = elem_bytes
    h, i = shape.hidden, shape.intermediate
    q, kv = shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim
    per_token = 2 * ((4 + 2 * e) * h + 4)  # the two block RMSNorms, their outputs saved by the projections
    per_token += e * (q + 2 * kv) + e * q + 4 * shape.n_heads  # q, k, v, attention output, log-sum-exp
    if shape.qk_norm:
        per_token += (4 + e) * (q + kv) + 4 * (shape.n_heads + shape.n_kv_heads)
    per_token += 4 * e * i  # SwiGLU
    return per_token * tokens


def checkpointed_layer_bytes(shape: LayerShape, tokens: int, elem_bytes: int) -> int:
    """Bytes a checkpointed layer keeps: its input hidden states ``(tokens, hidden)``."""
    return elem_bytes * shape.hidden * tokens


def layers_to_checkpoint(n_layers: int, full: int, ckpt: int, available: int) -> int:
    """Fewest layers to checkpoint so that the activations fit in ``available`` bytes.

    With ``k`` of ``n_layers`` layers checkpointed the activations take
    ``(n_layers - k) * full + k * ckpt``, plus ``full`` while a checkpointed layer is
    recomputed in backward (``k > 0``). Returns 0 when everything fits, ``n_layers`` when even
    that does not fit (the caller warns).
    """
    if n_layers * full <= available:
        return 0
    if full <= ckpt:
        return n_layers
    k = math.ceil(((n_layers + 1) * full - available) / (full - ckpt))
    return max(1, min(n_layers, k))


@dataclass(frozen=True)
class MemoryPlan:
    """The decision and the numbers behind it (bytes)."""

    layers: tuple[int, ...]  # indices of the checkpointed layers
    n_layers: int
    activations: int  # estimated activations without checkpointing
    other: int  # gradients, optimizer state, head buffers, safety margin
    budget: int | None  # free memory or --memory-budget-gb; None: not estimated

    def describe(self) -> str:
        """One phrase: the layers checkpointed and, when estimated, the memory estimate against the budget (GB)."""
        gb = 1e9
        what = f"{len(self.layers)}/{self.n_layers} layers checkpointed"
        if self.budget is None:
            return what
        return (f"{what} (estimated activations {self.activations / gb:.1f} GB + other {self.other / gb:.1f} GB "
                f"vs budget {self.budget / gb:.1f} GB)")


def step_memory(
    shape: LayerShape, *, tokens: int, elem_bytes: int, trainable_params: int, vocab: int, head_trained: bool,
    loss_chunk: int,
) -> int:
    """Bytes of a step that are not decoder-layer activations and are not allocated yet at decision time.

    ``trainable_params`` are this rank's (sharded) trainable parameters: fp32 gradients (4 B)
    and AdamW's two fp32 moments (8 B). Plus the model's outer activations (embedding output,
    final norm, the selected hidden states and their gradient: ``~(12 + 3e) * hidden`` per
    token), two fp32 ``(loss_chunk, vocab)`` logits blocks, and the LM-head weight's fp32
    gradient buffer with a compute-dtype cast of the weight when the head is trained.
    """
    e = elem_bytes
    other = 12 * trainable_params
    other += (12 + 3 * e) * shape.hidden * tokens
    other += 2 * 4 * min(loss_chunk, tokens) * vocab
    if head_trained:
        other += (4 + e) * vocab * shape.hidden
    return other


def plan(
    mode: str, *, n_layers: int, shape: LayerShape, tokens: int, elem_bytes: int, budget: int | None,
    other: int = 0,
) -> MemoryPlan:
    """Which layers to checkpoint for ``mode`` (``auto``/``on``/``off``).

    ``auto`` with ``budget=None`` (no budget known) checkpoints nothing. The budget loses
    :data:`SAFETY_FRACTION` and ``other`` before the activations are compared with it; the
    checkpointed layers are the first ones (their activations would be held the longest).
    """
    if mode not in MODES:
        raise ValueError(f"activation_checkpointing must be one of {MODES}, got {mode!r}")
    full = layer_activation_bytes(shape, tokens, elem_bytes)
    total = n_layers * full
    if mode == "on":
        return MemoryPlan(tuple(range(n_layers)), n_layers, total, other, budget)
    if mode == "off" or budget is None:
        return MemoryPlan((), n_layers, total, other, budget)
    available = int(budget * (1 - SAFETY_FRACTION)) - other
    k = layers_to_checkpoint(n_layers, full, checkpointed_layer_bytes(shape, tokens, elem_bytes), available)
    return MemoryPlan(tuple(range(k)), n_layers, total, other, budget)


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``), None elsewhere."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def checkpoint_layers(layers: Iterable[nn.Module]) -> int:
    """Wrap each layer's ``forward`` in non-reentrant ``torch.utils.checkpoint``; returns the count.

    The module's hooks (FSDP2's) stay outside the checkpoint, so they do not run again when
    backward recomputes the layer; a compiled ``forward`` is recomputed compiled.
    """
    n = 0
    for layer in layers:
        inner = layer.forward

        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        layer.forward = forward
        n += 1
    return n
