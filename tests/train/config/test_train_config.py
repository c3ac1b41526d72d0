"""Config: YAML + flags, defaults, validation, --help; optimizer groups and the lr schedule."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sftdata.errors import ConfigError
from sftdata_train.config.command_line import build_arg_parser, parse_args
from sftdata_train.config.train_config import TrainConfig, as_config
from sftdata_train.loop.optim import build_scheduler, lr_factor, param_groups


def test_every_key_is_a_flag_in_both_spellings():
    help_text = build_arg_parser().format_help()
    for name in TrainConfig.__dataclass_fields__:
        assert f"--{name} " in help_text or f"--{name}," in help_text, name
        assert f"--{name.replace('_', '-')}" in help_text, name
    # every field given as --field_name on the command line reaches the config
    cfg = parse_args(["--data", "d", "--output_dir", "o", "--max_steps", "7", "--save_total_limit", "2",
                      "--warmup_steps", "3", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj"])
    assert (cfg.max_steps, cfg.save_total_limit, cfg.warmup_steps, cfg.lora_r) == (7, 2, 3, 4)
    assert cfg.lora_target_modules == "q_proj,v_proj" and cfg.use_peft is True


def test_yaml_then_flags(tmp_path):
    y = tmp_path / "train.yaml"
    y.write_text("data: d1\noutput-dir: o1\nlr: 0.001\nmax_steps: 5\npadding_free: false\n")
    cfg = parse_args(["--config", str(y), "--lr", "3e-4", "--output-dir", "o2"])
    assert (cfg.data, cfg.output_dir, cfg.lr, cfg.max_steps, cfg.padding_free) == ("d1", "o2", 3e-4, 5, False)
    cfg = parse_args(["--config", str(y), "--padding-free", "--resume"])
    assert cfg.padding_free is True and cfg.resume == "latest"
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--resume", "ckpt/x", "--warmup-steps", "none"])
    assert cfg.resume_from_checkpoint == "ckpt/x"
    assert cfg.resume == "ckpt/x" and cfg.warmup_steps is None
    assert cfg.model is None and cfg.precision == "auto"  # embedded default; bf16-mixed on CUDA, fp32 on CPU
    assert (cfg.compile, cfg.activation_checkpointing) == ("auto", "auto")
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--compile", "--activation-checkpointing", "off"])
    assert (cfg.compile, cfg.activation_checkpointing) == ("on", "off")
    y.write_text("data: d1\noutput-dir: o1\ncompile: true\nactivation_checkpointing: false\n")  # older boolean keys
    cfg = parse_args(["--config", str(y)])
    assert (cfg.compile, cfg.activation_checkpointing) == ("on", "off")


def test_env_section_sets_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SFTDATA_TEST_ENV", raising=False)
    y = tmp_path / "train.yaml"
    y.write_text("data: d\noutput_dir: o\nenv:\n  SFTDATA_TEST_ENV: '1'\n")
    parse_args(["--config", str(y)])
    import os

    assert os.environ["SFTDATA_TEST_ENV"] == "1"


def test_validation_errors(tmp_path):
    with pytest.raises(ConfigError, match="data: required"):
        parse_args(["--output-dir", "o"])
    with pytest.raises(ConfigError, match="learnig_rate: unknown key; did you mean 'learning_rate'"):
        TrainConfig.from_dict({"data": "d", "output_dir": "o", "learnig_rate": 1})
    with pytest.raises(ConfigError, match="gradient_accumulation_steps: must be >= 1, got 0"):
        as_config({"data": "d", "output_dir": "o", "grad_accum": 0})
    with pytest.raises(ConfigError, match="argument --precision: invalid choice: 'fp16'"):
        parse_args(["--data", "d", "--output-dir", "o", "--precision", "fp16"])
    with pytest.raises(ConfigError) as info:  # every bad value at once
        as_config({"data": "d", "output_dir": "o", "max_steps": 0, "warmup_ratio": 2.0, "precision": "x"})
    assert str(info.value).count("\n  ") == 3
    assert as_config({"data": "d", "output_dir": "o", "model": "embedded", "resume": True}).model is None
    assert as_config({"data": "d", "output_dir": "o", "resume": True}).resume == "latest"


def test_help_shows_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "sftdata_train", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "--output-dir" in out and "--max-steps" in out and "--model" in out and "--learning_rate" in out
    assert "--lr " in out and "(default: 2e-05)" in out
    assert "example" in out and "sftdata-train --data" in out and "torchrun" in out


def test_param_groups_no_decay_on_norms_and_biases():
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=8, attention_bias=True)
    model = AutoModelForCausalLM.from_config(cfg)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert all("norm" in n or n.endswith("bias") for n in nd)
    assert any("q_norm" in n for n in nd) and any(n.endswith("q_proj.bias") for n in nd)
    assert all(not ("norm" in n or n.endswith("bias")) for n in d)
    assert any("q_proj.weight" in n for n in d)
    n_unique = len({id(p) for p in model.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique


def test_lr_schedule_shapes():
    f = lambda s, kind="cosine", m=0.0: lr_factor(s, total_steps=10, warmup_steps=2, kind=kind, min_ratio=m)  # noqa: E731
    assert [f(0), f(1)] == [0.5, 1.0]
    # the decay reaches min_ratio at step 10, one after the last: the last step (9) still trains
    assert f(2) == pytest.approx(1.0) and f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8))) and f(9) > 0
    assert f(9, "linear") == pytest.approx(1 / 8) and f(10) == pytest.approx(0.0, abs=1e-12)
    assert f(10, m=0.1) == pytest.approx(0.1) and f(9, m=0.1) > 0.1
    assert f(5, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 8)))
    assert f(5, "linear") == pytest.approx(1 - 3 / 8)
    assert f(7, "constant") == 1.0
    assert all(f(s) >= f(s + 1) for s in range(2, 9))
    # LambdaLR wiring: the lr used by step s is lr * f(s)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    cfg = as_config({"data": "d", "output_dir": "o", "warmup_steps": 2, "lr": 1.0})
    sched = build_scheduler(opt, cfg, 10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([f(s) for s in range(10)])


_KEYS = st.fixed_dictionaries({}, optional={
    "lr": st.floats(0, 1), "grad_accum": st.integers(1, 8), "num_train_epochs": st.floats(0.1, 3),
    "max_steps": st.sampled_from([-1, 1, 10]), "warmup_steps": st.none() | st.integers(0, 5),
    "warmup_ratio": st.floats(0, 1), "lr_scheduler_type": st.sampled_from(["cosine", "linear", "constant_with_warmup"]),
    "gradient_checkpointing": st.sampled_from([True, False, "auto", "on"]), "compile": st.sampled_from([True, "off"]),
    "resume": st.sampled_from([True, False, None, "ckpt"]), "model": st.sampled_from(["", "embedded", "m", None]),
    "report_to": st.sampled_from(["none", ["none"], [], None]), "bf16": st.booleans(),
    "lora_target_modules": st.none(), "use_peft": st.booleans(),
})


@given(keys=_KEYS)
def test_validation_changes_nothing_and_runs_once(keys):
    cfg = TrainConfig.from_dict({"data": "d", "output_dir": "o", **keys})
    before = cfg.to_dict()
    assert cfg.validate() is cfg and cfg.to_dict() == before
    assert TrainConfig.from_dict(before) == cfg  # the resolved keys read back as the same config
    calls = []
    original = TrainConfig.problems
    TrainConfig.problems = lambda self: calls.append(1) or original(self)
    try:
        copy = as_config(cfg)
    finally:
        TrainConfig.problems = original
    assert copy == cfg and copy is not cfg and calls == []
