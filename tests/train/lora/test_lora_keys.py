"""LoRA/QLoRA keys (sftdata_train/lora/adapter.py, sftdata_train/config/): QLoRA without
CUDA/bitsandbytes, and LoRA keys without a rank, are clear errors; the TRL, LLaMA-Factory and Axolotl keys
map onto sftdata_train's, on the command line and under a pipeline's ``train:``.
"""

from __future__ import annotations

import pytest
import torch

from sftdata.errors import ConfigError
from sftdata_train.lora import adapter as lora
from sftdata_train.config.command_line import parse_args
from sftdata_train.config.train_config import TrainConfig
from sftdata_train.loop.trainer import Trainer, train

from lora_helpers import lora_config

peft = pytest.importorskip("peft")


# ----------------------------------------------------------------------------- errors
def test_qlora_without_cuda_or_bitsandbytes_is_a_clear_error(monkeypatch):
    base = dict(data="d", output_dir="o", lora_r=8, load_in_4bit=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"load_in_4bit \(QLoRA\) needs a CUDA GPU \(CUDA is not available\)"):
            TrainConfig.from_dict(base).validate()
    with pytest.raises(ConfigError, match="needs a CUDA GPU \\(device is cpu\\)"):
        TrainConfig.from_dict({**base, "device": "cpu"}).validate()
    # CUDA present but no bitsandbytes
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match="needs the `bitsandbytes` package, which is not installed: pip install"):
        TrainConfig.from_dict(base).validate()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match="precision bf16-mixed"):
        TrainConfig.from_dict({**base, "precision": "bf16-mixed"}).validate()
    # on several processes
    from sftdata_train.distributed import DistInfo

    cfg = TrainConfig.from_dict(base).validate()
    with pytest.raises(ConfigError, match="on 2 processes: FSDP2 cannot shard"):
        lora.check_runtime(cfg, DistInfo(rank=0, world_size=2, device=torch.device("cuda", 0)))


def test_lora_errors(monkeypatch, data_dir, tmp_path):
    with pytest.raises(ConfigError, match="lora_alpha, merge_lora set but `lora_r` is 0"):
        TrainConfig.from_dict(dict(data="d", output_dir="o", lora_alpha=16, merge_lora=True)).validate()
    with pytest.raises(ConfigError, match="use_dora set but `lora_r` is 0"):
        TrainConfig.from_dict(dict(data="d", output_dir="o", use_dora=True)).validate()
    for bad, msg in (({"lora_r": -1}, "lora_r` must be an integer >= 0"), ({"lora_dropout": 1.0}, "lora_dropout"),
                     ({"lora_target_modules": "all-linear,q_proj"}, "all-linear stands alone")):
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict({"data": "d", "output_dir": "o", "lora_r": 4, **bad}).validate()
    with pytest.raises(ConfigError, match="Target modules .*not found"):
        Trainer(lora_config(data_dir, tmp_path / "t", lora_target_modules="nope_proj"))
    with pytest.raises(ConfigError, match="LoRA on the LM head is not supported"):
        Trainer(lora_config(data_dir, tmp_path / "t2", lora_target_modules="q_proj,lm_head"))
    # a checkpoint resumes only with the adapter it was written with, and not as full fine-tuning
    train(lora_config(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0))
    with pytest.raises(ConfigError, match="lora_r: checkpoint 8, now 4"):
        Trainer(lora_config(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0, lora_r=4, resume="latest"))
    with pytest.raises(ConfigError, match="holds a LoRA adapter"):
        Trainer(lora_config(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0, lora_r=0, resume="latest"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the `peft` package, which is not installed: pip install 'sftdata\[lora\]'"):
        TrainConfig.from_dict(dict(data="d", output_dir="o", lora_r=4)).validate()


# ----------------------------------------------------------------------------- aliases
@pytest.mark.parametrize("keys, expected", [
    # TRL (SFTConfig/ModelConfig, `trl sft --use_peft ...`)
    ({"use_peft": True}, {"lora_r": 16}),
    ({"use_peft": True, "lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.05, "lora_target_modules": ["q_proj", "v_proj"],
      "lora_modules_to_save": ["lm_head"], "use_rslora": True},
     {"lora_r": 32, "lora_alpha": 64, "lora_dropout": 0.05, "lora_target_modules": "q_proj,v_proj",
      "lora_modules_to_save": "lm_head", "use_rslora": True}),
    ({"use_peft": False}, {"lora_r": 0}),
    ({"use_peft": True, "lora_task_type": "CAUSAL_LM", "use_dora": False}, {"lora_r": 16}),
    ({"use_peft": True, "use_dora": True}, {"lora_r": 16, "use_dora": True}),
    # LLaMA-Factory
    ({"finetuning_type": "lora"}, {"lora_r": 8, "lora_target_modules": None}),
    ({"finetuning_type": "lora", "lora_rank": 16, "lora_target": "all"}, {"lora_r": 16, "lora_target_modules": None}),
    ({"finetuning_type": "lora", "lora_target": "q_proj,v_proj", "additional_target": "lm_head"},
     {"lora_r": 8, "lora_target_modules": "q_proj,v_proj", "lora_modules_to_save": "lm_head"}),
    ({"finetuning_type": "full"}, {"lora_r": 0}),
    # Axolotl
    ({"adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True},
     {"lora_r": 8, "lora_alpha": 16, "lora_target_modules": None}),
    ({"adapter": "lora", "lora_r": 4, "lora_target_modules": ["q_proj", "k_proj"], "peft_use_rslora": True},
     {"lora_r": 4, "lora_target_modules": "q_proj,k_proj", "use_rslora": True}),
    ({"adapter": "lora", "lora_r": 4, "peft_use_dora": True}, {"lora_r": 4, "use_dora": True}),
    # LLaMA-Factory's spelling is sftdata_train's
    ({"finetuning_type": "lora", "use_dora": True}, {"lora_r": 8, "use_dora": True}),
])
def test_lora_aliases(keys, expected):
    cfg = TrainConfig.from_dict({"data": "d", "output_dir": "o", **keys}).validate()
    for k, v in expected.items():
        assert getattr(cfg, k) == v, (k, getattr(cfg, k))


@pytest.mark.parametrize("keys, message", [
    ({"adapter": "lora"}, "adapter: turns LoRA on: set lora_r (the rank; there is no default)"),
    ({"adapter": "dora"}, "adapter: expected lora or qlora"),
    ({"finetuning_type": "freeze"}, "finetuning_type: expected full or lora, got 'freeze' (not supported)"),
    ({"use_peft": False, "lora_r": 8}, "use_peft: full fine-tuning, but lora_r sets lora_r = 8"),
    ({"finetuning_type": "full", "use_peft": True}, "finetuning_type: full fine-tuning, but use_peft turns LoRA on"),
    ({"use_peft": True, "lora_r": 0}, "use_peft: turns LoRA on, but lora_r sets lora_r = 0"),
    ({"adapter": "lora", "lora_r": 8, "lora_target_linear": True, "lora_target_modules": "q_proj"},
     "lora_target_modules: sets `lora_target_modules`"),
    ({"use_peft": True, "load_in_8bit": True}, "load_in_8bit: 8-bit loading is not supported"),
    ({"finetuning_type": "lora", "quantization_bit": 8}, "quantization_bit: only 4"),
    ({"use_peft": True, "lora_task_type": "SEQ_CLS"}, "lora_task_type: 'SEQ_CLS' is not supported"),
])
def test_lora_alias_errors(keys, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"data": "d", "output_dir": "o", **keys})
    assert message in str(info.value)


def test_qlora_aliases_reach_the_qlora_check():
    """Axolotl ``adapter: qlora``, LLaMA-Factory ``quantization_bit: 4`` and TRL ``load_in_4bit`` all mean
    QLoRA: here (no CUDA) each is the same clear error, after the keys mapped without complaint."""
    for keys in ({"adapter": "qlora", "lora_r": 8}, {"finetuning_type": "lora", "quantization_bit": 4,
                                                     "quantization_type": "nf4", "double_quantization": True},
                 {"use_peft": True, "load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "use_bnb_nested_quant": True}):
        cfg = TrainConfig.from_dict({"data": "d", "output_dir": "o", **keys})
        assert cfg.load_in_4bit and cfg.lora_r > 0
        if not torch.cuda.is_available():
            with pytest.raises(ConfigError, match="needs a CUDA GPU"):
                cfg.validate()


def test_trl_command_line_spellings():
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--use_peft", "--lora_r", "4", "--lora_alpha", "8",
                      "--lora_dropout", "0.1", "--lora_target_modules", "q_proj", "v_proj"])
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules) == (4, 8.0, 0.1, "q_proj,v_proj")
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--use-peft"])
    assert cfg.lora_r == 16
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--lora-r", "2", "--lora-target-modules", "q_proj,k_proj",
                      "--merge-lora"])
    assert (cfg.lora_r, cfg.lora_target_modules, cfg.merge_lora) == (2, "q_proj,k_proj", True)
    cfg = parse_args(["--data", "d", "--output-dir", "o", "--use_peft", "--use_dora"])
    assert (cfg.lora_r, cfg.use_dora) == (16, True)


# ----------------------------------------------------------------------------- the pipeline
def test_pipeline_train_section_takes_the_lora_keys(tmp_path, monkeypatch):
    """``sftdata run``: the TRL LoRA keys under ``train:`` reach the train stage, which writes the
    merged model; a misspelt LoRA key is reported with its path before anything runs."""
    from pathlib import Path

    from sftdata_train.pipeline import load_config, run_pipeline

    root = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(root)  # the example's dataset paths are relative to the repository root
    over = [f"output_dir={tmp_path / 'out'}", "pack=256", "train.max_tokens_per_batch=256", "train.progress_bar=false",
            "train.max_steps=3", "train.use_peft=true", "train.lora_r=4", "train.lora_target_modules=[q_proj, v_proj]",
            "train.merge_lora=true"]
    result = run_pipeline(root / "examples" / "pipeline.yaml", overrides=over, log=lambda s: None)
    train_cfg = result.config.train
    assert (train_cfg["lora_r"], train_cfg["lora_target_modules"], train_cfg["merge_lora"]) == (4, "q_proj,v_proj", True)
    final = tmp_path / "out" / "train" / "final"
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    assert (tmp_path / "out" / "train" / "checkpoint-3" / "adapter_model.safetensors").is_file()
    with pytest.raises(ConfigError, match=r"train.lora_rnak: unknown key; did you mean 'lora_rank'"):
        load_config({"output_dir": str(tmp_path / "x"), "datasets": [{"path": "examples/traces.jsonl"}],
                     "train": {"lora_rnak": 8}})
