"""HF ``Trainer`` with ``sftdata_train``'s SFT loss: no ``(tokens, vocab)`` logits at all.

``PaddingFreeCollator(trained_logits_only=True)`` already keeps transformers' own loss to the
``K`` positions that predict a trained token, but that loss still holds ``(K, vocab)`` fp32
logits, their log-softmax and their gradient (1.6 GB each for a tau-bench tree with 2,688
trained tokens and Qwen3's 151,669-token vocabulary; ``bench/tree_memory.py`` measures it). :class:`SFTLossTrainer` computes the loss the way
``sftdata-train`` does (:class:`sftdata_train.loss.SFTLossModel`: the trained hidden states are
selected before the LM head, head and cross-entropy run in chunks of ``loss_chunk_size`` rows
with their gradients), so at most one ``(loss_chunk_size, vocab)`` block exists at a time::

    import sftdata_train.model.tree_attention  # registers "sftdata_tree"
    from sftdata import PaddingFreeCollator
    from sftdata_train.hf_trainer import SFTLossTrainer

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sftdata_tree")
    trainer = SFTLossTrainer(model=model, args=args, train_dataset=tree_rows,
                             data_collator=PaddingFreeCollator())

The loss is the same as transformers' (``sum`` of the cross-entropy over the trained tokens
divided by the ``num_items_in_batch`` the ``Trainer`` counts from ``shift_labels``, or by the
batch's own count when it passes none), so logging, gradient accumulation and schedules behave
as with the plain ``Trainer``. One process only: a model the ``Trainer`` wrapped (DDP, FSDP,
DeepSpeed) is refused, because the loss calls the unwrapped model's modules directly.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from .loss import SFTLossModel

__all__ = ["SFTLossTrainer"]


class SFTLossTrainer(Trainer):
    """``transformers.Trainer`` whose ``compute_loss`` is :class:`sftdata_train.loss.SFTLossModel`.

    Args:
        loss_chunk_size: rows of the LM head + cross-entropy computed at once (default 1024:
            ``1024 * vocab * 4`` bytes of fp32 logits at a time).
        *args, **kwargs: those of ``transformers.Trainer``.

    Batches: those of :class:`sftdata.collate.collators.PaddingFreeCollator` (linear, packed or tree rows)
    or :class:`sftdata.collate.collators.PaddingCollator`, **without** ``trained_logits_only`` (this loss
    selects the trained positions itself and reads ``(1, T)`` ``shift_labels``).

    Raises (from ``compute_loss``):
        ValueError: a batch collated with ``trained_logits_only=True``; a wrapped model
            (several processes / DeepSpeed).
    """

    def __init__(self, *args: Any, loss_chunk_size: int = 1024, **kwargs: Any) -> None:
        if loss_chunk_size < 1:
            raise ValueError("loss_chunk_size must be >= 1")
        self.loss_chunk_size = int(loss_chunk_size)
        super().__init__(*args, **kwargs)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """The SFT loss of one micro-batch divided by ``num_items_in_batch`` (the trained tokens of the
        whole step, as transformers' ``Trainer`` counts them), else by the batch's own trained tokens.

        Raises:
            ValueError: a batch made with ``trained_logits_only=True`` (``logits_to_keep``), or a model
                wrapped for several processes."""
        if "logits_to_keep" in inputs:
            raise ValueError("SFTLossTrainer takes PaddingFreeCollator() batches, not trained_logits_only=True "
                             "(its loss selects the trained positions itself)")
        unwrapped = self.accelerator.unwrap_model(model)
        if unwrapped is not model:
            raise ValueError(f"SFTLossTrainer runs one process; the model is wrapped in {type(model).__name__} "
                             "(use sftdata-train for several GPUs)")
        batch = {k: v for k, v in inputs.items() if k not in ("use_cache", "num_items_in_batch")}
        loss_sum, n = SFTLossModel(unwrapped, chunk_size=self.loss_chunk_size)(**batch)
        denom = num_items_in_batch if num_items_in_batch is not None else n
        if isinstance(denom, torch.Tensor):
            denom = denom.to(loss_sum.device)
        loss = loss_sum / denom
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss (1 here)
        return (loss, {"loss": loss}) if return_outputs else loss
