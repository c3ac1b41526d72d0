"""Config: YAML + flags, defaults, validation, --help; optimizer groups and the lr schedule."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from sftdata.errors import ConfigError
from sftdata_train.config import TrainConfig, as_config, build_arg_parser, parse_args
from sftdata_train.optim import build_scheduler, lr_factor, param_groups


def test_every_key_is_a_flag():
    parser = build_arg_parser()
    flags = {a.dest for a in parser._actions}
    for name in TrainConfig.__dataclass_fields__:
        assert name in flags, name


def test_yaml_then_flags(tmp_path):
    y = tmp_path / "train.yaml"
    y.write_text("data: d1\noutput-dir: o1\nlr: 0.001\nmax_steps: 5\npadding_free: false\n")
    cfg = parse_args(["--config", str(y), "--lr", "3e-4", "--output-dir", "o2"])
    assert (cfg.data, cfg.output_dir, cfg.lr, cfg.max_steps, cfg.padding_free) == ("d1", "o2", 3e-4, 5, False)
    cfg = parse_args(["--config", str(y), "--padding-free", "--resume"])
    assert cfg.padding_free is True and cfg.resume == "latest"
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--resume", "ckpt/x", "--warmup-steps", "none"])
    assert cfg.resume == "ckpt/x" and cfg.warmup_steps is None
    assert cfg.model is None and cfg.precision == "auto"  # embedded default; bf16-mixed on CUDA, fp32 on CPU
    assert (cfg.compile, cfg.activation_checkpointing) == ("auto", "auto")
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--compile", "--activation-checkpointing", "off"])
    assert (cfg.compile, cfg.activation_checkpointing) == ("on", "off")
    y.write_text("data: d1\noutput-dir: o1\ncompile: true\nactivation_checkpointing: false\n")  # older boolean keys
    cfg = parse_args(["--config", str(y)])
    assert (cfg.compile, cfg.activation_checkpointing) == ("on", "off")


def test_validation_errors(tmp_path):
    with pytest.raises(ConfigError, match="data"):
        parse_args(["--output-dir", "o"])
    with pytest.raises(ConfigError, match="learnig_rate: unknown key; did you mean 'learning_rate'"):
        TrainConfig.from_dict({"data": "d", "output_dir": "o", "learnig_rate": 1})
    with pytest.raises(ConfigError, match="grad_accum"):
        as_config({"data": "d", "output_dir": "o", "grad_accum": 0})
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--output-dir", "o", "--precision", "fp16"])
    assert as_config({"data": "d", "output_dir": "o", "model": "embedded", "resume": True}).model is None
    assert as_config({"data": "d", "output_dir": "o", "resume": True}).resume == "latest"


def test_help_shows_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "sftdata_train", "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "--output-dir" in out and "--max-steps" in out and "--model" in out
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
