"""Checkpoints: resuming after a stop mid-run reproduces the uninterrupted run exactly; checkpoints
are atomic and load with transformers; metrics.jsonl holds one record per logged step."""

from __future__ import annotations

import json

import pytest
import torch

from sftdata_train import checkpoint as ckpt
from sftdata_train.loop import Trainer, train
from sftdata_train.testing import prepare_dir, synthetic_conversations



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    prepare_dir(synthetic_conversations(40, seed=2), root / "prepared")
    return root / "prepared"


def _cfg(data_dir, out, **kw):
    cfg = dict(
        data=str(data_dir), output_dir=str(out), precision="fp32", lr=2e-3, warmup_steps=2, max_steps=8,
        grad_accum=2, max_tokens_per_batch=700, save_steps=3, eval_fraction=0.1, eval_steps=4,
        progress_bar=False, seed=3, weight_decay=0.1,
    )
    cfg.update(kw)
    return cfg


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_equals_uninterrupted(data_dir, tmp_path):
    full = train(_cfg(data_dir, tmp_path / "full"))
    assert full.completed and len(full.losses) == 8
    probe = Trainer(_cfg(data_dir, tmp_path / "probe"))
    assert probe.stream.batches_per_epoch < 8 * 2  # the 8 steps cross an epoch boundary

    first = train(_cfg(data_dir, tmp_path / "cut", stop_at_step=5))  # stops mid-epoch, between saves
    assert first.step == 5 and not first.completed and first.final_model_dir is None
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "cut")] == [3, 5]
    assert first.losses == full.losses[:5]

    resumed = train(_cfg(data_dir, tmp_path / "cut", resume="latest"))
    assert resumed.first_step == 5 and resumed.step == 8 and resumed.completed
    # exactly the same losses as the uninterrupted run (CPU, fp32: deterministic)
    assert resumed.losses == pytest.approx(full.losses[5:], abs=1e-7, rel=0)
    assert list(resumed.eval_losses) == [8] and sorted(full.eval_losses) == [4, 8]
    assert resumed.eval_losses[8] == pytest.approx(full.eval_losses[8], abs=1e-7, rel=0)

    # metrics.jsonl: one record per step, with the documented keys, no duplicates after resuming
    recs = _records(tmp_path / "cut")
    assert [r["step"] for r in recs] == list(range(1, 9))
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "trained_tokens_per_s", "mfu", "peak_memory_gb"):
        assert key in recs[0]
    assert recs[3]["eval_loss"] == pytest.approx(full.eval_losses[4])
    assert [r["loss"] for r in recs] == pytest.approx([r["loss"] for r in _records(tmp_path / "full")], abs=1e-7)

    # resuming the same dir again from an explicit checkpoint path also works
    again = train(_cfg(data_dir, tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-3"), stop_at_step=4))
    assert again.losses == pytest.approx(full.losses[3:4], abs=1e-7, rel=0)


def test_checkpoint_layout_and_loading(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    res = train(_cfg(data_dir, out, max_steps=4, save_steps=2, save_total_limit=1))
    last = out / "checkpoint-4"
    assert res.last_checkpoint == last
    assert [p.name for _, p in ckpt.list_checkpoints(out)] == ["checkpoint-4"]  # save_total_limit
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".trash-*"))
    for f in ("config.json", "model.safetensors", "tokenizer.json", "training_state/state.json",
              "training_state/optimizer.pt", "training_state/scheduler.pt", "training_state/rng_rank0.pt"):
        assert (last / f).is_file(), f
    state = json.loads((last / "training_state" / "state.json").read_text())
    assert state["step"] == 4 and state["world_size"] == 1 and state["config"]["max_steps"] == 4

    trainer_weights = Trainer(_cfg(data_dir, tmp_path / "probe", resume=str(last))).hf_model.state_dict()
    loaded = AutoModelForCausalLM.from_pretrained(str(last))
    for k, v in loaded.state_dict().items():
        assert torch.equal(v.float(), trainer_weights[k].float()), k
    final = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert final.dtype == torch.float32  # fp32 run, save_dtype auto
    tok = AutoTokenizer.from_pretrained(str(out / "final"))
    ids = torch.tensor([tok("hello world")["input_ids"]])
    assert final(input_ids=ids).logits.shape[-1] == final.config.vocab_size
    assert (out / "config.yaml").is_file()


def test_interrupted_save_is_invisible(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "atomic"
    trainer = Trainer(_cfg(data_dir, out, max_steps=2))
    trainer.fit()
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2]
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if str(f).endswith("scheduler.pt"):
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    trainer.step = 3
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2]
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-2"
    assert ckpt.resolve_resume("latest", str(out)) == out / "checkpoint-2"
