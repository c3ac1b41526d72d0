"""Where the sequences of a padding-free row are, and the masks that keep them apart.

A padding-free row ``(1, T)`` holds several sequences back to back; ``(n+1,)`` int32 offsets
``cu_seq_lens`` say where each starts. From them: each token's sequence index, the dense
``(1, 1, T, T)`` block-diagonal causal mask (SDPA) and the document-causal ``BlockMask``
(``flex_attention``). Used by :mod:`sftdata_train.model.attention` (and re-exported there).
"""

from __future__ import annotations

import torch


def cu_seq_lens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """``(n+1,)`` int32 offsets of the sequences in a ``(1, T)`` ``position_ids`` row.

    A new sequence starts wherever the position does not increase by exactly 1 (as in
    transformers' ``find_packed_sequence_indices``). Host sync (``nonzero``): eager only.
    """
    pos = position_ids.reshape(-1)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[1:] = pos[1:] != pos[:-1] + 1
    idx = torch.nonzero(starts).reshape(-1)
    end = torch.tensor([pos.numel()], device=pos.device, dtype=idx.dtype)
    return torch.cat([idx, end]).to(torch.int32)


def sequence_ids(cu_seq_lens: torch.Tensor, total: int) -> torch.Tensor:
    """``(total,)`` int64 index of the sequence each token belongs to, from ``(n+1,)`` offsets.

    Positions not covered by the offsets (``cu[-1] < total``) form one more sequence. Built with
    ``searchsorted`` (no data-dependent shapes).
    """
    pos = torch.arange(total, device=cu_seq_lens.device, dtype=cu_seq_lens.dtype)
    return torch.searchsorted(cu_seq_lens[1:].contiguous(), pos, right=True).long()


def block_causal_mask(cu_seq_lens: torch.Tensor, total: int) -> torch.Tensor:
    """``(1, 1, T, T)`` bool mask, True where query i may attend key j (same sequence, j <= i)."""
    seq = sequence_ids(cu_seq_lens, total)
    idx = torch.arange(total, device=seq.device)
    mask = (seq[:, None] == seq[None, :]) & (idx[None, :] <= idx[:, None])
    return mask[None, None]


def flex_block_mask(cu_seq_lens: torch.Tensor, total: int):
    """Document-causal ``BlockMask`` for ``flex_attention`` (eager: call outside compiled regions)."""
    from torch.nn.attention.flex_attention import create_block_mask

    seq = sequence_ids(cu_seq_lens, total)

    def document_causal(b, h, q_idx, kv_idx):
        return (seq[q_idx] == seq[kv_idx]) & (kv_idx <= q_idx)

    return create_block_mask(document_causal, None, None, total, total, device=seq.device)


__all__ = ["block_causal_mask", "cu_seq_lens_from_position_ids", "flex_block_mask", "sequence_ids"]
