"""Keys as users write them (earlier sftdata names, HF/TRL, Axolotl, LLaMA-Factory) → TrainConfig fields."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftdata.errors import ConfigError
from sftdata_train.config.aliases import _CONVERTERS, RENAMES, UNSUPPORTED, resolve_keys
from sftdata_train.config.command_line import parse_args
from sftdata_train.config.train_config import TrainConfig

NAMES = [f.name for f in dataclasses.fields(TrainConfig)]
BASE = {"data": "d", "output_dir": "o"}


def test_every_alias_targets_a_real_key():
    assert set(RENAMES.values()) <= set(NAMES)
    assert not set(RENAMES) & set(NAMES) and not set(UNSUPPORTED) & set(NAMES) and not set(_CONVERTERS) & set(NAMES)


def test_field_names_are_the_transformers_names():
    from transformers import TrainingArguments

    hf = {f.name for f in dataclasses.fields(TrainingArguments)}
    shared = {"learning_rate", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
              "warmup_steps", "lr_scheduler_type", "weight_decay", "max_grad_norm", "save_steps", "save_total_limit",
              "logging_steps", "seed", "gradient_checkpointing", "report_to", "output_dir", "resume_from_checkpoint",
              "adam_beta1", "adam_beta2", "adam_epsilon", "dataloader_num_workers", "eval_steps", "run_name"}
    assert shared <= hf and shared <= set(NAMES)


_VALUES = {"int": st.integers(1, 100), "float": st.floats(1e-6, 0.99), "str": st.sampled_from(["a", "b/c"]),
           "bool": st.booleans()}
_SPECIAL = {"activation_checkpointing": ("on", "off"), "torch_compile": ("on", "off"), "lr_scheduler": ("cosine", "linear")}


@pytest.mark.parametrize("alias", sorted(RENAMES))
@given(data=st.data())
def test_a_rename_means_its_key(alias, data):
    name = RENAMES[alias]
    kind = type(getattr(TrainConfig(), name)).__name__
    value = data.draw(st.sampled_from(_SPECIAL[alias]) if alias in _SPECIAL else _VALUES.get(kind, _VALUES["str"]))
    expected = {name: value, **({"use_peft": True} if name == "lora_r" else {})}
    assert resolve_keys({alias: value}) == (expected, [])
    assert resolve_keys({alias.replace("_", "-"): value})[0] == expected


def test_earlier_names_still_read():
    cfg = TrainConfig.from_dict({**BASE, "lr": 1e-3, "grad_accum": 2, "num_epochs": 3, "log_steps": 4,
                                 "resume": True, "activation_checkpointing": False, "lr_scheduler": "linear"})
    assert (cfg.learning_rate, cfg.gradient_accumulation_steps, cfg.num_train_epochs, cfg.logging_steps) == (
        1e-3, 2, 3, 4)
    assert (cfg.lr, cfg.grad_accum, cfg.num_epochs, cfg.log_steps) == (1e-3, 2, 3, 4)  # read-only properties
    assert (cfg.resume, cfg.activation_checkpointing, cfg.lr_scheduler) == ("latest", "off", "linear")


def test_an_hf_training_yaml():
    hf = {
        **BASE, "learning_rate": 1e-4, "num_train_epochs": 3, "gradient_accumulation_steps": 8, "warmup_ratio": 0.05,
        "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "bf16": True,
        "fp16": False, "tf32": False, "logging_steps": 5, "save_steps": 100, "save_total_limit": 2,
        "gradient_checkpointing": True, "optim": "adamw_torch_fused", "adam_epsilon": 1e-6, "eval_strategy": "steps",
        "eval_steps": 50, "report_to": ["tensorboard"], "run_name": "r", "model_name_or_path": "m",
        "attn_implementation": "flash_attention_2", "seed": 3,
    }
    cfg = TrainConfig.from_dict(hf)
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.gradient_accumulation_steps, cfg.warmup_ratio) == (
        1e-4, 3, 8, 0.05)
    assert (cfg.lr_scheduler, cfg.min_lr_ratio, cfg.precision) == ("cosine", 0.1, "bf16-mixed")
    assert (cfg.logging_steps, cfg.gradient_checkpointing, cfg.adam_epsilon, cfg.model) == (5, "on", 1e-6, "m")
    assert (cfg.report_to, cfg.run_name, cfg.attn_implementation) == ("tensorboard", "r", "flash_attn")
    assert TrainConfig.from_dict({**BASE, "bf16": False}).precision == "fp32"
    assert TrainConfig.from_dict({**BASE, "lr_scheduler_type": "constant_with_warmup"}).lr_scheduler == "constant"
    # transformers >= 5: warmup_steps < 1 is a ratio
    cfg = TrainConfig.from_dict({**BASE, "warmup_steps": 0.1})
    assert cfg.warmup_ratio == 0.1 and cfg.warmup_steps is None
    # Axolotl / LLaMA-Factory spellings
    cfg = TrainConfig.from_dict({**BASE, "base_model": "m", "val_set_size": 0.02, "flash_attention": True,
                                 "wandb_project": "p", "optimizer": "adamw_torch"})
    assert (cfg.model, cfg.eval_fraction, cfg.attn_implementation, cfg.project) == ("m", 0.02, "flash_attn", "p")


def test_lora_switches():
    assert (TrainConfig.from_dict({**BASE, "use_peft": True}).lora_r, TrainConfig.from_dict(
        {**BASE, "use_peft": True, "lora_r": 4}).lora_r) == (16, 4)  # TRL's default rank, or the one given
    assert TrainConfig.from_dict({**BASE, "finetuning_type": "lora"}).lora_r == 8  # LLaMA-Factory's default
    cfg = TrainConfig.from_dict({**BASE, "lora_r": 8})
    assert cfg.use_peft is True and TrainConfig.from_dict({**BASE, "lora_r": 0}).use_peft is False
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip


@pytest.mark.parametrize("d, message", [
    ({"learnig_rate": 1}, "learnig_rate: unknown key; did you mean 'learning_rate'?"),
    ({"gradient_acumulation_steps": 1}, "did you mean 'gradient_accumulation_steps'?"),
    ({"lr": 1, "learning_rate": 2}, "learning_rate: sets `learning_rate` (= 2), which lr already sets to 1; keep one"),
    ({"bf16": True, "precision": "fp32"}, "precision: sets `precision`"),
    ({"fp16": True}, "fp16: fp16 training is not supported"),
    ({"per_device_train_batch_size": 8}, "per_device_train_batch_size: sftdata_train batches by tokens"),
    ({"max_seq_length": 2048}, "max_seq_length: use `max_length`, a data option: sftdata prepare --max-length"),
    ({"lr_scheduler_type": "polynomial"}, "'polynomial' has no equivalent"),
    ({"optim": "adafactor"}, "'adafactor' is not available"),
    ({"eval_strategy": "epoch"}, "only 'steps' is supported (got 'epoch'): set eval_steps"),
    ({"report_to": "all"}, "'all' is not accepted: name the trackers"),
    ({"report_to": "tensorbaord"}, "did you mean 'tensorboard'?"),
    ({"adapter": "lora"}, "adapter: turns LoRA on: set lora_r (the rank; there is no default)"),
    ({"use_peft": False, "lora_r": 8}, "use_peft: full fine-tuning, but lora_r sets lora_r = 8; keep one"),
    ({"val_set_size": 100}, "only a fraction in [0, 1) is supported"),
])
def test_errors_name_the_key_and_what_to_do(d, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({**BASE, **d})
    assert message in str(info.value)


def test_all_errors_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({**BASE, "learnig_rate": 1, "fp16": True, "packing": True})
    assert str(info.value).count("\n  ") == 3


def test_hf_flag_spellings(tmp_path):
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--learning_rate", "3e-4", "--num-train-epochs", "2",
                      "--gradient_accumulation_steps", "4", "--gradient_checkpointing", "--report-to", "none"])
    assert (cfg.lr, cfg.num_epochs, cfg.grad_accum, cfg.activation_checkpointing) == (3e-4, 2.0, 4, "on")
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--gradient_checkpointing", "false", "--bf16", "false"])
    assert cfg.activation_checkpointing == "off" and cfg.precision == "fp32"
    cfg = parse_args(["--data", "d", "--output_dir", "o", "--report_to", "tensorboard", "wandb"][:-1])
    assert cfg.report_to == "tensorboard"
    y = tmp_path / "trl.yaml"
    y.write_text("data: d\noutput_dir: o\nlearning_rate: 2.0e-5\nnum_train_epochs: 1\nbf16: true\n")
    cfg = parse_args(["--config", str(y), "--lr", "1e-3"])
    assert cfg.lr == 1e-3 and cfg.precision == "bf16-mixed"
    cfg = parse_args(["--config", str(y), "--use_peft"])
    assert (cfg.use_peft, cfg.lora_r) == (True, 16)
    y.write_text("data: d\noutput_dir: o\nlora_r: 4\n")
    assert parse_args(["--config", str(y), "--use_peft"]).lora_r == 4  # the file's rank, switched on by the flag
