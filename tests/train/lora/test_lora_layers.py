"""LoRA layers (sftdata_train/lora/adapter.py): for any rank, scale and target set the merged model
computes what base + adapter computes and only the adapters get gradients; the LoRA layers compile
without graph breaks; FSDP2 (2 processes, gloo) equals one process and resumes from its sharded
checkpoint, for LoRA and DoRA, also when starting from ``lora_init_adapter``.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from sftdata_train.model import attention
from sftdata_train.lora import adapter as lora
from sftdata_train.config.train_config import TrainConfig
from sftdata_train.loop.trainer import train
from sftdata_train.testing import cli_args, prepare_dir, synthetic_conversations, torchrun

from lora_helpers import base_model, dcp_keys

peft = pytest.importorskip("peft")


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

    hf, _ = base_model()
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
    keys = dcp_keys(ck)
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
