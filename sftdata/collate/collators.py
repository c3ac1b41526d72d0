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
  ``attention_mask``. ``tests/collate/test_equivalence.py`` checks both on tiny Qwen3/Llama models.

Prefix-tree rows (``parent``/``position_ids`` = depth, see docs/trees.md) are accepted by
:class:`PaddingFreeCollator`, alone, packed or mixed with linear rows: a batch holding a tree
carries ``subtree_end`` and ``shift_labels`` (memory linear in the tokens), and with
``trained_logits_only=True`` the ``logits_to_keep`` that keeps a model's own loss from making
``(T, vocab)`` logits (for HF ``Trainer`` and plain loops). :class:`PaddingCollator` takes
them only when asked for a dense ``(B, 1, T, T)`` bool ``attention_mask``
(``dense_tree_mask=True``; ``B * T * T`` bytes). A batch without a tree is exactly what it was
before trees existed.

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

from .collate_rows import as_int64, ids_and_labels, round_up, row_seq_lengths, row_tree, seq_lengths_from_position_ids
from ..masking.tree import depths, shift_labels
from ..masking.tree_arrays import IGNORE_INDEX
from .tree_collate import dense_tree_mask as _dense_tree_mask
from .tree_collate import tree_arrays, unit_lengths

__all__ = [
    "IGNORE_INDEX",
    "PaddingCollator",
    "PaddingFreeCollator",
    "num_trained_tokens",
    "seq_lengths_from_position_ids",
]


def num_trained_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Trained tokens of a collated batch (an ``int``): ``shift_labels != IGNORE_INDEX`` when the
    batch has them (tree batches), else ``labels[..., 1:] != IGNORE_INDEX``.

    The batch form of :func:`sftdata.masking.tree_arrays.count_trained` (the one definition): the
    padding-free collator sets the first label of every sequence to ``IGNORE_INDEX``, so both
    count the rows' labels ``!= IGNORE_INDEX`` that some position predicts.
    """
    if batch.get("shift_labels") is not None:
        return int((batch["shift_labels"] != IGNORE_INDEX).sum())
    return int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())


class PaddingCollator:
    """Right-padded ``(B, T)`` batches (never left padding for training).

    Args:
        pad_token_id: id written at padding positions of ``input_ids``.
        pad_to_multiple_of: round ``T`` up to a multiple of this (tensor-core friendly shapes).
        label_pad_id: label at padding positions (``-100``: ignored by the loss).
        max_length: keep only the first ``max_length`` tokens of longer rows (``None``: keep all).
        dense_tree_mask: accept tree rows and give them a dense ``(B, 1, T, T)`` mask (opt-in,
            see below; default ``False``: a tree row is an error).

    Returns (``__call__``), all ``torch.int64`` of shape ``(B, T)`` with ``T`` the longest row
    (after ``max_length``) rounded up to ``pad_to_multiple_of``:

    * ``input_ids``: tokens, ``pad_token_id`` after each row's end;
    * ``attention_mask``: 1 on tokens, 0 on padding;
    * ``labels``: the row's labels, ``label_pad_id`` on padding;
    * ``position_ids``: ``0..T-1`` on every row.

    Packed rows (several sequences per row) are refused: in a padded batch the attention mask
    would let them attend to each other. Use :class:`PaddingFreeCollator` for those.

    Tree rows (``parent`` non-empty, or tree depths in ``position_ids``) are refused unless
    ``dense_tree_mask=True``: a padded batch can only carry a tree as a dense mask, which costs
    ``B * T * T`` bytes (a 16k-token tree: 256 MiB per row, before the attention copies it).
    For trees use :class:`PaddingFreeCollator` with ``attn_implementation="sftdata_tree"``,
    whose memory grows with the tokens. With ``dense_tree_mask=True`` (for a consumer that
    needs a mask tensor, e.g. short trees through transformers' ``sdpa``), a batch holding a
    tree gets as ``attention_mask`` a dense ``(B, 1, T, T)`` bool mask (True where query ``q``
    may attend key ``k``: ``k`` is an ancestor of ``q`` or ``q`` itself; a padding query sees
    only itself), ``position_ids`` are the depths (``0..n-1`` on linear rows), the ``labels``
    of every root are ``-100``, and ``shift_labels`` ``(B, T)`` int64 gives the target of
    each position (``-100`` none). transformers passes a 4-D mask to the attention function
    as is: this works with ``attn_implementation="sdpa"`` (which takes a bool mask), **not**
    with ``eager`` (which adds the mask to the scores). ``max_length`` keeps the first tokens
    in DFS order, which is still a valid tree.

    Raises:
        ValueError: a packed row; a tree row without ``dense_tree_mask=True`` (naming the row
            and the fix); malformed ``parent``/``position_ids``/``labels``.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        pad_to_multiple_of: int | None = None,
        label_pad_id: int = IGNORE_INDEX,
        max_length: int | None = None,
        dense_tree_mask: bool = False,
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
        self.dense_tree_mask = bool(dense_tree_mask)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("empty batch")
        ids_list, lab_list, par_list = [], [], []
        for i, row in enumerate(features):
            ids, labels = ids_and_labels(row)
            par = row_tree(row, ids.size, i)
            if par is not None and not self.dense_tree_mask:
                raise ValueError(
                    f"row {i} is a prefix tree: a padded batch would need a dense (T, T) mask per row "
                    "(B*T*T bytes); use PaddingFreeCollator with attn_implementation='sftdata_tree', "
                    "or PaddingCollator(dense_tree_mask=True) for short trees"
                )
            n_seqs = row_seq_lengths(row, ids.size, use_position_ids=par is None).size
            if n_seqs > 1:
                raise ValueError(
                    f"row {i} is a packed row ({n_seqs} sequences): a padded batch "
                    "would let its sequences attend to each other; use PaddingFreeCollator"
                )
            if self.max_length is not None:
                ids, labels = ids[: self.max_length], labels[: self.max_length]
                par = par[: self.max_length] if par is not None else None
            ids_list.append(ids)
            lab_list.append(labels)
            par_list.append(par)
        lens = np.fromiter((x.size for x in ids_list), dtype=np.int64, count=len(ids_list))
        B, T = lens.size, round_up(int(lens.max()), self.pad_to_multiple_of)
        mask = np.arange(T)[None, :] < lens[:, None]
        input_ids = np.full((B, T), self.pad_token_id, dtype=np.int64)
        labels = np.full((B, T), self.label_pad_id, dtype=np.int64)
        input_ids[mask] = np.concatenate(ids_list)
        labels[mask] = np.concatenate(lab_list)
        if any(p is not None for p in par_list):
            return self._tree_batch(input_ids, labels, lens, par_list)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask.astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.arange(T, dtype=torch.int64).expand(B, T).contiguous(),
        }


    def _tree_batch(self, input_ids: np.ndarray, labels: np.ndarray, lens: np.ndarray,
                    parents: list[np.ndarray | None]) -> dict[str, torch.Tensor]:
        """A padded batch holding tree rows: dense (B, 1, T, T) mask, depths, shift_labels."""
        B, T = input_ids.shape
        mask = np.zeros((B, 1, T, T), dtype=bool)
        position_ids = np.tile(np.arange(T, dtype=np.int64), (B, 1))
        shift = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
        for b, (n, par) in enumerate(zip(lens.tolist(), parents)):
            if par is None:
                par = np.arange(n, dtype=np.int64) - 1
                par[:1] = -1
            labels[b, :n][par < 0] = IGNORE_INDEX
            mask[b, 0] = _dense_tree_mask(par, T)
            position_ids[b, :n] = depths(par)
            try:
                shift[b, :n] = shift_labels(input_ids[b, :n], labels[b, :n], par)
            except ValueError as e:
                raise ValueError(f"row {b}: {e}") from None
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(position_ids),
            "shift_labels": torch.from_numpy(shift),
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
        trained_logits_only: for a model whose own forward computes the loss (HF ``Trainer``, a
            plain loop calling ``model(**batch).loss``): also return ``logits_to_keep``, so the
            LM head and transformers' loss see only the ``K`` positions that predict a trained
            token, and ``shift_labels`` of those positions only. Without it transformers makes
            ``(T, vocab)`` fp32 logits (and as much again in the loss and its gradient):
            ``T * vocab * 4`` bytes each, 9.5 GB for a 15.6k-token row with Qwen3's vocabulary.
            The loss is the same sum over the same targets; ``model(**batch).logits`` is then
            ``(K, vocab)``. Leave it off for ``sftdata_train`` (its loss selects the trained
            positions itself and reads ``(1, T)`` ``shift_labels``).

    Returns (``__call__``), with ``T`` the total tokens (plus padding) and ``n`` the number of
    sequences (plus one padding segment if any):

    * ``input_ids``: ``(1, T)`` int64;
    * ``labels``: ``(1, T)`` int64, the first label of every sequence set to ``-100``;
    * ``position_ids``: ``(1, T)`` int64, ``0, 1, ...`` restarting at every sequence;
    * ``cu_seq_lens_q``, ``cu_seq_lens_k``: ``(n + 1,)`` int32 cumulative sequence lengths
      (``[0, l0, l0+l1, ..., T]``; the same tensor);
    * ``max_length_q``, ``max_length_k``: python ``int``, the longest sequence;
    * ``seq_idx``: ``(1, T)`` int32 sequence number of each token (``return_seq_idx``);
    * ``use_cache``: ``False`` (``disable_cache``);
    * ``logits_to_keep``: ``(1, T)`` bool, True at the ``K`` positions whose target is not
      ``-100``, and ``shift_labels``: ``(1, K)`` int64, their targets in order
      (``trained_logits_only``; linear and tree batches alike).

    Rows may be single sequences or packed rows (``seq_lengths``; if absent, sequence starts
    are read from ``position_ids``); every sequence of every row becomes one segment.

    Tree rows (``parent`` non-empty, or, when a trainer dropped ``parent``, ``position_ids``
    that are tree depths rather than ``0, 1, ...`` ramps), alone, packed or mixed with linear
    rows: each tree (each packed unit, or each root of a prepared row) is one segment of
    ``cu_seq_lens``, and the batch also carries

    * ``subtree_end``: ``(1, T)`` int32, the global exclusive end of each token's subtree: query
      ``q`` may attend key ``k`` iff ``k <= q < subtree_end[k]`` (linear sequences: the end of
      the sequence; padding: the end of the row);
    * ``shift_labels``: ``(1, T)`` int64, the target predicted at each position (``-100``
      none): ``shift_labels[parent[i]] = labels[i]``, so the first token of a branch is
      predicted from its parent and nothing is predicted across a sequence boundary;
    * ``position_ids``: the depths (what RoPE sees: each token's position in its own sequence);
    * ``labels``: ``-100`` at every root (the first token of every sequence).

    A batch without a tree is unchanged (no ``subtree_end``/``shift_labels``). The attention
    must read ``subtree_end`` (``sftdata_train``'s ``sftdata_varlen``/``sftdata_tree``);
    transformers' own implementations ignore it and would attend across branches.
    ``sftdata_tree`` never builds a ``(T, T)`` mask for a row over
    ``sftdata_train.model.attention.DENSE_MASK_MAX_TOKENS`` tokens (one SDPA call per run of the
    tree on CPU, a block-sparse flex ``BlockMask`` on CUDA), so with ``trained_logits_only``
    the memory of a forward grows with ``T`` and ``K``, not ``T**2`` or ``T * vocab``
    (``bench/tree_memory.py``). For HF ``Trainer``/a plain loop::

        import sftdata_train.model.tree_attention  # registers "sftdata_tree"
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sftdata_tree")
        collator = PaddingFreeCollator(trained_logits_only=True)
    """

    def __init__(
        self,
        *,
        return_seq_idx: bool = False,
        pad_to_multiple_of: int | None = None,
        pad_token_id: int = 0,
        disable_cache: bool = True,
        return_flash_kwargs: bool = True,
        trained_logits_only: bool = False,
    ) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError("pad_to_multiple_of must be >= 1")
        self.trained_logits_only = bool(trained_logits_only)
        self.return_seq_idx = return_seq_idx
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_token_id = int(pad_token_id)
        self.disable_cache = disable_cache
        self.return_flash_kwargs = return_flash_kwargs

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("empty batch")
        ids_list, lab_list, len_list, par_list = [], [], [], []
        for i, row in enumerate(features):
            ids, labels = ids_and_labels(row)
            par = row_tree(row, ids.size, i)
            ids_list.append(ids)
            lab_list.append(labels)
            par_list.append(par)
            if par is None:
                len_list.append(row_seq_lengths(row, ids.size))
            else:
                lens = row.get("seq_lengths")
                len_list.append(unit_lengths(par, None if lens is None else as_int64(lens), i))
        input_ids = np.concatenate(ids_list)
        labels = np.concatenate(lab_list)  # a fresh array: safe to edit
        seq_lens = np.concatenate(len_list)
        total = int(input_ids.size)
        pad = round_up(total, self.pad_to_multiple_of) - total
        if pad:
            input_ids = np.concatenate([input_ids, np.full(pad, self.pad_token_id, dtype=np.int64)])
            labels = np.concatenate([labels, np.full(pad, IGNORE_INDEX, dtype=np.int64)])
            seq_lens = np.append(seq_lens, pad)
        if seq_lens.size == 0:
            raise ValueError("batch has no tokens")
        tree = None
        if any(p is not None for p in par_list):
            tree = tree_arrays(input_ids, labels, seq_lens, par_list, [x.size for x in ids_list])
            position_ids = tree["position_ids"]
        else:
            starts = np.cumsum(seq_lens) - seq_lens
            labels[starts] = IGNORE_INDEX
            position_ids = np.arange(input_ids.size, dtype=np.int64) - np.repeat(starts, seq_lens)
        out: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids).view(1, -1),
            "labels": torch.from_numpy(labels).view(1, -1),
            "position_ids": torch.from_numpy(position_ids).view(1, -1),
        }
        if tree is not None:
            out["subtree_end"] = torch.from_numpy(tree["subtree_end"].astype(np.int32)).view(1, -1)
            out["shift_labels"] = torch.from_numpy(tree["shift_labels"]).view(1, -1)
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
        if self.trained_logits_only:
            if tree is not None:
                target = tree["shift_labels"]
            else:  # labels are -100 at every sequence start: nothing is predicted across a boundary
                target = np.append(labels[1:], IGNORE_INDEX)
            keep = target != IGNORE_INDEX
            out["logits_to_keep"] = torch.from_numpy(keep).view(1, -1)
            out["shift_labels"] = torch.from_numpy(np.ascontiguousarray(target[keep])).view(1, -1)
        return out
