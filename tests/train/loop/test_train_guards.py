"""Guards before the first step, and correctness details of a step.

Output dir reuse, tokenizer/data mismatch, token ids beyond the embedding, missing loggers, the
default precision per device, the PyTorch feature floor; non-finite gradient norms (stop or skip,
checked before optimizer.step()); RNG-neutral peak measurement; the datasheet peak table.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from sftdata.errors import ConfigError
from sftdata_train import compat
from sftdata_train.cli import main as cli_main
from sftdata_train.loop.trainer import Trainer, train
from sftdata_train.loop.metrics import _time_matmul, measure_bf16_peak_tflops
from sftdata_train.model.loading import load_tokenizer
from sftdata_train.loop.peaks import datasheet_bf16_tflops
from sftdata_train.testing import char_tokenizer, prepare_dir, synthetic_conversations, tiny_qwen3_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    prepare_dir(synthetic_conversations(24, seed=5), root / "prepared")
    return root / "prepared"


def _cfg(data, out, **kw):
    cfg = dict(data=str(data), output_dir=str(out), precision="fp32", max_steps=2, lr=1e-3, warmup_steps=0,
               progress_bar=False, max_tokens_per_batch=800, seed=0)
    cfg.update(kw)
    return cfg


# --------------------------------------------------------------------------- output dir
def test_non_empty_output_dir_needs_resume_or_overwrite(data, tmp_path):
    out = tmp_path / "run"
    first = train(_cfg(data, out))
    assert first.completed
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty") as e:
        Trainer(_cfg(data, out))
    assert "--resume" in str(e.value) and "--overwrite" in str(e.value) and "checkpoint-2" in str(e.value)
    assert cli_main(["--data", str(data), "--output-dir", str(out), "--precision", "fp32", "--max-steps", "1",
                     "--no-progress-bar"]) == 2
    # --overwrite: the previous run's artefacts go, other files stay, the new run starts at step 0
    again = train(_cfg(data, out, overwrite=True, max_steps=1))
    assert again.first_step == 0 and again.step == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "config.yaml", "final", "metrics.jsonl",
                                                      "notes.txt"]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    # --resume in a non-empty dir is what it is for
    resumed = train(_cfg(data, out, resume="latest", max_steps=1))
    assert resumed.first_step == 1


# --------------------------------------------------------------------------- data vs model
def test_tokenizer_fingerprint_mismatch_names_both(data, tmp_path):
    tok = load_tokenizer(None)
    tok.add_tokens(["<an_added_token>"])  # same ids for the data, another vocabulary fingerprint
    model_dir = tiny_qwen3_dir(tmp_path / "model", tok)
    with pytest.raises(ConfigError, match="fingerprint") as e:
        Trainer(_cfg(data, tmp_path / "o1", model=str(model_dir)))
    msg = str(e.value)
    recorded = json.loads((Path(data) / "stats.json").read_text())["tokenizer"]["tokenizer_sha256"]
    from sftdata_train.loop.guards import tokenizer_fingerprint

    assert recorded in msg and tokenizer_fingerprint(tok) in msg and str(model_dir) in msg
    t = Trainer(_cfg(data, tmp_path / "o2", model=str(model_dir), check_tokenizer=False))  # known compatible
    assert t.train_step([next(t.stream)]).trained_tokens > 0


def test_token_ids_beyond_the_embedding_names_both(data, tmp_path):
    model_dir = tiny_qwen3_dir(tmp_path / "small", char_tokenizer())  # 32 rows; the data uses ids up to ~6k
    with pytest.raises(ConfigError, match="fingerprint"):
        Trainer(_cfg(data, tmp_path / "o1", model=str(model_dir)))
    with pytest.raises(ConfigError, match=r"token id \d+, but the model .* embedding of 32 rows") as e:
        Trainer(_cfg(data, tmp_path / "o2", model=str(model_dir), check_tokenizer=False))
    assert str(data) in str(e.value) and str(model_dir) in str(e.value)


# --------------------------------------------------------------------------- loggers, precision, torch
def test_requested_logger_not_installed_is_an_error(data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        Trainer(_cfg(data, tmp_path / "o", tensorboard=True))
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_default_precision_is_fp32_on_cpu(data, tmp_path):
    cfg = _cfg(data, tmp_path / "o")
    del cfg["precision"]
    t = Trainer(cfg)
    assert t.config.precision == "fp32" and not t.fsdp
    assert all(p.dtype == torch.float32 for p in t.hf_model.parameters())
    from sftdata_train.build import resolve_precision

    assert resolve_precision("auto", torch.device("cuda")) == "bf16-mixed"
    assert resolve_precision("bf16-true", torch.device("cpu")) == "bf16-true"


def test_torch_feature_floor(monkeypatch):
    assert compat.missing_torch_features() == []
    monkeypatch.delattr(torch.nn.utils, "get_total_norm")
    with pytest.raises(ConfigError, match=r"torch >= 2\.6.*get_total_norm"):
        compat.require_torch()
    # pyproject.toml declares the same floor
    text = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert re.search(r'"torch>=([\d.]+)[,"]', text).group(1) == compat.MIN_TORCH


# --------------------------------------------------------------------------- non-finite gradients
def _poison(trainer, calls_to_poison):
    """Make the wrapper's loss NaN on the given forward calls (0-based)."""
    original = trainer.wrapper.forward
    count = [0]

    def forward(*a, **kw):
        loss, n = original(*a, **kw)
        i, count[0] = count[0], count[0] + 1
        return (loss * float("nan"), n) if i in calls_to_poison else (loss, n)

    trainer.wrapper.forward = forward


def _params(trainer):
    return [p.detach().clone() for p in trainer.wrapper.parameters()]


def test_nonfinite_gradient_stops_before_the_update(data, tmp_path):
    t = Trainer(_cfg(data, tmp_path / "o"))
    before = _params(t)
    _poison(t, {0})
    with pytest.raises(FloatingPointError, match="non-finite gradient norm"):
        t.train_step([next(t.stream)])
    assert all(torch.equal(a, b) for a, b in zip(before, _params(t)))
    assert all(p.grad is None for p in t.wrapper.parameters())


def test_nonfinite_gradient_skipped_and_counted(data, tmp_path):
    out = tmp_path / "o"
    t = Trainer(_cfg(data, out, nonfinite_grad="skip", max_steps=3, log_steps=1))
    before = _params(t)
    _poison(t, {0})
    res = t.fit()
    assert res.completed and t.skipped_steps == 1
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in recs] == [1, 1, 1]
    assert not math_isfinite(recs[0]["loss"]) and all(math_isfinite(r["loss"]) for r in recs[1:])
    assert not any(torch.equal(a, b) for a, b in zip(before, _params(t)) if a.numel() > 100)  # later steps train
    # the skipped step applied nothing: a fresh run poisoned the same way equals one where step 1 had no update
    t2 = Trainer(_cfg(data, tmp_path / "o2", nonfinite_grad="skip", max_steps=3))
    _poison(t2, {0})
    out1 = t2.train_step([next(t2.stream)])
    assert out1.skipped and not math_isfinite(out1.grad_norm)
    assert all(torch.equal(a, b) for a, b in zip(before, _params(t2)))


def math_isfinite(x: float) -> bool:
    import math

    return math.isfinite(x)


# --------------------------------------------------------------------------- peaks
def test_peak_measurement_leaves_the_rng_alone():
    torch.manual_seed(123)
    random.seed(4)
    state, py = torch.get_rng_state(), random.getstate()
    assert _time_matmul(torch.device("cpu"), 64, 2) > 0
    assert torch.equal(torch.get_rng_state(), state) and random.getstate() == py
    assert measure_bf16_peak_tflops(torch.device("cpu")) is None


@pytest.mark.parametrize(
    "name, tflops",
    [("NVIDIA H100 80GB HBM3", 989.5), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H200", 989.5),
     ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.05),
     ("NVIDIA L4", 121.0), ("NVIDIA A10", 125.0), ("NVIDIA A10G", None), ("NVIDIA H100 NVL", None),
     ("NVIDIA GeForce RTX 4090", None), ("", None)],
)
def test_datasheet_peaks(name, tflops):
    assert datasheet_bf16_tflops(name) == tflops
