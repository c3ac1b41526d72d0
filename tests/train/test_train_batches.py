"""Padded, padding-free and packed batches of the same sequences train identically (fp32).

Also: gradient accumulation normalises by the trained tokens of the whole step (not a mean of
per-micro-batch means), and packed dirs train end to end.
"""

from __future__ import annotations

import pytest
import torch

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator
from sftdata.errors import ConfigError
from sftdata.packing import unpack_row
from sftdata_train.loop.trainer import Trainer, train
from sftdata_train.testing import pack_dir, prepare_dir, synthetic_conversations

STEPS = 4



@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    prepare_dir(synthetic_conversations(60, seed=1), root / "prepared")
    packed = pack_dir(root / "prepared", root / "packed", 256, seed=0)
    return root, packed


def _trainer(root, name, *, padding_free):
    return Trainer(
        dict(data=str(root / "prepared"), output_dir=str(root / name), precision="fp32", lr=3e-3, warmup_steps=0,
             max_steps=STEPS, padding_free=padding_free, progress_bar=False, seed=0, lr_scheduler="constant",
             max_tokens_per_batch=4096, weight_decay=0.1, max_grad_norm=1.0)
    )


def test_padded_padding_free_packed_same_trajectory(dirs):
    root, packed = dirs
    # really packed rows: several sequences each
    rows = [r for r in (packed[i] for i in range(len(packed))) if len(r["seq_lengths"]) >= 2][:STEPS]
    assert len(rows) == STEPS
    seqs = [unpack_row(r) for r in rows]
    pad_id = 0
    runs = {
        "padded": (_trainer(root, "o_pad", padding_free=False), [[PaddingCollator(pad_id)(s)] for s in seqs]),
        "padding_free": (_trainer(root, "o_pf", padding_free=True), [[PaddingFreeCollator()(s)] for s in seqs]),
        "packed": (_trainer(root, "o_pk", padding_free=True), [[PaddingFreeCollator()([r])] for r in rows]),
        # the same step split into two micro-batches (gradient accumulation)
        "accumulated": (
            _trainer(root, "o_acc", padding_free=True),
            [[PaddingFreeCollator()(s[:1]), PaddingFreeCollator()(s[1:])] for s in seqs],
        ),
    }
    trajectories = {}
    for name, (trainer, steps) in runs.items():
        trajectories[name] = [trainer.train_step(micro).loss for micro in steps]
    ref = torch.tensor(trajectories["padded"], dtype=torch.float64)
    assert ref[-1] < ref[0]  # it trains
    for name, losses in trajectories.items():
        assert torch.allclose(torch.tensor(losses, dtype=torch.float64), ref, atol=1e-5, rtol=0), (name, losses, ref)


def test_step_loss_is_not_a_mean_of_micro_batch_means(dirs):
    """Per-token mean over the step: micro-batches with more trained tokens weigh more."""
    root, packed = dirs
    seqs = next(unpack_row(r) for r in (packed[i] for i in range(len(packed))) if len(r["seq_lengths"]) >= 3)
    t = _trainer(root, "o_mm", padding_free=True)
    micro = [PaddingFreeCollator()(seqs[:1]), PaddingFreeCollator()(seqs[1:])]
    sums, counts = [], []
    with torch.no_grad():
        for mb in micro:
            s, n = t.wrapper(**mb)
            sums.append(float(s))
            counts.append(int(n))
    assert counts[0] != counts[1]
    per_token = sum(sums) / sum(counts)
    mean_of_means = (sums[0] / counts[0] + sums[1] / counts[1]) / 2
    out = t.train_step(micro)
    assert out.loss == pytest.approx(per_token, abs=1e-6)
    assert abs(per_token - mean_of_means) > 1e-4
    assert out.trained_tokens == sum(counts)


def test_train_on_packed_dir_end_to_end(dirs, tmp_path):
    root, _ = dirs
    res = train(dict(data=str(root / "packed"), output_dir=str(tmp_path / "out"), precision="fp32", max_steps=3,
                     max_tokens_per_batch=512, lr=1e-3, progress_bar=False))
    assert len(res.losses) == 3 and res.completed and (tmp_path / "out" / "final" / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="padding-free"):
        Trainer(dict(data=str(root / "packed"), output_dir=str(tmp_path / "o2"), padding_free=False, precision="fp32"))


def test_activation_checkpointing_and_precisions(dirs):
    root, packed = dirs
    rows = [packed[i] for i in range(3)]
    batches = [[PaddingFreeCollator()([r])] for r in rows]

    def losses(name, **kw):
        cfg = dict(data=str(root / "prepared"), output_dir=str(root / name), lr=3e-3, warmup_steps=0,
                   max_steps=3, progress_bar=False, seed=0, lr_scheduler="constant")
        cfg.update(kw)
        t = Trainer(cfg)
        return t, [t.train_step(b).loss for b in batches]

    _, ref = losses("o_fp32", precision="fp32")
    t_ac, ac = losses("o_ac", precision="fp32", activation_checkpointing="on")
    assert t_ac.memory_plan.layers == (0, 1)
    assert ac == pytest.approx(ref, abs=1e-6)
    # the layers really are recomputed in backward: their MLP runs twice per micro-batch
    calls = []
    for t in (t_ac, Trainer(dict(data=str(root / "prepared"), output_dir=str(root / "o_noac"), precision="fp32",
                                 activation_checkpointing="off", progress_bar=False, max_steps=3))):
        n = []
        t.hf_model.model.layers[0].mlp.register_forward_pre_hook(lambda *a, n=n: n.append(1))
        t.train_step(batches[0])
        calls.append(len(n))
    assert calls == [2, 1]
    t_mixed, mixed = losses("o_mixed", precision="bf16-mixed")
    assert next(t_mixed.hf_model.parameters()).dtype == torch.float32  # fp32 master weights
    t_true, true = losses("o_true", precision="bf16-true")
    assert next(t_true.hf_model.parameters()).dtype == torch.bfloat16
    for other in (mixed, true):
        assert other[0] == pytest.approx(ref[0], rel=2e-2)
        assert other[-1] < other[0]
