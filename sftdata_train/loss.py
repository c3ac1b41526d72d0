r"""The SFT loss: next-token cross-entropy on the trained positions only.

Definition (transformers' ``ForCausalLMLoss`` with ``num_items_in_batch`` counted over the whole
step, as its ``Trainer`` does since 4.46; TRL's ``SFTTrainer`` with ``assistant_only_loss``): for a
step made of micro-batches :math:`b` on ranks :math:`r`, with token ids :math:`x` and labels :math:`y`
(``y_t = -100`` on untrained positions, HF's unshifted convention: position ``t`` predicts
``y_{t+1}``),

.. math::

    \mathcal{L} = \frac{1}{N}\sum_{r,b}\ \sum_{t:\ y_{t+1}\neq -100} -\log p_\theta(y_{t+1}\mid x_{\le t}),
    \qquad N = \sum_{r,b} \lvert\{t : y_{t+1} \neq -100\}\rvert .

:math:`N` counts the trained tokens of the whole optimizer step (all micro-batches of the
gradient accumulation and all data-parallel ranks); it is *not* a mean of per-micro-batch
means, which would weight the tokens of short micro-batches more.

Memory: the hidden states of the trained positions are selected *before* the LM head, then
the head and the cross-entropy run in chunks of ``chunk_size`` rows inside one autograd
function that also computes the gradients chunk by chunk (no logits recomputation). So at
most one ``(chunk_size, vocab)`` fp32 logits block exists at a time, never ``(tokens, vocab)``.
The head's weight gradient is accumulated in place into **one** ``(vocab, hidden)`` buffer
(fp32; matmul temporaries are bounded by :data:`WEIGHT_GRAD_SLICE_BYTES`, never
``vocab x hidden`` per chunk), which backward hands to autograd as the weight's gradient
without a copy when the weight is fp32 (the fp32 master weight under ``bf16-mixed``): it *is*
the parameter's ``.grad``, which exists for the rest of the backward pass in any case.

Labels: HF's unshifted ``labels`` (position ``t`` predicts ``labels[t+1]``), or ``shift_labels``
``(B, T)``: the target each position predicts, ``-100`` = none (the ``shift_labels`` convention
of transformers' ``ForCausalLMLoss``), for layouts where the next token of a position is not the
next position (e.g. trees of sequences sharing a prefix).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from sftdata.masking.tree_arrays import IGNORE_INDEX, shift_linear  # the one definition (-100, Hugging Face's ignore_index)


#: Upper bound, in bytes, of the matmul temporaries used to accumulate the head's weight gradient
#: when the matmuls run in a lower precision than the fp32 accumulator.
WEIGHT_GRAD_SLICE_BYTES = 64 * 2**20


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` targets of each position: ``labels[:, t+1]``, and ``-100`` at the last position.

    The rule is :func:`sftdata.masking.tree_arrays.shift_labels` (``shift[parent[i]] = labels[i]``) for
    linear rows, where the parent of position ``i`` is ``i - 1``, applied to a whole ``(B, T)``
    batch on its device (no host round trip in the loss); ``tests/train/test_train_rules.py`` checks
    that both give the same targets on random rows. Tree rows come with their ``shift_labels``
    from the collator (computed by sftdata's function).
    """
    return shift_linear(labels)


_shift = shift_labels  # sft_loss_sum has a keyword argument of the same name


def targets_of(labels: torch.Tensor | None = None, shift_labels: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` int64 target of each position: ``shift_labels`` when given, else shifted ``labels``.

    Raises:
        ValueError: neither is given, or the shapes differ.
    """
    if shift_labels is not None:
        if labels is not None and labels.shape != shift_labels.shape:
            raise ValueError(f"shift_labels {tuple(shift_labels.shape)} and labels {tuple(labels.shape)} differ in shape")
        return shift_labels
    if labels is None:
        raise ValueError("labels or shift_labels is required")
    return _shift(labels)


def count_trained_tokens(labels: torch.Tensor | None = None, shift_labels: torch.Tensor | None = None) -> int:
    """Number of positions trained by a batch: ``shift_labels != -100``, else ``labels[..., 1:] != -100``."""
    if shift_labels is not None:
        return int((shift_labels != IGNORE_INDEX).sum())
    return int((labels[..., 1:] != IGNORE_INDEX).sum())


def cross_entropy_sum_reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Textbook reference: sum of ``-log softmax(logits)[target]`` over positions with a trained target.

    Args:
        logits: ``(B, T, V)`` (any float dtype; computed in fp32).
        labels: ``(B, T)`` int64, unshifted HF convention.

    Returns:
        fp32 scalar: the summed negative log-likelihood in nats (divide by
        :func:`count_trained_tokens` for the mean).
    """
    targets = shift_labels(labels)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def _accumulate_weight_grad(grad_w: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> None:
    """``grad_w += g.T @ h`` in place; ``g`` ``(c, V)``, ``h`` ``(c, H)``, ``grad_w`` ``(V, H)``.

    Same dtype: one ``addmm_`` into the buffer. Lower-precision ``g``/``h`` (bf16 matmuls into an
    fp32 accumulator): vocab slices whose product is at most :data:`WEIGHT_GRAD_SLICE_BYTES`.
    """
    if g.dtype == grad_w.dtype:
        grad_w.addmm_(g.t(), h)
        return
    rows = max(1, WEIGHT_GRAD_SLICE_BYTES // max(1, h.shape[1] * g.element_size()))
    for v0 in range(0, grad_w.shape[0], rows):
        grad_w[v0 : v0 + rows].add_(g[:, v0 : v0 + rows].t() @ h)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T + bias, target_i), gradients computed chunk by chunk in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, compute_dtype):  # type: ignore[override]
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        n = hidden.shape[0]
        acc = torch.promote_types(weight.dtype, torch.float32)  # fp32 (fp64 for fp64 weights)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute_dtype)  # one cast for the whole head (a no-op when already there)
            b = bias.to(compute_dtype) if bias is not None else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
            grad_b = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_b else None
            for start in range(0, n, chunk_size):
                h = hidden[start : start + chunk_size].to(compute_dtype)
                t = targets[start : start + chunk_size]
                logits = F.linear(h, w, b).float()  # (c, V) fp32
                lse = torch.logsumexp(logits, dim=-1)
                loss += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                # d(sum CE)/d logits = softmax - onehot, computed in place over the logits block
                g = logits.sub_(lse[:, None]).exp_()
                g[torch.arange(g.shape[0], device=g.device), t] -= 1.0
                if need_b:
                    grad_b += g.sum(0)
                g = g.to(compute_dtype)
                if need_h:
                    grad_h[start : start + chunk_size] = g @ w
                if need_w:
                    _accumulate_weight_grad(grad_w, g, h)
                del logits, g
            del w, b
        ctx.grads = (grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):  # type: ignore[override]
        if ctx.grads is None:
            raise RuntimeError("the chunked LM-head cross-entropy cannot be back-propagated twice")
        grad_h, grad_w, grad_b = ctx.grads
        ctx.grads = None  # the buffers become the gradients: free them with the graph
        w_dtype, b_dtype = ctx.dtypes
        # in place: no second (vocab, hidden) buffer
        out_h = grad_h.mul_(grad_loss.to(grad_h.dtype)) if grad_h is not None else None
        out_w = grad_w.mul_(grad_loss).to(w_dtype) if grad_w is not None else None
        out_b = grad_b.mul_(grad_loss).to(b_dtype) if grad_b is not None else None
        return out_h, out_w, out_b, None, None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of an LM head applied to selected hidden states, in chunks.

    Args:
        hidden: ``(N, H)`` hidden states of the trained positions only.
        weight: ``(V, H)`` LM head weight (``lm_head.weight``, uncast: the gradient comes back
            in its dtype); ``bias``: optional ``(V,)``.
        targets: ``(N,)`` int64 token ids in ``[0, V)``.
        chunk_size: rows per chunk; peak extra memory is about ``2 * chunk_size * V * 4`` bytes
            plus one ``(V, H)`` fp32 gradient buffer (when the weight needs a gradient) and,
            when ``compute_dtype`` differs from the weight's, one ``(V, H)`` cast of the weight
            during the forward.
        compute_dtype: dtype of the matmuls (default: ``hidden.dtype``); softmax and log-sum-exp
            are fp32.

    Returns:
        fp32 scalar: ``sum_i -log softmax(hidden_i @ weight.T + bias)[targets_i]`` in nats.
        Differentiable w.r.t. ``hidden``, ``weight`` and ``bias`` (once: the gradients are
        computed in the forward pass).
    """
    dtype = compute_dtype or hidden.dtype
    if hidden.shape[0] == 0:
        return (hidden.sum() * 0.0 + weight.sum() * 0.0).float()  # keeps the graph connected
    grad_needed = torch.is_grad_enabled() and (
        hidden.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not grad_needed:
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            for start in range(0, hidden.shape[0], chunk_size):
                logits = F.linear(hidden[start : start + chunk_size].to(dtype), w, b).float()
                loss += F.cross_entropy(logits, targets[start : start + chunk_size], reduction="sum")
        return loss
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, int(chunk_size), dtype)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


def sft_loss_sum(
    hidden_states: torch.Tensor,
    labels: torch.Tensor | None,
    lm_head: nn.Module,
    *,
    chunk_size: int = 1024,
    shift_labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token CE over the trained positions, from the base model's hidden states.

    Args:
        hidden_states: ``(B, T, H)`` last hidden states (after the final norm).
        labels: ``(B, T)`` int64, HF unshifted convention (``-100`` = not trained); may be None
            when ``shift_labels`` is given.
        lm_head: the model's output projection (``nn.Linear(H, V)``).
        shift_labels: optional ``(B, T)`` int64 target *of each position* (``-100`` = none), used
            instead of shifting ``labels`` (transformers' ``ForCausalLMLoss`` convention; tree
            batches, where a branch's first token is predicted from its parent, not from the
            previous position). The trained-token count is taken from it.

    Returns:
        ``(loss_sum, n_trained)``: fp32 scalar sum of NLL in nats, int64 scalar count of trained
        positions. The SFT loss of a step is ``sum(loss_sum) / sum(n_trained)`` over all its
        micro-batches and ranks.

    Raises:
        ValueError: neither ``labels`` nor ``shift_labels``, or their shapes differ.
    """
    targets = targets_of(labels, shift_labels)
    keep = targets != IGNORE_INDEX
    selected = hidden_states[keep]  # (N, H): rows gathered before the head
    tgt = targets[keep]
    bias = getattr(lm_head, "bias", None)
    loss = linear_cross_entropy_sum(
        selected, lm_head.weight, tgt, bias=bias, chunk_size=chunk_size, compute_dtype=_compute_dtype(selected)
    )
    return loss, keep.sum()


ATTENTION_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "subtree_end")


class SFTLossModel(nn.Module):
    """Wraps a HF causal LM so that ``forward(batch)`` returns ``(loss_sum, n_trained)``.

    The hidden states come from the base model (``model.model`` for Qwen3/Llama, generally
    ``getattr(model, model.base_model_prefix)``); the LM head (``model.get_output_embeddings()``)
    is applied by :func:`sft_loss_sum` to the trained rows only. Being the module that runs the
    whole computation, it is also the FSDP2 root, so that the LM head's (possibly tied) weight
    is gathered during its forward.

    For padding-free rows on :data:`sftdata_train.model.attention.ATTN_NAME` it builds the attention
    plan (:func:`sftdata_train.model.attention.plan_forward`) once per forward, before the decoder
    layers run. Attributes set by the trainer: ``compiled`` (the decoder layers are compiled)
    and ``attn_dtype`` (the dtype attention runs in; default: the autocast or parameter dtype).
    """

    def __init__(self, model: nn.Module, *, chunk_size: int = 1024) -> None:
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.compiled = False
        self.attn_dtype: torch.dtype | None = None

    @property
    def base(self) -> nn.Module:
        """The decoder of the wrapped causal LM (``model.<base_model_prefix>``), which returns hidden states."""
        return getattr(self.model, self.model.base_model_prefix)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: the collator's batch (``input_ids``/``labels``/``position_ids`` ``(B, T)`` int64,
        ``attention_mask`` ``(B, T)`` for padded batches, varlen kwargs for padding-free ones,
        optionally ``shift_labels`` ``(B, T)`` int64, see :func:`sft_loss_sum`; ``subtree_end``
        ``(1, T)`` for tree batches).

        Returns ``(loss_sum, n_trained)`` as in :func:`sft_loss_sum`.
        """
        attn_kwargs = {k: kwargs[k] for k in ATTENTION_KWARGS if kwargs.get(k) is not None}
        if "subtree_end" in attn_kwargs:  # tree batch: build its mask once for all layers
            from .model.tree_attention import plan_for_batch

            attn_kwargs.update(plan_for_batch(
                attn_kwargs["subtree_end"], cu_seq_lens=attn_kwargs.get("cu_seq_lens_q"), device=input_ids.device,
                needs_grad=torch.is_grad_enabled(),
            ))
        else:
            attn_kwargs.update(self._attention_plan(input_ids, position_ids, attention_mask, attn_kwargs))
        out = self.base(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            **attn_kwargs,
        )
        return sft_loss_sum(
            out.last_hidden_state, labels, self.model.get_output_embeddings(), chunk_size=self.chunk_size,
            shift_labels=shift_labels,
        )

    def _attention_plan(self, input_ids, position_ids, attention_mask, attn_kwargs) -> dict[str, Any]:
        from .model import attention

        if (
            getattr(self.model.config, "_attn_implementation", None) != attention.ATTN_NAME
            or attention_mask is not None
            or input_ids.shape[0] != 1
        ):
            return {}
        total = input_ids.shape[1]
        extra: dict[str, Any] = {}
        cu = attn_kwargs.get("cu_seq_lens_q")
        if cu is None:  # derive the offsets here, once, rather than in every layer
            if position_ids is not None:
                cu = attention.cu_seq_lens_from_position_ids(position_ids)
            else:
                cu = torch.tensor([0, total], dtype=torch.int32, device=input_ids.device)
            longest = int((cu[1:] - cu[:-1]).max())
            extra = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
        dtype = self.attn_dtype
        if dtype is None:
            dev = input_ids.device.type
            dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.base.dtype
        plan = attention.plan_forward(
            cu, total, device=input_ids.device, dtype=dtype, compiled=self.compiled, needs_grad=torch.is_grad_enabled()
        )
        return {**extra, **plan}
