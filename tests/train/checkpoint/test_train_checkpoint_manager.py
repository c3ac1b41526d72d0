"""CheckpointManager on its own: every Stateful component saved and loaded back exactly (tensors through
DCP, JSON records, JSON files), the RNG streams continuing where they were, records loaded in
order before anything heavy, and ``state.json`` of the earlier layout upgraded."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sftdata.errors import ConfigError
from sftdata_train.checkpoint import directories as ckpt
from sftdata_train.checkpoint.manager import STATE_VERSION, CheckpointManager, read_state, upgrade_state
from sftdata_train.distributed import DistInfo
from sftdata_train.checkpoint.state import ModelState, OptimizerState, RngState, RunSchedule, Stateful, TrainCounters


class _Order:
    """A JSON record that notes when it is loaded."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name, self.value = log, name, {"n": 0}

    def state_dict(self):
        return dict(self.value)

    def load_state_dict(self, state):
        self.log.append(self.name)
        self.value = dict(state)


def _parts(seed: int, log: list[str]):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    counters = TrainCounters()
    schedule = RunSchedule(world_size=1, max_tokens_per_batch=64, grad_accum=1, total_steps=10)
    other = _Order(log, "other")
    return model, opt, sched, counters, schedule, other


def _manager(out, model, opt, sched, counters, schedule, other):
    return CheckpointManager(
        out, DistInfo(),
        tensors={"model": ModelState(model), "optim": OptimizerState(model, opt), "rng": RngState(0)},
        records={"schedule": schedule, "counters": counters, "other": other}, files={"scheduler": sched},
        metadata=lambda: {"config": {"note": "x"}},
    )


def _train(model, opt, sched, steps):
    for _ in range(steps):
        loss = model(torch.randn(3, 4)).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()


def test_every_component_round_trips(tmp_path):
    log: list[str] = []
    model, opt, sched, counters, schedule, other = _parts(0, log)
    for comp in (ModelState(model), OptimizerState(model, opt), RngState(0), counters, schedule, other):
        assert isinstance(comp, Stateful)
    _train(model, opt, sched, 3)
    counters.load_state_dict({"step": 3, "tokens_seen": 30, "trained_tokens_seen": 12, "skipped_steps": 1})
    other.value = {"n": 7}
    manager = _manager(tmp_path, model, opt, sched, counters, schedule, other)
    path = manager.save(3)
    assert path == tmp_path / "checkpoint-3" and ckpt.checkpoint_damage(path) is None
    after_save = (torch.rand(5), random.random())  # what the RNG streams give after the save
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in opt.state.values()]

    log2: list[str] = []
    model2, opt2, sched2, counters2, schedule2, other2 = _parts(1, log2)  # other weights, fresh state
    _manager(tmp_path, model2, opt2, sched2, counters2, schedule2, other2).load(path)
    assert (torch.rand(5).tolist(), random.random()) == (after_save[0].tolist(), after_save[1])
    for k, v in model2.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert all(torch.equal(s["exp_avg"], m) for s, m in zip(opt2.state.values(), moments))
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert counters2 == counters and other2.value == {"n": 7} and log2 == ["other"]
    state = read_state(path)
    assert state["version"] == STATE_VERSION and state["config"] == {"note": "x"}

    # the two runs continue identically
    torch.manual_seed(5)
    _train(model, opt, sched, 2)
    torch.manual_seed(5)
    _train(model2, opt2, sched2, 2)
    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(v, v2), k


def test_a_refused_schedule_loads_nothing(tmp_path):
    log: list[str] = []
    model, opt, sched, counters, schedule, other = _parts(0, log)
    counters.step = 2
    path = _manager(tmp_path, model, opt, sched, counters, schedule, other).save(2)
    model2, opt2, sched2, counters2, _, other2 = _parts(1, log)
    changed = RunSchedule(world_size=1, max_tokens_per_batch=128, grad_accum=1, total_steps=10)
    before = {k: v.clone() for k, v in model2.state_dict().items()}
    with pytest.raises(ConfigError, match="different schedule"):
        _manager(tmp_path, model2, opt2, sched2, counters2, changed, other2).load(path)
    assert counters2.step == 0 and log == [] and all(torch.equal(v, before[k]) for k, v in model2.state_dict().items())


@settings(max_examples=50, deadline=None)
@given(step=st.integers(0, 10**6), tokens=st.integers(0, 10**12), epoch=st.integers(0, 50),
       consumed=st.integers(0, 10**4), skipped=st.integers(0, 5), with_sampler=st.booleans())
def test_version_1_state_upgrades_to_the_components(step, tokens, epoch, consumed, skipped, with_sampler):
    old = {
        "step": step, "total_steps": step + 3, "tokens_seen": tokens, "trained_tokens_seen": tokens // 2,
        "skipped_steps": skipped, "world_size": 2, "max_tokens_per_batch": 700, "grad_accum": 4,
        "stream": {"epoch": epoch, "batch_in_epoch": consumed},
        "sampler": {"epoch": epoch, "num_yielded": consumed + 2, "seed": 3, "n": 40} if with_sampler else None,
        "runtime": "cpu", "config": {"seed": 3}, "manifest": "manifest.json",
    }
    new = upgrade_state(old)
    assert new["version"] == STATE_VERSION
    assert new["counters"] == {"step": step, "tokens_seen": tokens, "trained_tokens_seen": tokens // 2,
                               "skipped_steps": skipped}
    assert new["schedule"] == {"world_size": 2, "total_steps": step + 3, "max_tokens_per_batch": 700, "grad_accum": 4}
    # the consumed micro-batches (the stream's count), never the sampler's read-ahead count
    assert (new["data"]["epoch"], new["data"]["num_yielded"]) == (epoch, consumed)
    assert ("seed" in new["data"]) == with_sampler
    assert upgrade_state(new) is new
    with pytest.raises(ConfigError, match="version 3"):
        upgrade_state({**new, "version": 3})
