"""Tree rows the way HF ``Trainer`` / a plain loop trains them: ``model(**batch).loss``.

The documented path (``attn_implementation="sftdata_tree"``, ``PaddingFreeCollator(
trained_logits_only=True)``) must give exactly what the dense-mask path gives
(``PaddingCollator(dense_tree_mask=True)`` through transformers' ``sdpa``, a ``(T, T)`` bool
mask per row): the same logits at every trained position, the same loss and the same
gradients, fp32, on a tiny Qwen3 built from a config. Also through the per-run SDPA path that
long rows take (no ``(T, T)`` mask at all). Memory is measured in ``bench/tree_memory.py``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator, num_trained_tokens
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata.masking.tree import IGNORE_INDEX
from sftdata_train.model import attention
from sftdata_train.model import tree_attention  # noqa: F401  (registers sftdata_tree)

VOCAB = 96
REL = 1e-5


def make_model():
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      initializer_range=0.1, pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).train()


MODEL = None


def model_():
    global MODEL
    if MODEL is None:
        MODEL = make_model()
    return MODEL


def forward(model, batch, attn):
    """(logits, loss, {name: grad}) of ``model(**batch)`` with attention ``attn``."""
    model.set_attn_implementation(attn)
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), out.loss.detach(), {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def assert_close(a, b, what):
    scale = max(float(b.abs().max()), 1e-6)
    assert float((a - b).abs().max()) / scale < REL, what


def has_tree(rows):
    return any(r.get("parent") for r in rows)


def trained(rows):
    # a batch with no trained token has no loss to compare (transformers' mean over nothing is NaN)
    return any(x != IGNORE_INDEX for r in rows for x in r["labels"][1:])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(tree_rows(vocab=VOCAB), linear_rows(vocab=VOCAB)), min_size=1, max_size=4),
       st.sampled_from([None, 2]))
def test_trained_logits_path_equals_dense_mask_path(rows, dense_max):
    """Same logits at the trained positions, loss and gradients as the dense (T, T) mask path;
    ``dense_max=2`` sends every row of more than 2 tokens through the per-run SDPA path."""
    if not (has_tree(rows) and trained(rows)):
        return
    model = model_()
    dense_batch = PaddingCollator(0, dense_tree_mask=True)(rows)
    d_logits, d_loss, d_grads = forward(model, dense_batch, "sdpa")
    batch = PaddingFreeCollator(trained_logits_only=True)(rows)
    saved = attention.DENSE_MASK_MAX_TOKENS
    try:
        if dense_max is not None:
            attention.DENSE_MASK_MAX_TOKENS = dense_max
        logits, loss, grads = forward(model, batch, "sftdata_tree")
    finally:
        attention.DENSE_MASK_MAX_TOKENS = saved
    keep = dense_batch["shift_labels"] != IGNORE_INDEX  # (B, T): row by row, as the flat row is laid out
    assert logits.shape == (int(keep.sum()), VOCAB)
    assert batch["shift_labels"][0].tolist() == dense_batch["shift_labels"][keep].tolist()
    assert_close(logits, d_logits[keep], "logits at the trained positions")
    assert abs(float(loss) - float(d_loss)) / abs(float(d_loss)) < REL
    for k in d_grads:
        assert_close(grads[k], d_grads[k], f"grad {k}")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(tree_rows(vocab=VOCAB), linear_rows(vocab=VOCAB)), min_size=1, max_size=4))
def test_trained_logits_only_keeps_every_target(rows):
    """``logits_to_keep`` marks exactly the positions with a target, ``shift_labels`` lists those
    targets in order; everything else in the batch is what the plain collator gives."""
    plain = PaddingFreeCollator()(rows)
    batch = PaddingFreeCollator(trained_logits_only=True)(rows)
    labels = plain["labels"][0]
    full = plain.get("shift_labels", torch.cat([labels[1:], torch.tensor([IGNORE_INDEX])]).view(1, -1))[0]
    keep = batch["logits_to_keep"][0]
    assert keep.dtype == torch.bool and keep.tolist() == (full != IGNORE_INDEX).tolist()
    assert batch["shift_labels"][0].tolist() == full[keep].tolist()
    assert num_trained_tokens(batch) == num_trained_tokens(plain) == int(keep.sum())
    for k, v in plain.items():
        if k != "shift_labels":
            assert (v == batch[k]).all() if isinstance(v, torch.Tensor) else v == batch[k], k


def test_linear_batch_loss_unchanged():
    """A packed linear batch: the loss through ``trained_logits_only`` is the full-logits loss."""
    rows = [{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}, {"input_ids": [9, 10, 11], "labels": [9, 10, 11]}]
    model = model_()
    _, full, g_full = forward(model, PaddingFreeCollator()(rows), "sftdata_varlen")
    logits, kept, g_kept = forward(model, PaddingFreeCollator(trained_logits_only=True)(rows), "sftdata_varlen")
    assert logits.shape == (4, VOCAB)  # 7, 8 of row 0; 10, 11 of row 1 (9 is a sequence start)
    assert abs(float(kept) - float(full)) / float(full) < REL
    for k in g_full:
        assert_close(g_kept[k], g_full[k], f"grad {k}")


def test_padding_collator_refuses_trees_without_opt_in():
    row = {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, -100, -100, 5, 6],
           "parent": [-1, 0, 1, 2, 1, 4], "position_ids": [0, 1, 2, 3, 2, 3]}
    with pytest.raises(ValueError, match=r"row 1 is a prefix tree.*PaddingFreeCollator.*dense_tree_mask=True"):
        PaddingCollator(0)([{"input_ids": [7, 8], "labels": [7, 8]}, row])
    # the trainer dropped `parent`: the depths in position_ids still say it is a tree
    with pytest.raises(ValueError, match="row 0 is a prefix tree"):
        PaddingCollator(0)([{k: v for k, v in row.items() if k != "parent"}])
    batch = PaddingCollator(0, dense_tree_mask=True)([row])
    assert batch["attention_mask"].shape == (1, 1, 6, 6)
    # linear rows are unaffected by the option
    lin = [{"input_ids": [7, 8], "labels": [7, 8]}]
    a, b = PaddingCollator(0)(lin), PaddingCollator(0, dense_tree_mask=True)(lin)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


# ----------------------------------------------------------------------------- SFTLossTrainer
def _trainer(model, tmp_path, collator, rows, cls=None, **kw):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[],
                             save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True, seed=0,
                             learning_rate=1e-3, **kw)
    return (cls or Trainer)(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=collator)


TREE_ROWS = [
    {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, -100, 4, 5, 6], "parent": [-1, 0, 1, 2, 1, 4],
     "position_ids": [0, 1, 2, 3, 2, 3]},
    {"input_ids": [7, 8, 9, 10, 11], "labels": [-100, -100, 9, 10, 11], "parent": [-1, 0, 1, 0, 3],
     "position_ids": [0, 1, 2, 1, 2]},
    {"input_ids": [12, 13, 14], "labels": [-100, 13, 14], "parent": [], "position_ids": []},
    {"input_ids": [15, 16, 17, 18], "labels": [-100, 16, -100, 18], "parent": [-1, 0, 1, 1],
     "position_ids": [0, 1, 2, 2]},
]


def test_sft_loss_trainer_equals_trainer_with_trained_logits(tmp_path):
    """SFTLossTrainer's compute_loss (chunked, no logits tensor) gives transformers' loss and
    gradients on the same tree batch; a batch made for transformers' loss is refused."""
    from sftdata_train.hf_trainer import SFTLossTrainer

    model = make_model()
    model.set_attn_implementation("sftdata_tree")
    ours = _trainer(model, tmp_path, PaddingFreeCollator(), TREE_ROWS, SFTLossTrainer)
    ours.loss_chunk_size = 3  # several chunks over the batch's trained tokens
    batch = PaddingFreeCollator()(TREE_ROWS)
    hf_batch = PaddingFreeCollator(trained_logits_only=True)(TREE_ROWS)
    n = torch.tensor(num_trained_tokens(batch))
    for num_items in (None, n, n + 3):
        model.zero_grad(set_to_none=True)
        loss = ours.compute_loss(model, dict(batch), num_items_in_batch=num_items)
        loss.backward()
        g = {k: p.grad.clone() for k, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        ref = model(**hf_batch, **({} if num_items is None else {"num_items_in_batch": num_items})).loss
        ref.backward()
        assert abs(float(loss.detach()) - float(ref.detach())) / float(ref.detach()) < REL
        for k, p in model.named_parameters():
            assert_close(g[k], p.grad, f"grad {k}")
    with pytest.raises(ValueError, match="trained_logits_only"):
        ours.compute_loss(model, dict(hf_batch))


def test_sft_loss_trainer_trains_like_trainer(tmp_path):
    """Two optimizer steps through Trainer.train: the same logged losses and final weights as the
    plain Trainer with trained_logits_only (same seed, same batches)."""
    from sftdata_train.hf_trainer import SFTLossTrainer

    runs = {}
    for name, cls, col in (("hf", None, PaddingFreeCollator(trained_logits_only=True)),
                           ("ours", SFTLossTrainer, PaddingFreeCollator())):
        model = make_model()
        model.set_attn_implementation("sftdata_tree")
        tr = _trainer(model, tmp_path / name, col, TREE_ROWS, cls, optim="sgd")  # Adam would amplify 1e-9 noise
        tr.train()
        losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
        runs[name] = (losses, {k: p.detach().clone() for k, p in model.named_parameters()})
    (l_hf, w_hf), (l_ours, w_ours) = runs["hf"], runs["ours"]
    assert len(l_hf) == len(l_ours) == 2
    for a, b in zip(l_ours, l_hf):
        assert abs(float(a) - float(b)) / abs(float(b)) < 1e-4  # Trainer logs rounded figures
    for k in w_hf:
        assert_close(w_ours[k], w_hf[k], f"weight {k}")
