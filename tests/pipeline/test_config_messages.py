"""One message per misplaced key, the same wherever it is written: the top level of a pipeline config,
its `train:` section, a sftdata-train YAML, a sftdata-train flag (issue 18's ten config mistakes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sftdata.errors import ConfigError
from sftdata_train.config.command_line import parse_args
from sftdata_train.config.train_config import TrainConfig
from sftdata_train.pipeline import load_config

ROOT = Path(__file__).resolve().parents[2]
MISTAKES = {  # key → a value a TRL / Axolotl / LLaMA-Factory user writes
    "packing": True, "max_seq_length": 2048, "assistant_only_loss": True, "cutoff_len": 2048, "template": "qwen3",
    "dataset_text_field": "text", "pad_to_sequence_len": True, "eos_token": "<|im_end|>",
    "per_device_train_batch_size": 8, "completion_only_loss": True,
}


def _message(error: str, path: str) -> str:
    lines = [line.strip() for line in error.splitlines()]
    found = [line[len(path) + 2:] for line in lines if line.startswith(f"{path}: ")]
    assert len(found) == 1, (path, error)
    return found[0]


def _raises(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("key", sorted(MISTAKES))
def test_one_message_wherever_the_key_is_written(key, tmp_path):
    value = MISTAKES[key]
    base = {"output_dir": str(tmp_path / "o"), "datasets": ["examples/traces.jsonl"]}
    messages = {
        "pipeline top level": _message(_raises(load_config, {**base, key: value}), key),
        "pipeline train:": _message(_raises(load_config, {**base, "train": {key: value}}), f"train.{key}"),
        "train YAML": _message(_raises(TrainConfig.from_dict, {"data": "d", "output_dir": "o", key: value}), key),
        "flag": _message(_raises(parse_args, ["--data", "d", "--output_dir", "o", f"--{key}", str(value)]), f"--{key}"),
        "flag, - spelling": _message(_raises(parse_args, ["--data", "d", "--output_dir", "o",
                                                          f"--{key.replace('_', '-')}", str(value)]),
                                     f"--{key.replace('_', '-')}"),
    }
    assert len(set(messages.values())) == 1, messages
    message = messages["flag"]
    assert not message.startswith("unknown key"), message
    # it says where the key goes or what to use instead: a command or a key name in backquotes
    assert re.search(r"sftdata (prepare|pack)|max_tokens_per_batch|`\w+`", message), message


def test_a_training_key_at_the_top_level_and_a_data_key_under_train_point_to_each_other(tmp_path):
    base = {"output_dir": str(tmp_path / "o"), "datasets": ["examples/traces.jsonl"]}
    error = _raises(load_config, {**base, "learning_rate": 1e-4, "train": {"max_length": 512}})
    assert _message(error, "learning_rate") == "a training option: put it under `train:`"
    assert _message(error, "train.max_length").startswith("a data option: sftdata prepare --max-length; in a "
                                                          "pipeline config: `max_length:` at the top level")
    load_config({**base, "max_length": 512, "train": {"learning_rate": 1e-4}})  # where they belong: accepted


def test_the_cli_prints_one_line_and_exits_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sftdata_train", "--data", "d", "--output_dir", str(tmp_path / "o"), "--packing",
         "--warmup_ratio", "0.1", "--per_device_train_batch_size", "8"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "sftdata-train: error: bad config keys:" and len(lines) == 3, out.stderr
    assert lines[1].strip().startswith("--packing: packing is its own stage")
    assert lines[2].strip().startswith("--per_device_train_batch_size: sftdata_train batches by tokens")
    assert "usage:" not in out.stderr and "Traceback" not in out.stderr
