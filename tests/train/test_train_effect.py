"""Training effect on real traces with the embedded default model, and the minimal CLI."""

from __future__ import annotations

import json

import pytest
import torch

from sftdata_train.cli import main
from sftdata_train.loop.trainer import Trainer
from sftdata_train.testing import prepare_dir, shared_data_dir, synthetic_conversations



@pytest.mark.shared_data
def test_loss_falls_on_prepared_real_traces(tmp_path):
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("../shared/data (real traces) is not present")
    src = shared / "llamafactory" / "glaive_toolcall_en_demo.json"
    ds = prepare_dir([str(src)], tmp_path / "full")
    assert len(ds) > 100
    # keep it CPU-sized: rows up to 1,024 tokens
    small = ds.filter(lambda n: n <= 1024, input_columns="length").select(range(200))
    small.save_to_disk(str(tmp_path / "prepared"))

    steps = 20
    trainer = Trainer(dict(
        data=str(tmp_path / "prepared"), output_dir=str(tmp_path / "out"), precision="fp32", lr=3e-3,
        warmup_steps=3, max_steps=steps, max_tokens_per_batch=2048, eval_fraction=0.1, eval_steps=steps,
        progress_bar=False,
    ))
    assert trainer.config.model is None  # the embedded default Qwen3
    assert trainer.hf_model.config.model_type == "qwen3"
    before = trainer.evaluate()
    result = trainer.fit()
    after = result.eval_losses[steps]
    first, last = result.losses[0], sum(result.losses[-4:]) / 4
    print(f"train loss {first:.3f} -> {last:.3f}; held-out loss {before:.3f} -> {after:.3f}")
    assert last < first - 1.5
    assert after < before - 1.5


def test_cli_trains_embedded_default_with_only_data_and_output_dir(tmp_path):
    prepare_dir(synthetic_conversations(16, seed=7), tmp_path / "prepared")
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "prepared"), "--output-dir", str(out), "--no-progress-bar"]) == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs and recs[-1]["step"] >= 1 and recs[-1]["loss"] > 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert model.dtype == torch.float32  # precision auto = fp32 on a CPU, exported as trained
    assert (out / "final" / "tokenizer.json").is_file()
    assert main(["--output-dir", str(out)]) == 2  # missing --data: a clean error, not a traceback
