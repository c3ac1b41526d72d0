"""Checkpoints: resuming after a stop mid-run reproduces the uninterrupted run exactly; checkpoints
are atomic, sharded (DCP) and load back exactly; final/ loads with transformers; metrics.jsonl
holds one record per logged step; a resume that would change the schedule is refused."""

from __future__ import annotations

import json

import pytest
import torch

from sftdata.errors import ConfigError
from sftdata_train.checkpoint import directories as ckpt
from sftdata_train.loop.trainer import Trainer, train
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
    for f in ("config.json", "tokenizer.json", "training_state/state.json", "training_state/scheduler.json",
              "training_state/dcp/.metadata", "training_state/dcp/__0_0.distcp"):
        assert (last / f).is_file(), f
    # no full HF weights and no pickles in a resume checkpoint: sharded DCP + JSON only
    assert not list(last.glob("*.safetensors")) and not list(last.rglob("*.pt"))
    state = json.loads((last / "training_state" / "state.json").read_text())
    # state.json holds one record per JSON component (sftdata_train.checkpoint.state), version 2
    assert state["version"] == 2 and state["counters"]["step"] == 4 and state["config"]["max_steps"] == 4
    assert state["schedule"] == {"world_size": 1, "max_tokens_per_batch": 700, "grad_accum": 2, "total_steps": 4}

    # the checkpoint restores exactly the weights the run ended with (= final/, fp32 run)
    trainer_weights = Trainer(_cfg(data_dir, tmp_path / "probe", resume=str(last), max_steps=4)).hf_model.state_dict()
    final = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert final.dtype == torch.float32  # fp32 run, save_dtype auto
    for k, v in final.state_dict().items():
        assert torch.equal(v, trainer_weights[k]), k
    tok = AutoTokenizer.from_pretrained(str(out / "final"))
    ids = torch.tensor([tok("hello world")["input_ids"]])
    assert final(input_ids=ids).logits.shape[-1] == final.config.vocab_size
    assert (out / "config.yaml").is_file()


def test_resume_refuses_a_schedule_change(data_dir, tmp_path):
    out = tmp_path / "sched"
    train(_cfg(data_dir, out, max_steps=4, save_steps=2, stop_at_step=2))
    for change in ({"max_steps": 6}, {"max_tokens_per_batch": 900}, {"grad_accum": 1}):
        with pytest.raises(ConfigError, match="different schedule") as e:
            Trainer(_cfg(data_dir, out, resume="latest", **change))
        assert "--allow-schedule-change" in str(e.value)
    with pytest.warns(UserWarning, match="allow-schedule-change"):
        res = train(_cfg(data_dir, out, resume="latest", max_steps=6, allow_schedule_change=True))
    assert res.completed and res.step == 6


def test_interrupted_save_is_invisible(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "atomic"
    trainer = Trainer(_cfg(data_dir, out, max_steps=2))
    trainer.fit()
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2]

    import torch.distributed.checkpoint as dcp

    def failing_save(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(dcp, "save", failing_save)
    trainer.step = 3
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [2]
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-2"
    assert ckpt.resolve_resume("latest", str(out)) == out / "checkpoint-2"
