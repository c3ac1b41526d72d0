"""Collators: a list of rows → a dict of torch tensors with the names transformers reads.

Both collators take rows with ``input_ids`` and ``labels`` (python lists, numpy arrays or
torch tensors; ``labels`` unshifted, ``-100`` = not trained; if ``labels`` is missing the
row is trained on every token) and work on flat numpy arrays (no per-token Python).

* :class:`PaddingCollator` — ``(B, T)`` right-padded batches with ``attention_mask``.
* :class:`PaddingFreeCollator` — one ``(1, total_tokens)`` row, ``position_ids`` restarting
  at every sequence and the varlen-attention kwargs ``cu_seq_lens_q/k``,
  ``max_length_q/k`` (and optionally ``seq_idx``). Packed rows from ``sftdata pack`` (with
  ``seq_lengths``, or just ``position_ids`` when a trainer dropped the other columns) give
  the same batch as their sequences given one by one.

How transformers (5.x) keeps packed sequences apart:

* flash-attention paths (``flash_attention_2/3``, kernels) run ``flash_attn_varlen_func``
  with ``cu_seq_lens_q/k`` and ``max_length_q/k`` when all four are passed; otherwise they
  derive them from ``position_ids`` (``_is_packed_sequence``);
* the mask-based paths (``sdpa``, ``eager``, ``flex_attention``: every CPU run) build a
  block-diagonal causal mask from ``position_ids`` (``find_packed_sequence_indices``), but
  **only if** ``attention_mask is None`` and ``past_key_values is None``. A model whose
  config has ``use_cache=True`` (the default of most configs) creates a ``DynamicCache`` in
  its forward when called without ``use_cache=False`` — and then attends across sequences.
  So the padding-free batch carries ``use_cache=False`` (``disable_cache=True``) and never an
  ``attention_mask``. ``tests/test_equivalence.py`` checks both on tiny Qwen3/Llama models.

Label convention: labels are unshifted; the model's loss compares ``logits[:, i]`` with
``labels[:, i + 1]``. In a flattened batch the first token of sequence ``k + 1`` would be
"predicted" from the last token of sequence ``k``, so the padding-free collator sets the
first label of every sequence to ``-100`` (that label is never trained in a padded batch
either). Loss and gradients are then the same as for the padded batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100

__all__ = [
    "IGNORE_INDEX",
    "PaddingCollator",
    "PaddingFreeCollator",
    "num_trained_tokens",
    "seq_lengths_from_position_ids",
]


def _arr(x: Any) -> np.ndarray:
    """A 1-D int64 numpy view/copy of a list, numpy array or tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)
    return np.asarray(x, dtype=np.int64).reshape(-1)


def _round_up(n: int, multiple: int | None) -> int:
    if not multiple:
        return n
    return -(-n // multiple) * multiple


def seq_lengths_from_position_ids(position_ids) -> np.ndarray:
    """Sequence lengths of one packed row from its ``position_ids`` (a new sequence starts at each 0).

    Args:
        position_ids: ``(T,)`` ints, ``0, 1, ...`` restarting at 0 for each sequence.

    Returns:
        ``int64 (n_seqs,)``.
    """
    pos = _arr(position_ids)
    if pos.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(pos == 0)
    if starts.size == 0 or starts[0] != 0:
        raise ValueError("position_ids of a packed row must start at 0")
    return np.diff(np.append(starts, pos.size))


def _row_seq_lengths(row: Mapping, n_tokens: int, *, use_position_ids: bool = True) -> np.ndarray:
    """Sequence lengths of a row: ``seq_lengths``, else ``position_ids`` restarts, else one sequence.

    Empty ``position_ids``/``parent`` (a prepared single-path row) mean one sequence; a row with
    a non-empty ``parent`` is a prefix-tree row (see ``docs/trees.md``), refused here."""
    parent = row.get("parent")
    if parent is not None and len(parent):
        raise ValueError(
            "a prefix-tree row (non-empty 'parent') cannot be collated as linear sequences; "
            "prepare with layout='linear' (--layout linear)"
        )
    if row.get("seq_lengths") is not None:
        lens = _arr(row["seq_lengths"])
    elif use_position_ids and row.get("position_ids") is not None and len(row["position_ids"]):
        lens = seq_lengths_from_position_ids(row["position_ids"])
    else:
        return np.array([n_tokens], dtype=np.int64) if n_tokens else np.zeros(0, dtype=np.int64)
    if int(lens.sum()) != n_tokens or (lens.size and lens.min() < 1):
        raise ValueError(f"seq_lengths {lens.tolist()} do not add up to the row's {n_tokens} tokens")
    return lens


def _ids_and_labels(row: Mapping) -> tuple[np.ndarray, np.ndarray]:
    ids = _arr(row["input_ids"])
    labels = _arr(row["labels"]) if row.get("labels") is not None else ids.copy()
    if labels.size != ids.size:
        raise ValueError(f"labels has {labels.size} entries but input_ids has {ids.size}")
    return ids, labels


def num_trained_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens that contribute to the loss of a collated batch: ``labels[..., 1:] != -100``."""
    return int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())


class PaddingCollator:
    """Right-padded ``(B, T)`` batches (never left padding for training).

    Args:
        pad_token_id: id written at padding positions of ``input_ids``.
        pad_to_multiple_of: round ``T`` up to a multiple of this (tensor-core friendly shapes).
        label_pad_id: label at padding positions (``-100``: ignored by the loss).
        max_length: keep only the first ``max_length`` tokens of longer rows (``None``: keep all).

    Returns (``__call__``), all ``torch.int64`` of shape ``(B, T)`` with ``T`` the longest row
    (after ``max_length``) rounded up to ``pad_to_multiple_of``:

    * ``input_ids``: tokens, ``pad_token_id`` after each row's end;
    * ``attention_mask``: 1 on tokens, 0 on padding;
    * ``labels``: the row's labels, ``label_pad_id`` on padding;
    * ``position_ids``: ``0..T-1`` on every row.

    Packed rows (several sequences per row) are refused: in a padded batch the attention mask
    would let them attend to each other. Use :class:`PaddingFreeCollator` for those.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        pad_to_multiple_of: int | None = None,
        label_pad_id: int = IGNORE_INDEX,
        max_length: int | None = None,
    ) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is required (use the tokenizer's pad or eos id)")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError("pad_to_multiple_of must be >= 1")
        if max_length is not None and max_length < 1:
            raise ValueError("max_length must be >= 1")
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.label_pad_id = int(label_pad_id)
        self.max_length = max_length

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("empty batch")
        ids_list, lab_list = [], []
        for i, row in enumerate(features):
            ids, labels = _ids_and_labels(row)
            if _row_seq_lengths(row, ids.size).size > 1:
                raise ValueError(
                    f"row {i} is a packed row ({_row_seq_lengths(row, ids.size).size} sequences): a padded batch "
                    "would let its sequences attend to each other; use PaddingFreeCollator"
                )
            if self.max_length is not None:
                ids, labels = ids[: self.max_length], labels[: self.max_length]
            ids_list.append(ids)
            lab_list.append(labels)
        lens = np.fromiter((x.size for x in ids_list), dtype=np.int64, count=len(ids_list))
        B, T = lens.size, _round_up(int(lens.max()), self.pad_to_multiple_of)
        mask = np.arange(T)[None, :] < lens[:, None]
        input_ids = np.full((B, T), self.pad_token_id, dtype=np.int64)
        labels = np.full((B, T), self.label_pad_id, dtype=np.int64)
        input_ids[mask] = np.concatenate(ids_list)
        labels[mask] = np.concatenate(lab_list)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.arange(T, dtype=torch.int64).expand(B, T).contiguous(),
        }


class PaddingFreeCollator:
    """All sequences of a batch flattened into one ``(1, total_tokens)`` row.

    Args:
        return_seq_idx: also return ``seq_idx`` (for linear-attention / hybrid models whose
            short convolutions must restart at each sequence).
        pad_to_multiple_of: pad the flat row to a multiple of this many tokens. The padding is
            one extra segment (``pad_token_id``, labels ``-100``, ``position_ids`` ``0..p-1``) with
            its own entry in ``cu_seq_lens`` (varlen kernels must cover every token).
        pad_token_id: id of padding tokens (only used with ``pad_to_multiple_of``).
        disable_cache: add ``use_cache=False`` to the batch (see the module docstring: with a
            cache, transformers' sdpa/eager paths ignore the sequence boundaries).
        return_flash_kwargs: return ``cu_seq_lens_q/k`` and ``max_length_q/k``.

    Returns (``__call__``), with ``T`` the total tokens (plus padding) and ``n`` the number of
    sequences (plus one padding segment if any):

    * ``input_ids``: ``(1, T)`` int64;
    * ``labels``: ``(1, T)`` int64, the first label of every sequence set to ``-100``;
    * ``position_ids``: ``(1, T)`` int64, ``0, 1, ...`` restarting at every sequence;
    * ``cu_seq_lens_q``, ``cu_seq_lens_k``: ``(n + 1,)`` int32 cumulative sequence lengths
      (``[0, l0, l0+l1, ..., T]``; the same tensor);
    * ``max_length_q``, ``max_length_k``: python ``int``, the longest sequence;
    * ``seq_idx``: ``(1, T)`` int32 sequence number of each token (``return_seq_idx``);
    * ``use_cache``: ``False`` (``disable_cache``).

    Rows may be single sequences or packed rows (``seq_lengths``; if absent, sequence starts
    are read from ``position_ids``); every sequence of every row becomes one segment.
    """

    def __init__(
        self,
        *,
        return_seq_idx: bool = False,
        pad_to_multiple_of: int | None = None,
        pad_token_id: int = 0,
        disable_cache: bool = True,
        return_flash_kwargs: bool = True,
    ) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError("pad_to_multiple_of must be >= 1")
        self.return_seq_idx = return_seq_idx
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_token_id = int(pad_token_id)
        self.disable_cache = disable_cache
        self.return_flash_kwargs = return_flash_kwargs

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("empty batch")
        ids_list, lab_list, len_list = [], [], []
        for row in features:
            ids, labels = _ids_and_labels(row)
            ids_list.append(ids)
            lab_list.append(labels)
            len_list.append(_row_seq_lengths(row, ids.size))
        input_ids = np.concatenate(ids_list)
        labels = np.concatenate(lab_list)  # a fresh array: safe to edit
        seq_lens = np.concatenate(len_list)
        total = int(input_ids.size)
        pad = _round_up(total, self.pad_to_multiple_of) - total
        if pad:
            input_ids = np.concatenate([input_ids, np.full(pad, self.pad_token_id, dtype=np.int64)])
            labels = np.concatenate([labels, np.full(pad, IGNORE_INDEX, dtype=np.int64)])
            seq_lens = np.append(seq_lens, pad)
        if seq_lens.size == 0:
            raise ValueError("batch has no tokens")
        starts = np.cumsum(seq_lens) - seq_lens
        labels[starts] = IGNORE_INDEX
        position_ids = np.arange(input_ids.size, dtype=np.int64) - np.repeat(starts, seq_lens)
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids).view(1, -1),
            "labels": torch.from_numpy(labels).view(1, -1),
            "position_ids": torch.from_numpy(position_ids).view(1, -1),
        }
        if self.return_flash_kwargs:
            cu = np.zeros(seq_lens.size + 1, dtype=np.int32)
            np.cumsum(seq_lens, out=cu[1:])
            cu_t = torch.from_numpy(cu)
            longest = int(seq_lens.max())
            out.update(cu_seq_lens_q=cu_t, cu_seq_lens_k=cu_t, max_length_q=longest, max_length_k=longest)
        if self.return_seq_idx:
            seq_idx = np.repeat(np.arange(seq_lens.size, dtype=np.int32), seq_lens)
            out["seq_idx"] = torch.from_numpy(seq_idx).view(1, -1)
        if self.disable_cache:
            out["use_cache"] = False
        return out
