"""Tree attention for prefix-tree batches, registered with transformers' ``AttentionInterface``.

A tree batch (``sftdata.collate.collators.PaddingFreeCollator`` on tree rows, see docs/trees.md) is one
row ``(1, T)`` plus ``subtree_end`` ``(1, T)`` int32: query ``q`` attends key ``k`` iff ``k``
is an ancestor of ``q`` or ``q`` itself, i.e. ``k <= q < subtree_end[k]`` (DFS order; the
same rule separates packed linear sequences). Each shared prefix is computed once, and every
token sees exactly the context it has in its own linear sequence, so loss and gradients
equal those of the linear layout (Tree Training, arXiv 2511.00413).

Backends (per call, :func:`resolve_tree_backend`):

* ``flex``: ``flex_attention`` with ``mask_mod = (kv <= q) & (subtree_end[kv] > q)``; the
  ``BlockMask`` is built once per batch from ``subtree_end`` block by block (no ``(T, T)``
  mask, :func:`flex_tree_block_mask`) and shared by all layers (block-sparse: blocks no
  query of which sees any key are skipped, so the cost follows the tree), compiled on CUDA;
* ``sdpa``: ``scaled_dot_product_attention`` with a dense ``(1, 1, T, T)`` bool mask for rows
  up to :data:`attention.DENSE_MASK_MAX_TOKENS` tokens; longer rows run one call per *run* (a
  chain of tokens without a branch: the trunk, each branch, each linear sequence) whose keys
  are the run's ancestors plus the run itself (causal), so the cost is what the tree
  attends, ``sum(depth + 1)`` query-key pairs, not ``T^2``. The CPU path and what the tests
  use (flex has no CPU backward).

``auto``/``varlen``/``flash_attn`` mean flex on CUDA (varlen kernels cannot express a tree),
sdpa elsewhere. Causal by construction, GQA via ``enable_gqa``; attention dropout, sliding
windows and an ``attention_mask`` are refused as on the varlen path.

``sftdata_tree`` (:data:`TREE_ATTN_NAME`) handles batches without ``subtree_end`` with the
varlen path, and ``sftdata_varlen`` hands batches with ``subtree_end`` to this one, so either
name trains linear, packed and tree batches. transformers forwards the batch's extra keys
(``subtree_end``, ``cu_seq_lens_q``...) from ``model(**batch)`` through the decoder layers to
this function untouched, and builds no mask of its own for a registered name that the
attention-mask interface does not know (``attention_mask`` reaches us as ``None``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F

from sftdata.masking.tree_arrays import tree_visibility

from . import attention

TREE_ATTN_NAME = "sftdata_tree"
#: batch keys the tree path reads (passed from the collator's batch to the attention function)
TREE_KWARGS = ("subtree_end",)
#: a precomputed per-batch mask (see :func:`tree_plan`), passed down instead of rebuilt per layer
PLAN_KEY = "sftdata_tree_mask"


def resolve_tree_backend(device: torch.device, needs_grad: bool, requested: str | None = None) -> str:
    """``flex`` or ``sdpa`` for a tree batch on ``device`` (``requested`` default: the varlen backend)."""
    name = requested or attention.get_backend()
    if name == "sdpa":
        return "sdpa"
    if device.type == "cuda" and attention.has_flex():
        return "flex"
    if name == "flex" and not needs_grad and attention.has_flex():
        return "flex"  # CPU forward only: flex_attention has no CPU backward
    return "sdpa"


# ----------------------------------------------------------------------------- masks
def dense_tree_mask(subtree_end: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """``(1, 1, n, n)`` bool mask of tokens ``[start, stop)``: True where ``k <= q < subtree_end[k]``.

    ``subtree_end`` is global (``(T,)`` integer tensor, any device); the range must be a union of
    whole units. The rule is the one of :func:`sftdata.collate.tree_collate.dense_tree_mask` (which takes
    the ``parent`` array and computes ``subtree_end`` with :func:`sftdata.masking.tree_arrays.subtree_end`),
    here on the device from the ``subtree_end`` the collator already made;
    ``tests/train/test_train_rules.py`` checks that both give the same mask on random trees.
    """
    end = subtree_end.reshape(-1)[start:stop].to(torch.int64) - start
    return tree_visibility(end)[None, None]


def flex_tree_block_mask(subtree_end: torch.Tensor, block_size: int = 128):
    """``BlockMask`` of the tree rule over ``(T,)`` ``subtree_end``, built block by block.

    No ``(T, T)`` mask is made (``create_block_mask`` would evaluate the rule on every pair):
    the keys ``k`` of a key block ``[k0, k1)`` are seen by the queries ``[k0, max end[k])`` (each
    ``[k, end[k])`` contains ``k``, so their union has no gap), and by every query of a query
    block ``[q0, q1)`` iff ``k1 - 1 <= q0`` and ``q1 <= min end[k]`` (a full block: no mask there).
    Memory: ``O(T + (T / block_size)^2)``; the ``mask_mod`` decides inside partial blocks.
    """
    from torch.nn.attention.flex_attention import BlockMask

    end = subtree_end.reshape(-1).to(torch.int32)
    total = end.numel()
    nb = max(-(-total // block_size), 1)
    e = end.to(torch.int64)
    pad = nb * block_size - total
    max_end = F.pad(e, (0, pad), value=-1).view(nb, block_size).amax(1)
    min_end = F.pad(e, (0, pad), value=total + 1).view(nb, block_size).amin(1)
    start = torch.arange(nb, device=end.device, dtype=torch.int64) * block_size
    stop = torch.clamp(start + block_size, max=total)  # q1 of each query block, k1 of each key block
    q0, q1 = start[:, None], stop[:, None]
    seen = (q0 < max_end[None, :]) & (q1 > start[None, :])  # (query block, key block): some pair allowed
    full = (stop[None, :] - 1 <= q0) & (q1 <= min_end[None, :])  # every pair allowed
    partial = seen & ~full

    def ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = blocks.sum(-1, dtype=torch.int32)
        idx = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return counts[None, None], idx[None, None]

    def ancestor_or_self(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (end[kv_idx] > q_idx)

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block_size,
                                    mask_mod=ancestor_or_self, seq_lengths=(total, total))


def run_plan(subtree_end: torch.Tensor) -> list[tuple[int, int, torch.Tensor | None]]:
    """``(start, stop, ancestors)`` of every run (maximal chain) of a tree batch, from
    ``subtree_end`` alone: ``i`` starts a run unless ``i - 1`` is its parent, i.e. unless
    ``subtree_end[i - 1] > i``; the ancestors of a run are the ``k < start`` with
    ``subtree_end[k] > start`` (``None`` for a root run: plain causal attention)."""
    end = subtree_end.reshape(-1).to("cpu", torch.int64)
    n = end.numel()
    idx = torch.arange(1, n)
    starts = [0] + (torch.nonzero(end[:-1] <= idx).reshape(-1) + 1).tolist()
    stops = starts[1:] + [n]
    out = []
    for a, b in zip(starts, stops):
        anc = torch.nonzero(end[:a] > a).reshape(-1)
        out.append((a, b, anc if anc.numel() else None))
    return out


def tree_plan(subtree_end: torch.Tensor, *, cu_seq_lens: torch.Tensor | None = None, backend: str,
              total: int | None = None) -> Any:
    """The per-batch mask for ``backend``: a ``BlockMask`` (flex), a ``(1, 1, T, T)`` bool mask
    (sdpa, ``T <= DENSE_MASK_MAX_TOKENS``) or the runs of :func:`run_plan` (sdpa, longer rows).
    ``cu_seq_lens`` is accepted for symmetry with the varlen path (the runs already respect
    unit boundaries)."""
    end = subtree_end.reshape(-1)
    total = int(total if total is not None else end.numel())
    if backend == "flex":
        return flex_tree_block_mask(end)
    if total <= attention.DENSE_MASK_MAX_TOKENS:
        return dense_tree_mask(end)
    runs = run_plan(end)
    return [(a, b, None if anc is None else anc.to(end.device)) for a, b, anc in runs]


class _LastTreeMask:
    """One-entry cache: all layers of one forward get the mask built for the same ``subtree_end``
    tensor (the same object: the batch's tensor passed to every layer; a weak reference, so a
    freed tensor whose memory is reused by the next batch never matches)."""

    def __init__(self) -> None:
        self.ref: weakref.ref | None = None
        self.key: tuple | None = None
        self.value: Any = None

    def get(self, subtree_end: torch.Tensor, backend: str, build):
        key = (backend, subtree_end._version, subtree_end.device)
        if self.ref is not None and self.ref() is subtree_end and self.key == key:
            return self.value
        self.value = build()
        self.ref, self.key = weakref.ref(subtree_end), key
        return self.value


_MASKS = _LastTreeMask()


# ----------------------------------------------------------------------------- the kernel calls
def tree_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    subtree_end: torch.Tensor,
    *,
    cu_seq_lens: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str | None = None,
    mask: Any = None,
) -> torch.Tensor:
    """Ancestor-or-self attention over a flattened tree batch.

    Args:
        query: ``(T, Hq, D)``; key, value: ``(T, Hkv, D)`` with ``Hq % Hkv == 0`` (GQA).
        subtree_end: ``(T,)`` (or ``(1, T)``) int32/int64 global exclusive subtree ends.
        cu_seq_lens: optional ``(n+1,)`` unit offsets (lets sdpa split long rows per unit).
        scale: softmax scale (default ``D ** -0.5``).
        backend: ``flex``/``sdpa`` (default: :func:`resolve_tree_backend`).
        mask: a mask from :func:`tree_plan` for this batch and backend (default: built, or
            taken from the one-entry cache shared by the layers of a forward).

    Returns:
        ``(T, Hq, D)`` in the dtype of ``query``.
    """
    total, hq, _ = query.shape
    hkv = key.shape[1]
    end = subtree_end.reshape(-1).to(query.device)
    if end.numel() != total:
        raise ValueError(f"subtree_end has {end.numel()} entries for {total} tokens")
    needs_grad = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)
    name = backend or resolve_tree_backend(query.device, needs_grad)
    if name not in ("flex", "sdpa"):
        raise ValueError(f"unknown tree attention backend {name!r}; choose flex or sdpa")
    if name == "flex" and not query.is_cuda and needs_grad:
        name = "sdpa"
    if mask is None:
        mask = _MASKS.get(subtree_end, name, lambda: tree_plan(end, cu_seq_lens=cu_seq_lens, backend=name, total=total))
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))  # (1, H, T, D)
    gqa = hq != hkv
    if name == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        fn = attention.compiled_flex() if query.is_cuda else flex_attention
        out = fn(q, k, v, block_mask=mask, scale=scale, enable_gqa=gqa)
    elif isinstance(mask, list):
        out = torch.cat([_run_attention(q, k, v, a, b, anc, scale, gqa) for a, b, anc in mask], dim=2)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.device), scale=scale, enable_gqa=gqa)
    return out[0].transpose(0, 1)


def _run_attention(q, k, v, a: int, b: int, anc: torch.Tensor | None, scale, gqa: bool) -> torch.Tensor:
    """Queries ``[a, b)`` of one run: all its ancestors, then causal within the run."""
    if anc is None:
        return F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=scale,
                                              enable_gqa=gqa)
    anc = anc.to(q.device)
    kk = torch.cat([k.index_select(2, anc), k[:, :, a:b]], dim=2)
    vv = torch.cat([v.index_select(2, anc), v[:, :, a:b]], dim=2)
    r = b - a
    causal = torch.ones(r, r, dtype=torch.bool, device=q.device).tril_()
    mask = torch.cat([torch.ones(r, anc.numel(), dtype=torch.bool, device=q.device), causal], dim=1)
    return F.scaled_dot_product_attention(q[:, :, a:b], kk, vv, attn_mask=mask, scale=scale, enable_gqa=gqa)


def sftdata_tree_attention_forward(
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
    """transformers attention function (``AttentionInterface`` signature) for tree batches.

    Args:
        query: ``(1, Hq, T, D)``; key, value: ``(1, Hkv, T, D)`` (transformers' layout).
        attention_mask: must be None (padding-free batches only).
        kwargs: ``subtree_end`` ``(1, T)`` from the collator (without it: the varlen path,
            :func:`sftdata_train.model.attention.sftdata_varlen_attention_forward`), optionally
            ``cu_seq_lens_q`` and a precomputed ``sftdata_tree_mask`` (:func:`tree_plan`).

    Returns:
        ``((1, T, Hq, D) output, None)``.

    Raises:
        ValueError: attention dropout, a sliding window, an ``attention_mask``, batch size > 1.
    """
    subtree_end = kwargs.get("subtree_end")
    if subtree_end is None:
        return attention.sftdata_varlen_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, sliding_window=sliding_window,
            **kwargs,
        )
    query, key, value = attention.checked_inputs(
        query, key, value, dropout=dropout, sliding_window=sliding_window, attention_mask=attention_mask,
        path="tree attention",
        mask_hint=f"{TREE_ATTN_NAME} is for padding-free tree batches; padded batches carry their own mask",
    )
    if query.shape[0] != 1:
        raise ValueError("a tree batch is one padding-free row (batch size 1)")
    plan = kwargs.get(PLAN_KEY)
    out = tree_attention(
        query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1), subtree_end,
        cu_seq_lens=kwargs.get("cu_seq_lens_q"), scale=scaling,
        backend=None if plan is None else plan[0], mask=None if plan is None else plan[1],
    )
    return out.unsqueeze(0), None


def plan_for_batch(subtree_end: torch.Tensor, *, cu_seq_lens: torch.Tensor | None, device: torch.device,
                   needs_grad: bool) -> dict[str, Any]:
    """``{PLAN_KEY: (backend, mask)}`` built once before the decoder layers run (the trainer's
    forward passes it down, so no layer builds or looks up a mask)."""
    name = resolve_tree_backend(device, needs_grad)
    end = subtree_end.reshape(-1).to(device)
    return {PLAN_KEY: (name, tree_plan(end, cu_seq_lens=cu_seq_lens, backend=name))}


def register() -> str:
    """Register :data:`TREE_ATTN_NAME` with transformers (idempotent); returns the name."""
    from transformers import AttentionInterface

    attention.register()
    AttentionInterface.register(TREE_ATTN_NAME, sftdata_tree_attention_forward)
    return TREE_ATTN_NAME


register()
