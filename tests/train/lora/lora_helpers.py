"""Helpers shared by the LoRA tests (tests/train/lora/): a run's keys, the embedded base model, the DCP
keys of a checkpoint. The prepared data set is the ``data_dir`` fixture (tests/train/lora/conftest.py)."""

from __future__ import annotations


def lora_config(data_dir, out, **kw):
    """The keys of a short fp32 LoRA run (r 8) on ``data_dir`` writing to ``out``; ``kw`` overrides."""
    cfg = dict(data=str(data_dir), output_dir=str(out), precision="fp32", lr=1e-2, warmup_steps=1, max_steps=6,
               max_tokens_per_batch=700, progress_bar=False, seed=3, lora_r=8, eval_fraction=0.15)
    cfg.update(kw)
    return cfg


def base_model(seed=3):
    """The embedded default model (eval mode, SDPA attention, ``seed``) and its tokenizer."""
    from sftdata_train.model.loading import load_model, load_tokenizer

    tok = load_tokenizer(None)
    return load_model(None, tokenizer=tok, attn_implementation="sdpa", seed=seed).eval(), tok


def dcp_keys(ckpt_dir):
    """The tensor keys of a checkpoint's ``training_state/dcp`` (its DCP metadata)."""
    import torch.distributed.checkpoint as dcp

    return set(dcp.FileSystemReader(str(ckpt_dir / "training_state" / "dcp")).read_metadata().state_dict_metadata)
