"""LoRA/QLoRA through peft (sftdata_train/lora/adapter.py).

* only the adapters train: the frozen weights are bit-identical after the steps, AdamW holds the
  adapters only, the LM head gets no gradient, the attention routing is the trainer's;
* the eval loss falls on the embedded default model (CPU, fp32);
* resuming is exact (losses of a stopped + resumed run equal the uninterrupted run's, with LoRA
  dropout on, so the RNG states matter), checkpoints are peft adapter dirs;
* the merged export (``merge_lora``) loads with ``AutoModelForCausalLM`` and gives the logits of
  base + adapter (``PeftModel.from_pretrained``) within 1e-5; with ``lora_modules_to_save: lm_head``
  the trained head and the tied embedding stay one tensor;
* padded, padding-free and packed batches give the same LoRA trajectory;
* FSDP2 (2 processes, gloo) equals one process and resumes from its sharded checkpoint;
* DoRA (``use_dora``): magnitudes and adapters train, resume is exact, the merged export and
  FSDP2 agree as for LoRA;
* ``lora_init_adapter`` starts from a trained adapter (its weights and definition; clashing keys
  refused), on one process and under FSDP2;
* QLoRA without CUDA/bitsandbytes, and LoRA keys without a rank, are clear errors; the TRL,
  LLaMA-Factory and Axolotl keys map onto sftdata_train's.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from sftdata.errors import ConfigError
from sftdata_train.model import attention
from sftdata_train.lora import adapter as lora
from sftdata_train.config.train_config import TrainConfig, parse_args
from sftdata_train.loop.trainer import Trainer, train
from sftdata_train.testing import cli_args, pack_dir, prepare_dir, synthetic_conversations, torchrun

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    prepare_dir(synthetic_conversations(40, seed=2), root / "prepared")
    return root / "prepared"


def _cfg(data_dir, out, **kw):
    cfg = dict(data=str(data_dir), output_dir=str(out), precision="fp32", lr=1e-2, warmup_steps=1, max_steps=6,
               max_tokens_per_batch=700, progress_bar=False, seed=3, lora_r=8, eval_fraction=0.15)
    cfg.update(kw)
    return cfg


def _base(seed=3):
    from sftdata_train.model.loading import load_model, load_tokenizer

    tok = load_tokenizer(None)
    return load_model(None, tokenizer=tok, attn_implementation="sdpa", seed=seed).eval(), tok


def test_only_adapters_train_and_the_loss_falls(data_dir, tmp_path):
    t = Trainer(_cfg(data_dir, tmp_path / "run", max_steps=8))
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


def _dcp_keys(ckpt_dir):
    import torch.distributed.checkpoint as dcp

    return set(dcp.FileSystemReader(str(ckpt_dir / "training_state" / "dcp")).read_metadata().state_dict_metadata)


def test_resume_is_exact_and_exports_match(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    kw = dict(lora_dropout=0.1, save_steps=3, eval_steps=3)
    full = train(_cfg(data_dir, tmp_path / "full", merge_lora=True, **kw))
    assert full.completed and len(full.losses) == 6

    cut = train(_cfg(data_dir, tmp_path / "cut", stop_at_step=4, **kw))
    assert cut.losses == full.losses[:4] and not cut.completed
    ck = tmp_path / "cut" / "checkpoint-4"
    # a checkpoint is a peft adapter dir + the DCP training state of the trainable parameters only
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(os.listdir(ck))
    assert not (ck / "config.json").exists() and not (ck / "model.safetensors").exists()
    model_keys = {k for k in _dcp_keys(ck) if k.startswith("model.")}
    assert model_keys and all(".lora_A." in k or ".lora_B." in k for k in model_keys)

    resumed = train(_cfg(data_dir, tmp_path / "cut", resume="latest", **kw))
    assert resumed.first_step == 4 and resumed.completed
    print("uninterrupted:", full.losses, "\nresumed      :", cut.losses + resumed.losses)
    assert resumed.losses == pytest.approx(full.losses[4:], abs=1e-7, rel=0)
    assert resumed.eval_losses[6] == pytest.approx(full.eval_losses[6], abs=1e-7, rel=0)

    # final/ without merge_lora is the adapter; with it the merged model: both give the same logits
    base, tok = _base()
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

    t = Trainer(_cfg(data_dir, tmp_path / "probe", use_dora=True, max_steps=8))
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
    full = train(_cfg(data_dir, tmp_path / "full", merge_lora=True, **kw))
    cut = train(_cfg(data_dir, tmp_path / "cut", stop_at_step=2, **kw))
    resumed = train(_cfg(data_dir, tmp_path / "cut", resume="latest", **kw))
    assert cut.losses == full.losses[:2]
    assert resumed.losses == pytest.approx(full.losses[2:], abs=1e-7, rel=0)
    with pytest.raises(ConfigError, match="use_dora: checkpoint True, now False"):
        train(_cfg(data_dir, tmp_path / "cut", resume="latest", **{**kw, "use_dora": False}))

    base, tok = _base()
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
    first = train(_cfg(data_dir, tmp_path / "a", lora_r=4, lora_alpha=12, use_dora=True,
                       lora_target_modules="q_proj,v_proj,down_proj", max_steps=4, eval_steps=4))
    adapter = str(tmp_path / "a" / "final")
    t = Trainer(_cfg(data_dir, tmp_path / "b", lora_r=0, lora_init_adapter=adapter, lora_dropout=0.1, max_steps=3))
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
            Trainer(_cfg(data_dir, tmp_path / f"run-{change}", lora_r=0, lora_init_adapter=str(bad)))


def test_batch_stream_leaves_the_global_rng_alone(data_dir, tmp_path):
    """Bug found by the dropout resume test: opening the DataLoader iterator drew the workers' base
    seed from the global torch RNG, so a resumed run (opening it mid-epoch, after the RNG was
    restored) saw other LoRA dropout masks than the uninterrupted run."""
    t = Trainer(_cfg(data_dir, tmp_path / "rng", eval_fraction=0))
    state = torch.get_rng_state()
    for _ in range(t.stream.batches_per_epoch + 2):  # across an epoch boundary (a new iterator)
        next(t.stream)
    assert torch.equal(torch.get_rng_state(), state)


def test_trained_lm_head_stays_tied_and_merges(data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "head"
    cfg = _cfg(data_dir, out, max_steps=3, lora_modules_to_save="lm_head", merge_lora=True, eval_fraction=0)
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
    base, tok = _base()
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
        t = Trainer(_cfg(tmp_path / "prepared", tmp_path / name, padding_free=padding_free, lr=3e-3, warmup_steps=0,
                         lr_scheduler="constant", max_tokens_per_batch=4096, eval_fraction=0, lora_dropout=0.0))
        return [t.train_step([mb]).loss for mb in batches]

    ref = run("pad", False, [PaddingCollator(0)(s) for s in seqs])
    assert ref[-1] < ref[0]
    for name, pf, batches in (("pf", True, [PaddingFreeCollator()(s) for s in seqs]),
                              ("pk", True, [PaddingFreeCollator()([r]) for r in rows])):
        assert run(name, pf, batches) == pytest.approx(ref, abs=1e-5, rel=0), name


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=st.integers(1, 6), alpha=st.sampled_from([None, 1.0, 7.0]), rslora=st.booleans(), dora=st.booleans(),
       targets=st.sets(st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
                       min_size=1),
       seed=st.integers(0, 2**16))
def test_merge_equals_adapter_and_only_adapters_get_gradients(r, alpha, rslora, dora, targets, seed):
    """For any rank, scale and target set: gradients reach the adapters only, and the merged model
    computes what base + adapter computes."""
    from sftdata_train.distributed import DistInfo
    from sftdata_train.loss import SFTLossModel

    hf, _ = _base()
    hf.train()
    cfg = TrainConfig(data="d", output_dir="o", lora_r=r, lora_alpha=alpha, use_rslora=rslora, use_dora=dora,
                      lora_target_modules=",".join(sorted(targets)), seed=seed).validate()
    adapter = lora.apply(hf, cfg, seed=seed)
    wrapper = SFTLossModel(hf)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in wrapper.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ids = torch.randint(0, 6000, (1, 24), generator=g)
    loss, _ = wrapper(input_ids=ids, labels=ids)
    loss.backward()
    for n, p in wrapper.named_parameters():
        assert (p.grad is not None) == p.requires_grad == (".lora_" in n), n
    from sftdata_train.lora.merge import merged_model

    merged = merged_model(adapter, wrapper=wrapper, hf_model=hf, info=DistInfo(), cfg=cfg, tokenizer=None)
    hf.eval()
    with torch.no_grad():
        assert torch.allclose(adapter.peft_model(input_ids=ids).logits, merged.eval()(input_ids=ids).logits,
                              atol=1e-5, rtol=0)


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
        Trainer(_cfg(data_dir, tmp_path / "t", lora_target_modules="nope_proj"))
    with pytest.raises(ConfigError, match="LoRA on the LM head is not supported"):
        Trainer(_cfg(data_dir, tmp_path / "t2", lora_target_modules="q_proj,lm_head"))
    # a checkpoint resumes only with the adapter it was written with, and not as full fine-tuning
    train(_cfg(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0))
    with pytest.raises(ConfigError, match="lora_r: checkpoint 8, now 4"):
        Trainer(_cfg(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0, lora_r=4, resume="latest"))
    with pytest.raises(ConfigError, match="holds a LoRA adapter"):
        Trainer(_cfg(data_dir, tmp_path / "r", max_steps=2, eval_fraction=0, lora_r=0, resume="latest"))
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


# ----------------------------------------------------------------------------- FSDP2
def _torchrun(args, cwd, fresh=()):
    torchrun(["-m", "sftdata_train", *cli_args(args)], cwd, fresh=fresh)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_two_process_fsdp2_lora_equals_one_process_and_resumes(tmp_path, use_dora):
    """2 ranks x grad_accum 2 == 1 rank x grad_accum 4 (the same 4 micro-batches per step): the
    adapters are sharded with their layers, the frozen weights come by broadcast from rank 0, the
    checkpoint holds the adapters' shards, the resumed run continues exactly, and the merged
    final/ equals the one-process one."""
    from transformers import AutoModelForCausalLM

    data = tmp_path / "prepared"
    prepare_dir(synthetic_conversations(96, seed=4), data)
    args = dict(precision="fp32", lr=5e-3, warmup_steps=1, max_steps=4, max_tokens_per_batch=600,
                progress_bar=False, seed=5, lora_r=4, merge_lora=True, use_dora=use_dora)
    single = train(dict(data=str(data), output_dir=str(tmp_path / "single"), grad_accum=4, **args))
    out = tmp_path / "fsdp"
    _torchrun(dict(data=str(data), output_dir=str(out), grad_accum=2, stop_at_step=2, **args), tmp_path, fresh=[out])
    ck = out / "checkpoint-2"
    assert (ck / "adapter_model.safetensors").is_file()
    assert {"__0_0.distcp", "__1_0.distcp"} <= set(os.listdir(ck / "training_state" / "dcp"))
    keys = _dcp_keys(ck)
    assert {"rng.rank0", "rng.rank1"} <= keys
    assert all(".lora_" in k for k in keys if k.startswith("model."))  # the adapters' shards, no frozen weights
    _torchrun(dict(data=str(data), output_dir=str(out), grad_accum=2, resume="latest", **args), tmp_path)
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    print("1 process  :", single.losses, "\n2 processes:", losses)
    assert losses == pytest.approx(single.losses, abs=1e-5, rel=0)
    a = AutoModelForCausalLM.from_pretrained(str(out / "final")).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(tmp_path / "single" / "final")).state_dict()
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print("max |merged 2-process - merged 1-process| weight:", worst)
    assert worst < 1e-4


def test_two_process_fsdp2_starts_from_the_init_adapter(tmp_path):
    """Under FSDP2 the init adapter is loaded into rank 0's full copy and reaches every rank with
    the broadcast: 2 processes train exactly like one from the same adapter."""
    data = tmp_path / "prepared"
    prepare_dir(synthetic_conversations(64, seed=6), data)
    args = dict(precision="fp32", lr=5e-3, warmup_steps=1, max_tokens_per_batch=600, progress_bar=False, seed=5)
    train(dict(data=str(data), output_dir=str(tmp_path / "a"), lora_r=4, max_steps=3, grad_accum=2, **args))
    init = str(tmp_path / "a" / "final")
    single = train(dict(data=str(data), output_dir=str(tmp_path / "single"), lora_init_adapter=init, max_steps=2,
                        grad_accum=4, **args))
    out = tmp_path / "fsdp"
    _torchrun(dict(data=str(data), output_dir=str(out), lora_init_adapter=init, max_steps=2, grad_accum=2, **args), tmp_path, fresh=[out])
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    print("from the init adapter, 1 process:", single.losses, "2 processes:", losses)
    assert losses == pytest.approx(single.losses, abs=1e-5, rel=0)


# ----------------------------------------------------------------------------- the pipeline
def test_pipeline_train_section_takes_the_lora_keys(tmp_path, monkeypatch):
    """``sftdata run``: the TRL LoRA keys under ``train:`` reach the train stage, which writes the
    merged model; a misspelt LoRA key is reported with its path before anything runs."""
    from pathlib import Path

    from sftdata_train.pipeline import load_config, run_pipeline

    root = Path(__file__).resolve().parents[2]
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


def test_lora_layers_compile_without_graph_breaks():
    """The compiled decoder layers (``compile: on``, the CUDA default) with peft's LoRA layers inside:
    ``fullgraph=True`` (any graph break is an error), dropout on, same loss as eager."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    from sftdata_train.model.compiling import compile_layers
    from sftdata_train.distributed import decoder_layers
    from sftdata_train.loss import SFTLossModel

    torch._dynamo.reset()
    attention.register()
    cfg = Qwen3Config(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation=attention.ATTN_NAME, dtype=torch.float32)
    lora.apply(hf, TrainConfig(data="d", output_dir="o", lora_r=4, lora_dropout=0.1).validate(), seed=0)
    wrapper = SFTLossModel(hf)
    lens = [5, 9, 3]
    ids = torch.randint(0, 101, (1, sum(lens)), generator=torch.Generator().manual_seed(1))
    cu = torch.tensor([0, 5, 14, 17], dtype=torch.int32)
    batch = dict(input_ids=ids, labels=ids.clone(), position_ids=torch.cat([torch.arange(n) for n in lens])[None],
                 cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=9, max_length_k=9)
    hf.eval()
    with torch.no_grad():
        eager, _ = wrapper(**batch)
    try:
        assert compile_layers(decoder_layers(hf), backend="eager", fullgraph=True) == 2
        wrapper.compiled = True
        with torch.no_grad():
            compiled, _ = wrapper(**batch)
        hf.train()
        loss, _ = wrapper(**batch)  # dropout inside the compiled graph
        loss.backward()
    finally:
        torch._dynamo.reset()
        attention.set_backend("auto")
    assert float(compiled) == pytest.approx(float(eager), abs=1e-5)
    assert all(p.grad is not None for n, p in wrapper.named_parameters() if ".lora_" in n)


@pytest.mark.parametrize("lora_r", [0, 4])
def test_bf16_export_writes_tied_weights_once(data_dir, tmp_path, lora_r):
    """Bug found while checking LoRA's merged export: final/ in bf16 from fp32 weights (and any
    gathered FSDP2 state) cast the embedding and the tied LM head separately, so model.safetensors
    held the (vocab, hidden) matrix twice. Full fine-tuning and the LoRA merge alike."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    kw = dict(lora_r=lora_r, merge_lora=bool(lora_r))
    train(_cfg(data_dir, out, precision="bf16-mixed", max_steps=1, eval_fraction=0, **kw))
    with safe_open(str(out / "final" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    m = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert m.lm_head.weight is m.model.embed_tokens.weight
