"""``torch.compile`` of the decoder layers: one compiled region per layer, dynamic token counts.

``--compile auto`` (the default) compiles on CUDA and not on a CPU (where inductor's build time
dominates the tiny test models). What is compiled is each decoder layer's ``forward``; the
module's hooks (FSDP2's all-gather/reduce-scatter, the dynamic-shape marks below) and the
activation-checkpoint wrapper stay outside, in eager mode, and so do the embeddings, the
attention plan (:func:`sftdata_train.model.attention.plan_forward`: masks, offsets, the resolved
backend) and the chunked LM-head loss, which need host syncs and Python control flow.

Token counts change from step to step (padding-free rows). A forward pre-hook marks the token
dimension of the layer inputs dynamic (``torch._dynamo.maybe_mark_dynamic``) before the compiled
call, so the first compilation is already shape-generic instead of being specialised on the
first row's length and recompiled. ``tests/train/model/test_train_compile.py`` compiles the layers with
``fullgraph=True`` (any graph break, e.g. an ``.item()``, is an error) and checks that rows of
several lengths do not recompile.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

#: Dimension holding the token count, per keyword argument of a decoder layer's forward.
TOKEN_DIMS: dict[str, tuple[int, ...]] = {
    "hidden_states": (1,),
    "position_ids": (1,),
    "cu_seq_lens_q": (0,),
    "cu_seq_lens_k": (0,),
    "sftdata_attn_mask": (2, 3),
}


def resolve_compile(mode: str | bool, device: torch.device) -> bool:
    """``auto`` -> compile on CUDA only; ``on``/``off`` (or booleans) as given."""
    if isinstance(mode, bool):
        return mode
    if mode == "auto":
        return device.type == "cuda"
    if mode in ("on", "off"):
        return mode == "on"
    raise ValueError(f"compile must be auto, on or off, got {mode!r}")


def _mark(t: Any, dims: tuple[int, ...]) -> None:
    if isinstance(t, torch.Tensor):
        for d in dims:
            if d < t.dim():
                torch._dynamo.maybe_mark_dynamic(t, d)


def _mark_token_dims(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: mark the token dimension of the layer's inputs dynamic."""
    if args:
        _mark(args[0], (1,))
    for name, dims in TOKEN_DIMS.items():
        _mark(kwargs.get(name), dims)
    pe = kwargs.get("position_embeddings")
    if isinstance(pe, (tuple, list)):
        for t in pe:
            _mark(t, (1,))
    return None


def compile_layers(
    layers: Iterable[nn.Module],
    *,
    backend: str = "inductor",
    fullgraph: bool = False,
    dynamic: bool | None = None,
    mark_dynamic: bool = True,
) -> int:
    """Replace each layer's ``forward`` by ``torch.compile(forward, ...)``; returns the number compiled.

    Args:
        layers: the decoder layers (``sftdata_train.distributed.decoder_layers``).
        backend, fullgraph, dynamic: passed to ``torch.compile``.
        mark_dynamic: register a forward pre-hook that marks the token dimension dynamic.
    """
    n = 0
    for layer in layers:
        layer.forward = torch.compile(layer.forward, backend=backend, fullgraph=fullgraph, dynamic=dynamic)
        if mark_dynamic:
            layer.register_forward_pre_hook(_mark_token_dims, with_kwargs=True)
        n += 1
    return n
