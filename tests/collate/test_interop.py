"""Our datasets and collators in HF ``Trainer``, TRL ``SFTTrainer`` and a plain PyTorch loop.

Tiny models from configs, a WordLevel tokenizer built offline, a few steps each, no Hub.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator
from sftdata.packing import pack_dataset
from sftdata.collate.samplers import LengthGroupedSampler, TokenBudgetBatchSampler

IGNORE = -100
VOCAB = 64



@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(VOCAB - 3)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model():
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
        bos_token_id=1,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")


@pytest.fixture(scope="module")
def prepared(tokenizer):
    """Rows of the `sftdata prepare` schema, tokenized with the tiny tokenizer."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        prompt = " ".join(f"w{j}" for j in rng.integers(0, 30, int(rng.integers(3, 20))))
        answer = " ".join(f"w{j}" for j in rng.integers(30, VOCAB - 3, int(rng.integers(2, 15))))
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append({"input_ids": p + a, "labels": [IGNORE] * len(p) + a, "length": len(p) + len(a), "source_index": i})
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="module")
def packed(prepared):
    ds, report = pack_dataset(prepared, 64)
    assert report.bins < len(prepared)
    return ds


class Recorder:
    """Wraps a collator and checks every batch it makes."""

    def __init__(self, collator, packed_rows=None):
        self.collator, self.batches, self.packed_rows = collator, [], packed_rows

    def __call__(self, features):
        batch = self.collator(features)
        if "cu_seq_lens_q" in batch:
            seqs = []
            for f in features:  # trainers drop different columns: HF keeps position_ids, TRL seq_lengths
                n = len(f["input_ids"])
                if f.get("seq_lengths") is not None:
                    seqs.extend(f["seq_lengths"])
                elif f.get("position_ids") is not None:
                    seqs.extend(np.diff(np.append(np.flatnonzero(np.asarray(f["position_ids"]) == 0), n)))
                else:
                    seqs.append(n)
            assert batch["cu_seq_lens_q"].diff().tolist() == [int(x) for x in seqs]
            assert "attention_mask" not in batch
        self.batches.append(batch)
        return batch


def training_args(tmp_path, **kw):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3, report_to=[],
        logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, **kw,
    )


def test_hf_trainer_padded(prepared, tmp_path):
    from transformers import Trainer

    rec = Recorder(PaddingCollator(0, pad_to_multiple_of=8))
    trainer = Trainer(model=tiny_model(), args=training_args(tmp_path), train_dataset=prepared, data_collator=rec)
    out = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(out.training_loss)
    assert all(b["input_ids"].shape[1] % 8 == 0 for b in rec.batches)


def test_hf_trainer_packed_padding_free(packed, tmp_path):
    """Trainer drops the non-signature columns (seq_lengths...); position_ids still carry the boundaries."""
    from transformers import Trainer

    rec = Recorder(PaddingFreeCollator())
    trainer = Trainer(model=tiny_model(), args=training_args(tmp_path), train_dataset=packed, data_collator=rec)
    out = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(out.training_loss)
    assert all(b["input_ids"].shape[0] == 1 and b["cu_seq_lens_q"].numel() > 5 for b in rec.batches)


def test_trl_sft_trainer_pretokenized(prepared, tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    rec = Recorder(PaddingFreeCollator())
    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3, report_to=[],
        logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, max_length=None,
    )
    trainer = SFTTrainer(model=tiny_model(), args=args, train_dataset=prepared, processing_class=tokenizer,
                         data_collator=rec)
    out = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(out.training_loss)
    # TRL kept our labels: the prompt stays masked
    first = rec.batches[0]
    assert (first["labels"] == IGNORE).sum() > first["cu_seq_lens_q"].numel() - 1


def test_trl_sft_trainer_packed(packed, tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    rec = Recorder(PaddingFreeCollator())
    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3, report_to=[],
        logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True, max_length=None,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = SFTTrainer(model=tiny_model(), args=args, train_dataset=packed, processing_class=tokenizer,
                         data_collator=rec)
    out = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(out.training_loss)


def test_plain_pytorch_loop(packed, prepared):
    from torch.utils.data import DataLoader

    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sampler = TokenBudgetBatchSampler(packed["length"], 256, seed=0)
    loader = DataLoader(packed.with_format("numpy"), batch_sampler=sampler, collate_fn=PaddingFreeCollator())
    probe = PaddingFreeCollator()([prepared[i] for i in range(8)])

    def probe_loss():
        with torch.no_grad():
            return float(model(**probe).loss)

    before = probe_loss()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["input_ids"].shape[1] <= 256
            loss = model(**batch).loss  # a plain loop: our batch carries use_cache=False
            loss.backward()
            opt.step()
            opt.zero_grad()
    assert probe_loss() < before
    # padded batches from a length-grouped sampler work the same way
    loader = DataLoader(prepared.select_columns(["input_ids", "labels"]), batch_size=8,
                        sampler=LengthGroupedSampler(prepared["length"], 8), collate_fn=PaddingCollator(0))
    for batch in loader:
        with torch.no_grad():
            assert math.isfinite(float(model(**batch).loss))
