"""LoRA/QLoRA through peft (sftdata_train/lora/adapter.py), trained on one process.

* only the adapters train: the frozen weights are bit-identical after the steps, AdamW holds the
  adapters only, the LM head gets no gradient, the attention routing is the trainer's;
* the eval loss falls on the embedded default model (CPU, fp32);
* resuming is exact (losses of a stopped + resumed run equal the uninterrupted run's, with LoRA
  dropout on, so the RNG states matter), checkpoints are peft adapter dirs;
* the merged export (``merge_lora``) loads with ``AutoModelForCausalLM`` and gives the logits of
  base + adapter (``PeftModel.from_pretrained``) within 1e-5; with ``lora_modules_to_save: lm_head``
  the trained head and the tied embedding stay one tensor; a bf16 export writes tied weights once;
* padded, padding-free and packed batches give the same LoRA trajectory;
* DoRA (``use_dora``): magnitudes and adapters train, resume is exact, the merged export agrees;
* ``lora_init_adapter`` starts from a trained adapter (its weights and definition; clashing keys
  refused).

The layer-level checks (merge, gradients, compile) and FSDP2 are in test_lora_layers.py, the keys and
errors in test_lora_keys.py.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from sftdata.errors import ConfigError
from sftdata_train.model import attention
from sftdata_train.config.train_config import TrainConfig
from sftdata_train.loop.trainer import Trainer, train
from sftdata_train.testing import pack_dir, prepare_dir, synthetic_conversations

from lora_helpers import base_model, dcp_keys, lora_config

peft = pytest.importorskip("peft")


def test_only_adapters_train_and_the_loss_falls(data_dir, tmp_path):
    t = Trainer(lora_config(data_dir, tmp_path / "run", max_steps=8))
    hf = t.hf_model
    trainable = {n: p for n, p in t.wrapper.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # not lm_head
    in_optimizer = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in trainable.values()}
    frozen = {n: p.detach().clone() for n, p in t.wrapper.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in trainable.items()}
    # peft left the trainer's routing alone: the forward runs sftdata's attention function
    from transformers import AttentionInterface

    routed, calls = AttentionInterface()[attention.ATTN_NAME], []
    AttentionInterface.register(attention.ATTN_NAME, lambda *a, **k: calls.append(1) or routed(*a, **k))
    try:
        before = t.evaluate()
    finally:
        AttentionInterface.register(attention.ATTN_NAME, routed)
    assert calls and len(calls) % hf.config.num_hidden_layers == 0

    res = t.fit()

    after = res.eval_losses[8]
    print("eval loss before/after 8 LoRA steps:", before, after, "train losses:", res.losses)
    assert after < before - 0.2
    for n, p in t.wrapper.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # bit-identical
            assert p.grad is None, n
        else:
            assert not torch.equal(p, adapters[n]), n
    assert hf.get_output_embeddings().weight.requires_grad is False
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and all(r["grad_norm"] > 0 for r in recs)
    assert "LoRA r=8 alpha=16" in t.describe()


def test_resume_is_exact_and_exports_match(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    kw = dict(lora_dropout=0.1, save_steps=3, eval_steps=3)
    full = train(lora_config(data_dir, tmp_path / "full", merge_lora=True, **kw))
    assert full.completed and len(full.losses) == 6

    cut = train(lora_config(data_dir, tmp_path / "cut", stop_at_step=4, **kw))
    assert cut.losses == full.losses[:4] and not cut.completed
    ck = tmp_path / "cut" / "checkpoint-4"
    # a checkpoint is a peft adapter dir + the DCP training state of the trainable parameters only
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(os.listdir(ck))
    assert not (ck / "config.json").exists() and not (ck / "model.safetensors").exists()
    model_keys = {k for k in dcp_keys(ck) if k.startswith("model.")}
    assert model_keys and all(".lora_A." in k or ".lora_B." in k for k in model_keys)

    resumed = train(lora_config(data_dir, tmp_path / "cut", resume="latest", **kw))
    assert resumed.first_step == 4 and resumed.completed
    print("uninterrupted:", full.losses, "\nresumed      :", cut.losses + resumed.losses)
    assert resumed.losses == pytest.approx(full.losses[4:], abs=1e-7, rel=0)
    assert resumed.eval_losses[6] == pytest.approx(full.eval_losses[6], abs=1e-7, rel=0)

    # final/ without merge_lora is the adapter; with it the merged model: both give the same logits
    base, tok = base_model()
    with_adapter = peft.PeftModel.from_pretrained(base, str(tmp_path / "cut" / "final")).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "full" / "final"), attn_implementation="sdpa").eval()
    assert not any("lora" in k for k in merged.state_dict())
    ids = torch.tensor([tok("Q1: flight booking window seat? A1: refund status today.")["input_ids"]])
    with torch.no_grad():
        a, b = with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits
        plain = base.get_base_model()(input_ids=ids).logits if hasattr(base, "get_base_model") else None
    print("max |merged - base+adapter| logits:", float((a - b).abs().max()))
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert plain is None or not torch.allclose(a, plain, atol=1e-3)


def test_dora_trains_magnitudes_and_adapters_resumes_and_merges(data_dir, tmp_path):
    """use_dora: peft's DoRA layers (a trained magnitude per output feature); frozen weights stay
    bit-identical, the loss falls, a stopped + resumed run equals the uninterrupted one, and the
    merged export gives the logits of base + DoRA adapter."""
    from transformers import AutoModelForCausalLM

    t = Trainer(lora_config(data_dir, tmp_path / "probe", use_dora=True, max_steps=8))
    trainable = {n for n, p in t.wrapper.named_parameters() if p.requires_grad}
    assert any(".lora_magnitude_vector." in n for n in trainable)
    assert all(".lora_A." in n or ".lora_B." in n or ".lora_magnitude_vector." in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in t.wrapper.named_parameters() if not p.requires_grad}
    before = t.evaluate()
    res = t.fit()
    print("DoRA eval loss before/after 8 steps:", before, res.eval_losses[8])
    assert res.eval_losses[8] < before - 0.2
    assert all(torch.equal(p, frozen[n]) for n, p in t.wrapper.named_parameters() if n in frozen)
    assert "DoRA r=8 alpha=16" in t.describe()

    kw = dict(use_dora=True, lora_dropout=0.1, save_steps=2, eval_steps=2, max_steps=4)
    full = train(lora_config(data_dir, tmp_path / "full", merge_lora=True, **kw))
    cut = train(lora_config(data_dir, tmp_path / "cut", stop_at_step=2, **kw))
    resumed = train(lora_config(data_dir, tmp_path / "cut", resume="latest", **kw))
    assert cut.losses == full.losses[:2]
    assert resumed.losses == pytest.approx(full.losses[2:], abs=1e-7, rel=0)
    with pytest.raises(ConfigError, match="use_dora: checkpoint True, now False"):
        train(lora_config(data_dir, tmp_path / "cut", resume="latest", **{**kw, "use_dora": False}))

    base, tok = base_model()
    with_adapter = peft.PeftModel.from_pretrained(base, str(tmp_path / "cut" / "final")).eval()
    assert with_adapter.peft_config["default"].use_dora
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "full" / "final"), attn_implementation="sdpa").eval()
    ids = torch.tensor([tok("Q1: flight booking window seat? A1: refund status today.")["input_ids"]])
    with torch.no_grad():
        a, b = with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits
    print("DoRA: max |merged - base+adapter| logits:", float((a - b).abs().max()))
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_lora_init_adapter_continues_a_trained_adapter(data_dir, tmp_path):
    """lora_init_adapter (Axolotl lora_model_dir, LLaMA-Factory adapter_name_or_path): the run
    starts from the adapter's weights (its first eval loss is the first run's last), takes the
    adapter's definition, refuses a clashing one, and trains on from there."""
    first = train(lora_config(data_dir, tmp_path / "a", lora_r=4, lora_alpha=12, use_dora=True,
                       lora_target_modules="q_proj,v_proj,down_proj", max_steps=4, eval_steps=4))
    adapter = str(tmp_path / "a" / "final")
    t = Trainer(lora_config(data_dir, tmp_path / "b", lora_r=0, lora_init_adapter=adapter, lora_dropout=0.1, max_steps=3))
    cfg = t.config
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules, cfg.use_dora, cfg.lora_dropout) == \
        (4, 12.0, "down_proj,q_proj,v_proj", True, 0.1)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "a" / "final" / "adapter_model.safetensors"))
    trainable = {n.removeprefix("model."): p for n, p in t.wrapper.named_parameters() if p.requires_grad}
    assert len(trainable) == len(saved)
    for k, v in saved.items():  # peft saves "base_model.model.<HF name>" without the adapter's name ("default")
        name = k.removeprefix("base_model.model.").replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight") \
            .replace(".lora_magnitude_vector", ".lora_magnitude_vector.default.weight")
        assert torch.equal(trainable[name].detach().cpu(), v), k
    assert t.evaluate() == pytest.approx(first.eval_losses[4], abs=1e-6)
    res = t.fit()
    assert res.completed and res.eval_losses[3] < first.eval_losses[4]

    for clash, msg in (({"lora_r": 8}, "lora_r: 8 here, 4 in the adapter"),
                       ({"lora_alpha": 4.0}, "lora_alpha: 4.0 here, 12.0 in the adapter"),
                       ({"lora_target_modules": "q_proj"}, "lora_target_modules: 'q_proj' here")):
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict(dict(data="d", output_dir="o", lora_init_adapter=adapter, **clash)).validate()
    with pytest.raises(ConfigError, match="not a peft adapter"):
        TrainConfig.from_dict(dict(data="d", output_dir="o", lora_init_adapter=str(tmp_path / "nothing"))).validate()
    for alias in ("lora_model_dir", "adapter_name_or_path"):
        cfg = TrainConfig.from_dict({"data": "d", "output_dir": "o", alias: adapter}).validate()
        assert (cfg.lora_init_adapter, cfg.lora_r) == (adapter, 4)

    # an adapter whose tensors do not fit the model: one missing, or one with no place in it
    import shutil

    from safetensors.torch import save_file

    for change, msg in (("drop", "1 adapter tensors not in it"), ("add", "1 of its tensors have no place in the model")):
        bad = tmp_path / f"bad-{change}"
        shutil.copytree(adapter, bad)
        tensors = dict(saved)
        if change == "drop":
            tensors.pop(sorted(tensors)[0])
        else:
            tensors["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 128)
        save_file(tensors, str(bad / "adapter_model.safetensors"))
        with pytest.raises(ConfigError, match=msg):
            Trainer(lora_config(data_dir, tmp_path / f"run-{change}", lora_r=0, lora_init_adapter=str(bad)))


def test_batch_stream_leaves_the_global_rng_alone(data_dir, tmp_path):
    """Bug found by the dropout resume test: opening the DataLoader iterator drew the workers' base
    seed from the global torch RNG, so a resumed run (opening it mid-epoch, after the RNG was
    restored) saw other LoRA dropout masks than the uninterrupted run."""
    t = Trainer(lora_config(data_dir, tmp_path / "rng", eval_fraction=0))
    state = torch.get_rng_state()
    for _ in range(t.stream.batches_per_epoch + 2):  # across an epoch boundary (a new iterator)
        next(t.stream)
    assert torch.equal(torch.get_rng_state(), state)


def test_trained_lm_head_stays_tied_and_merges(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "head"
    cfg = lora_config(data_dir, out, max_steps=3, lora_modules_to_save="lm_head", merge_lora=True, eval_fraction=0)
    if "ensure_weight_tying" not in peft.LoraConfig.__dataclass_fields__:  # older peft: refused, clearly
        with pytest.raises(ConfigError, match="needs peft's ensure_weight_tying"):
            Trainer(cfg)
        return
    t = Trainer(cfg)
    head = t.hf_model.get_output_embeddings()
    assert head.weight.requires_grad and head.weight is t.hf_model.get_input_embeddings().weight  # one tensor
    start = head.weight.detach().clone()
    t.fit()
    assert not torch.equal(head.weight, start)  # the head trained (through the same chunked loss)
    merged = AutoModelForCausalLM.from_pretrained(str(out / "final"), attn_implementation="sdpa").eval()
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight
    base, tok = base_model()
    with_adapter = peft.PeftModel.from_pretrained(base, str(out / "checkpoint-3")).eval()
    ids = torch.tensor([tok("Q2: hotel price tonight? A2: confirm.")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5, rtol=0)


def test_padded_padding_free_and_packed_batches_train_alike(tmp_path):
    from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator
    from sftdata.packing import unpack_row

    prepare_dir(synthetic_conversations(60, seed=1), tmp_path / "prepared")
    packed = pack_dir(tmp_path / "prepared", tmp_path / "packed", 256, seed=0)
    rows = [r for r in (packed[i] for i in range(len(packed))) if len(r["seq_lengths"]) >= 2][:3]
    seqs = [unpack_row(r) for r in rows]

    def run(name, padding_free, batches):
        t = Trainer(lora_config(tmp_path / "prepared", tmp_path / name, padding_free=padding_free, lr=3e-3, warmup_steps=0,
                         lr_scheduler="constant", max_tokens_per_batch=4096, eval_fraction=0, lora_dropout=0.0))
        return [t.train_step([mb]).loss for mb in batches]

    ref = run("pad", False, [PaddingCollator(0)(s) for s in seqs])
    assert ref[-1] < ref[0]
    for name, pf, batches in (("pf", True, [PaddingFreeCollator()(s) for s in seqs]),
                              ("pk", True, [PaddingFreeCollator()([r]) for r in rows])):
        assert run(name, pf, batches) == pytest.approx(ref, abs=1e-5, rel=0), name


@pytest.mark.parametrize("lora_r", [0, 4])
def test_bf16_export_writes_tied_weights_once(data_dir, tmp_path, lora_r):
    """Bug found while checking LoRA's merged export: final/ in bf16 from fp32 weights (and any
    gathered FSDP2 state) cast the embedding and the tied LM head separately, so model.safetensors
    held the (vocab, hidden) matrix twice. Full fine-tuning and the LoRA merge alike."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    kw = dict(lora_r=lora_r, merge_lora=bool(lora_r))
    train(lora_config(data_dir, out, precision="bf16-mixed", max_steps=1, eval_fraction=0, **kw))
    with safe_open(str(out / "final" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    m = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert m.lm_head.weight is m.model.embed_tokens.weight
