"""Resuming restores the data position through the batch sampler's own state (issue 19 item 5):
stop at step k with a checkpoint, resume, and every micro-batch after step k (its ``input_ids``)
and every loss equal those of the uninterrupted run; mid-epoch, at an epoch boundary and in the
second epoch. The position is the sampler's ``state_dict`` (epoch, micro-batches consumed), loaded
with ``load_state_dict``: the sampler's next iterator starts there (no replay and skip).
Checkpoints written before the components existed (``state.json`` version 1) still resume."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sftdata_train.checkpoint import directories as ckpt
from sftdata_train.loop.trainer import Trainer
from sftdata_train.testing import prepare_dir, synthetic_conversations

MAX_STEPS = 8
GRAD_ACCUM = 2
MICRO_PER_EPOCH = 10  # TokenBudgetBatchSampler(lengths, 700, seed=3) on this data, epochs 0 and 1 (checked below)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_batches")
    prepare_dir(synthetic_conversations(40, seed=2), root / "prepared")
    return root / "prepared"


def _cfg(data_dir, out, **kw):
    cfg = dict(
        data=str(data_dir), output_dir=str(out), precision="fp32", lr=2e-3, warmup_steps=2, max_steps=MAX_STEPS,
        grad_accum=GRAD_ACCUM, max_tokens_per_batch=700, save_steps=100, progress_bar=False, seed=3,
        weight_decay=0.1,
    )
    cfg.update(kw)
    return cfg


def _fit_recording(cfg):
    """Run a Trainer; returns (result, trainer, [[input_ids of each micro-batch] per step])."""
    trainer = Trainer(cfg)
    seen: list[list[torch.Tensor]] = []
    step = trainer.train_step

    def recording(micro_batches):
        seen.append([mb["input_ids"].clone() for mb in micro_batches])
        return step(micro_batches)

    trainer.train_step = recording
    return trainer.fit(), trainer, seen


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    result, trainer, seen = _fit_recording(_cfg(data_dir, tmp_path_factory.mktemp("full")))
    assert result.completed and len(seen) == MAX_STEPS
    sampler = trainer.sampler
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert len(sampler) == MICRO_PER_EPOCH
    return result, seen


def _same_batches(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b)):
        assert len(x) == len(y), step
        for i, (u, v) in enumerate(zip(x, y)):
            assert torch.equal(u, v), (step, i)


@pytest.mark.parametrize(
    "stop_at, position",
    [
        (3, (0, 6)),  # mid-epoch
        (5, (0, 10)),  # at the epoch boundary: every micro-batch of epoch 0 consumed
        (7, (1, 4)),  # mid-epoch, in the second epoch
    ],
    ids=["mid_epoch", "epoch_boundary", "second_epoch"],
)
def test_resume_gives_the_uninterrupted_batches_and_losses(data_dir, tmp_path, uninterrupted, stop_at, position):
    full, full_batches = uninterrupted
    out = tmp_path / "cut"
    first, _, first_batches = _fit_recording(_cfg(data_dir, out, stop_at_step=stop_at))
    assert first.step == stop_at and not first.completed
    _same_batches(first_batches, full_batches[:stop_at])

    state = ckpt.load_training_state(out / f"checkpoint-{stop_at}")
    assert (state["data"]["epoch"], state["data"]["num_yielded"]) == position
    assert state["counters"]["step"] == stop_at

    resumed, trainer, resumed_batches = _fit_recording(_cfg(data_dir, out, resume="latest"))
    assert resumed.first_step == stop_at and resumed.completed
    _same_batches(resumed_batches, full_batches[stop_at:])
    assert resumed.losses == pytest.approx(full.losses[stop_at:], abs=1e-7, rel=0)
    assert trainer.tokens_seen == full_trainer_tokens(full_batches)


def full_trainer_tokens(batches: list[list[torch.Tensor]]) -> int:
    """Real tokens of all micro-batches (padding-free rows: every position is a token)."""
    return sum(int(ids.numel()) for step in batches for ids in step)


def test_the_restored_sampler_continues_at_the_position(data_dir, tmp_path):
    """No replay: after loading, the sampler's own next epoch iterator yields only what is left."""
    out = tmp_path / "run"
    _fit_recording(_cfg(data_dir, out, stop_at_step=3))
    trainer = Trainer(_cfg(data_dir, out, resume="latest"))
    state = ckpt.load_training_state(out / "checkpoint-3")["data"]
    assert trainer.stream.state_dict() == state
    assert trainer.sampler.state_dict()["num_yielded"] == 6 and trainer.sampler.epoch == 0
    rest = list(trainer.sampler)  # the sampler itself starts at micro-batch 6 of epoch 0
    fresh = type(trainer.sampler)(trainer.train_data.lengths, 700, seed=3)
    assert rest == list(fresh)[6:]


def _as_version_1(state: dict, prefetched: int) -> dict:
    """The ``state.json`` the trainer wrote before the state components (sftdata_train at 2627802)."""
    data = state["data"]
    return {
        **state["counters"], **state["schedule"],
        "stream": {"epoch": data["epoch"], "batch_in_epoch": data["num_yielded"]},
        # the sampler's own count ran ahead of the consumed micro-batches with DataLoader workers
        "sampler": {**data, "num_yielded": data["num_yielded"] + prefetched},
        "runtime": state["runtime"], "config": state["config"], "manifest": state["manifest"],
    }


def test_a_version_1_checkpoint_still_resumes_exactly(data_dir, tmp_path, uninterrupted):
    full, full_batches = uninterrupted
    out = tmp_path / "old"
    _fit_recording(_cfg(data_dir, out, stop_at_step=3))
    last = out / "checkpoint-3"
    state_file = last / ckpt.STATE_DIR / "state.json"
    state_file.write_text(json.dumps(_as_version_1(json.loads(state_file.read_text()), prefetched=2)))
    ckpt.write_manifest(last)
    assert "version" not in json.loads(state_file.read_text())

    resumed, _, batches = _fit_recording(_cfg(data_dir, out, resume="latest"))
    _same_batches(batches, full_batches[3:])
    assert resumed.losses == pytest.approx(full.losses[3:], abs=1e-7, rel=0)


def test_a_newer_state_version_is_refused_in_one_line(data_dir, tmp_path):
    from sftdata.errors import ConfigError

    out = tmp_path / "new"
    _fit_recording(_cfg(data_dir, out, stop_at_step=1, max_steps=2))
    state_file = out / "checkpoint-1" / ckpt.STATE_DIR / "state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "version": 99}))
    ckpt.write_manifest(out / "checkpoint-1")
    with pytest.raises(ConfigError, match="version 99") as e:
        Trainer(_cfg(data_dir, out, resume="latest", max_steps=2))
    assert "\n" not in str(e.value)


def test_a_changed_batch_plan_is_accepted_only_with_allow_schedule_change(data_dir, tmp_path):
    from sftdata.errors import ConfigError

    out = tmp_path / "plan"
    _fit_recording(_cfg(data_dir, out, stop_at_step=3))
    with pytest.raises(ConfigError, match="different schedule"):
        Trainer(_cfg(data_dir, out, resume="latest", max_tokens_per_batch=900))
    with pytest.warns(UserWarning, match="allow-schedule-change"):
        trainer = Trainer(_cfg(data_dir, out, resume="latest", max_tokens_per_batch=900, allow_schedule_change=True))
    # the epoch and the micro-batches consumed carry over; the plan is the new budget's
    assert (trainer.stream.epoch, trainer.stream.batch_in_epoch) == (0, 6)
    assert trainer.sampler.state_dict()["max_tokens"] == 900


# ----------------------------------------------------------------------------- the stream alone
@pytest.fixture(scope="module")
def stream_parts(data_dir):
    from sftdata_train.data import load_sft_dataset, make_collator

    return load_sft_dataset(data_dir), make_collator(padding_free=True, pad_token_id=0, pad_to_multiple_of=None)


def _stream(parts, num_workers=0):
    from sftdata_train.data import MicroBatchStream
    from sftdata_train.distributed import DistInfo
    from sftdata_train.data import make_batch_sampler

    data, collator = parts
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    sampler = make_batch_sampler(data.lengths, max_tokens=700, padding_free=True, shuffle=True, seed=3, info=info)
    return MicroBatchStream(data, sampler, collator, num_workers=num_workers)


@settings(max_examples=12, deadline=None)
@given(consumed=st.integers(0, 3 * MICRO_PER_EPOCH), more=st.integers(1, MICRO_PER_EPOCH + 2))
def test_stream_state_round_trip_continues_exactly(stream_parts, consumed, more):
    """Property: for any number of consumed micro-batches (across epochs), a new stream loaded
    with the state continues with exactly the micro-batches the first one yields next."""
    a, b = _stream(stream_parts), _stream(stream_parts)
    for _ in range(consumed):
        next(a)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))  # through JSON, as in state.json
    for _ in range(more):
        x, y = next(a), next(b)
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    assert a.state_dict() == b.state_dict()


def test_stream_state_counts_consumed_not_prefetched_batches(stream_parts):
    """With DataLoader workers the sampler is read ahead; the saved position is what was consumed."""
    a = _stream(stream_parts, num_workers=2)
    firsts = [next(a)["input_ids"] for _ in range(3)]
    state = a.state_dict()
    assert (state["epoch"], state["num_yielded"]) == (0, 3)
    b = _stream(stream_parts)
    b.load_state_dict(state)
    ref = _stream(stream_parts)
    expected = [next(ref)["input_ids"] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(firsts, expected[:3]))
    assert torch.equal(next(b)["input_ids"], expected[3]) and torch.equal(next(b)["input_ids"], expected[4])


def test_stream_accepts_the_earlier_position_form(stream_parts):
    """``{"epoch", "batch_in_epoch"}`` (what MicroBatchStream.state_dict returned before; bench/tree_bench.py)."""
    a, b = _stream(stream_parts), _stream(stream_parts)
    for _ in range(MICRO_PER_EPOCH + 3):
        next(a)
    b.load_state_dict({"epoch": 1, "batch_in_epoch": 3})
    assert b.state_dict() == a.state_dict()
    assert torch.equal(next(a)["input_ids"], next(b)["input_ids"])
