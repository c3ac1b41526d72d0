#!/usr/bin/env python
"""GPU training benchmark: sftdata_train vs TRL ``SFTTrainer`` (padding-free) on the same packed rows.

Model: the Qwen3-0.6B *architecture* built from its config (values written below; random init,
nothing downloaded), fp32 master weights + bf16 autocast (``bf16-mixed``) for both trainers.
Data: real agent-trace lengths (``../shared/data``, tokenised by ``sftdata prepare`` with the
embedded tokenizer) packed by ``sftdata pack`` into rows of ``--seq-len`` (8,192) tokens; one
packed row per optimizer step for both trainers.

Printed per trainer: tokens/s (real tokens, all of them), trained tokens/s, MFU and peak memory.
MFU = (6 * matmul_params * tokens + 6 * layers * heads * head_dim * sum(L_i^2)) / time / peak,
against two peaks: ``mfu`` the datasheet dense bf16 peak of the GPU (``sftdata_train.loop.peaks``;
n/a for unlisted GPUs), ``mfu_measured`` the throughput of a large bf16 matmul measured here
(``sftdata_train.loop.metrics.measure_bf16_peak_tflops``).

sftdata_train runs with its defaults unless told otherwise (``--compile auto`` = compiled on
CUDA, ``--activation-checkpointing auto`` = planned against the free memory or
``--memory-budget-gb``, bf16-mixed through FSDP2's MixedPrecisionPolicy); TRL with its own
(gradient checkpointing on in TRL 1.x) unless ``--trl-gradient-checkpointing on|off``.

    python bench/train_gpu.py                       # needs a CUDA GPU
    python bench/train_gpu.py --data out/prepared   # your own prepared/packed dir
    python bench/train_gpu.py --dry-run             # tiny config on CPU: checks the script runs

Runs from a checkout without installing it (the repository root is put on ``sys.path``).

``--tree``: prefix-tree training instead (``bench/tree_bench.py``): tau-bench with Qwen3's
template, one epoch of exact-mask tree rows vs the same examples in the linear layout vs the
``all`` policy (time, tokens/s), plus a loss/gradient check of the flex tree path against
per-branch HF forward passes (fp32 and bf16):

    python bench/train_gpu.py --tree --tokenizer QWEN3_TOKENIZER_DIR --seq-len 16384
    python bench/train_gpu.py --tree --dry-run      # tiny model on CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/tree_bench.py

# Qwen/Qwen3-0.6B config.json (architecture only; the weights are random here).
QWEN3_0_6B = dict(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    attention_bias=False,
    hidden_act="silu",
)
# --dry-run: same architecture family, CPU-sized.
TINY = dict(QWEN3_0_6B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=6144)

SHARED_INPUTS = (
    "tau-bench/gpt-4o-airline.json",
    "llamafactory/glaive_toolcall_en_demo.json",
    "llamafactory/reason_tool_use_demo_50.jsonl",
    "fireact/gpt_format/hotpotqa.jsonl",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="prepared or packed dataset dir (default: prepare ../shared/data traces)")
    p.add_argument("--seq-len", type=int, default=8192, help="packed row length in tokens")
    p.add_argument("--steps", type=int, default=30, help="measured optimizer steps per trainer")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured steps first (allocator, autotuning, compile)")
    p.add_argument("--attn", default="auto", help="sftdata_train attn_implementation (auto=varlen on CUDA)")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="ours: torch.compile the layers")
    p.add_argument("--activation-checkpointing", default="auto", choices=("auto", "on", "off"), help="ours")
    p.add_argument("--memory-budget-gb", type=float, default=None, help="ours: plan activation checkpointing "
                                                                       "for this much device memory")
    p.add_argument("--precision", default="auto", help="ours: auto (bf16-mixed on CUDA) | bf16-mixed | bf16-true")
    p.add_argument("--no-ours", action="store_true", help="skip sftdata_train (e.g. TRL alone)")
    p.add_argument("--no-trl", action="store_true", help="skip the TRL SFTTrainer comparison")
    p.add_argument("--trl-gradient-checkpointing", default="default", choices=("default", "on", "off"),
                   help="TRL: its default (on in TRL 1.x) or forced on/off")
    p.add_argument("--trl-attn", default=None, help="TRL model attn_implementation (default: flash_attention_2 if "
                                                   "flash_attn is installed, else sdpa)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="tiny model, short rows, 2+1 steps on CPU (fp32)")
    p.add_argument("--tree", action="store_true", help="prefix-tree training benchmark (see bench/tree_bench.py)")
    import tree_bench

    tree_bench.add_arguments(p)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data
def build_packed(args, workdir: Path) -> Path:
    """A packed dir of --seq-len rows from --data, or from the shared real traces."""
    import datasets

    from sftdata.packing import pack_dataset, save_packed
    from sftdata_train.testing import (
        prepare_dir,
        shared_data_dir,
        synthetic_conversations,
    )

    if args.data:
        ds = datasets.load_from_disk(args.data)
        if "seq_lengths" in ds.column_names:
            return Path(args.data)
    else:
        shared = shared_data_dir()
        if shared is not None:
            inputs = [str(shared / f) for f in SHARED_INPUTS if (shared / f).exists()]
            print(f"preparing real traces: {', '.join(Path(i).name for i in inputs)}", flush=True)
        else:
            inputs = synthetic_conversations(400)
            print("../shared/data not found: synthetic conversations (lengths are not real-trace lengths)")
        ds = prepare_dir(inputs, workdir / "prepared")
    packed, report = pack_dataset(ds, args.seq_len, truncation="truncate", seed=0)
    save_packed(packed, report, workdir / "packed")
    lengths = [n for r in packed["seq_lengths"] for n in r]
    print(f"packed {len(lengths)} sequences (mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)} tokens) "
          f"into {len(packed)} rows of {args.seq_len} (fill {report.fill:.3f})", flush=True)
    return workdir / "packed"


def build_model(args):
    from transformers import AutoModelForCausalLM, Qwen3Config

    spec = TINY if args.dry_run else QWEN3_0_6B
    cfg = Qwen3Config(**spec)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- ours
def bench_ours(args, packed_dir: Path, workdir: Path, peak: dict) -> dict:
    from sftdata_train.loop.trainer import Trainer
    from sftdata_train.model.loading import load_tokenizer

    device = torch.device("cpu" if args.dry_run else "cuda")
    cfg = dict(
        data=str(packed_dir), output_dir=str(workdir / "ours"), model=None, device=device.type,
        precision="fp32" if args.dry_run else args.precision, max_tokens_per_batch=args.seq_len,
        max_steps=args.warmup + args.steps, lr=1e-5, warmup_steps=0, attn_implementation=args.attn,
        compile="off" if args.dry_run else args.compile, activation_checkpointing=args.activation_checkpointing,
        memory_budget_gb=args.memory_budget_gb, progress_bar=False,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(cfg, model=build_model(args), tokenizer=load_tokenizer(None))
    tokens = trained = 0
    flops = 0.0
    for i in range(args.warmup + args.steps):
        micro = [next(trainer.stream)]
        if i == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        out = trainer.train_step(micro)
        if i >= args.warmup:
            tokens += out.tokens
            trained += out.trained_tokens
            flops += out.flops
    _sync(device)
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    from sftdata_train.model.attention import get_backend

    extra = dict(attn=get_backend(), compiled=trainer.compiled, checkpointed_layers=len(trainer.memory_plan.layers),
                 description=trainer.describe())
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return _result("sftdata_train", tokens, trained, flops, dt, mem, peak, args.steps, **extra)


# ----------------------------------------------------------------------------- TRL
def bench_trl(args, packed_dir: Path, workdir: Path, peak: dict, flops_shape: dict) -> dict | None:
    try:
        import trl
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer
    except ImportError as e:
        print(f"TRL not installed ({e}); skipping the comparison")
        return None
    import datasets

    from sftdata.packing import unpack_row
    from sftdata_train.loop.metrics import step_flops
    from sftdata_train.model.loading import load_tokenizer

    device = torch.device("cpu" if args.dry_run else "cuda")
    # the same sequences, unpacked: TRL packs them itself (bfd, max_length = seq_len) and then runs
    # padding-free, one packed row per step as we do
    packed = datasets.load_from_disk(str(packed_dir))
    seqs = [s for r in packed for s in unpack_row(r)]
    ds = datasets.Dataset.from_dict({"input_ids": [s["input_ids"] for s in seqs], "labels": [s["labels"] for s in seqs]})
    attn = args.trl_attn
    if attn is None:
        import importlib.util

        attn = "flash_attention_2" if (device.type == "cuda" and importlib.util.find_spec("flash_attn")) else "sdpa"
    model = build_model(args)
    model.set_attn_implementation(attn)
    tok = load_tokenizer(None)

    class Meter(TrainerCallback):
        def __init__(self):
            self.step = 0
            self.t0 = None
            self.dt = 0.0
            self.tokens = self.trained = self.sumsq = 0
            self.measuring = False

        def on_step_begin(self, a, state, control, **kw):
            self.measuring = self.step >= args.warmup
            if self.measuring:
                _sync(device)
                self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if self.measuring:
                _sync(device)
                self.dt += time.perf_counter() - self.t0
            self.step += 1

    meter = Meter()

    def count(module, a, kw):
        if not meter.measuring or not module.training:
            return
        ids = kw.get("input_ids")
        labels = kw.get("labels")
        pos = kw.get("position_ids")
        meter.tokens += int(ids.numel()) if kw.get("attention_mask") is None else int(kw["attention_mask"].sum())
        if labels is not None:
            meter.trained += int((labels[..., 1:] != -100).sum())
        if pos is not None:
            p = pos.reshape(-1)
            starts = torch.nonzero(p == 0).reshape(-1).tolist() + [p.numel()]
            meter.sumsq += sum((b - a_) ** 2 for a_, b in zip(starts[:-1], starts[1:]))

    model.register_forward_pre_hook(count, with_kwargs=True)
    conf = SFTConfig(
        output_dir=str(workdir / "trl"), max_steps=args.warmup + args.steps, per_device_train_batch_size=1,
        gradient_accumulation_steps=1, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        bf16=device.type == "cuda", use_cpu=device.type == "cpu", packing=True, packing_strategy="bfd",
        padding_free=True, max_length=args.seq_len, logging_steps=10, save_strategy="no", report_to=[],
        dataloader_num_workers=0, seed=0, disable_tqdm=True,
        **({} if args.trl_gradient_checkpointing == "default"
           else {"gradient_checkpointing": args.trl_gradient_checkpointing == "on"}),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = SFTTrainer(model=model, args=conf, train_dataset=ds, processing_class=tok, callbacks=[meter])
    trainer.train()
    mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    flops = step_flops(tokens=meter.tokens, sum_sq_lengths=meter.sumsq, **flops_shape)
    return _result(f"trl {trl.__version__} SFTTrainer", meter.tokens, meter.trained, flops, meter.dt, mem, peak,
                   args.steps, attn=attn, gradient_checkpointing=bool(conf.gradient_checkpointing))


def _result(name, tokens, trained, flops, dt, mem, peak: dict, steps, **extra) -> dict:
    tflops = flops / dt / 1e12

    def mfu(p):
        return tflops / p if p else None

    return dict(
        trainer=name, steps=steps, seconds=dt, tokens_per_s=tokens / dt, trained_tokens_per_s=trained / dt,
        tflops_per_s=tflops, mfu=mfu(peak.get("datasheet")), mfu_measured=mfu(peak.get("measured")),
        peak_memory_gb=mem, **extra,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.seq_len = min(args.seq_len, 2048 if args.tree else 512)
        args.steps = min(args.steps, 2)
        args.warmup = min(args.warmup, 1)
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    elif not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or use --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    from sftdata_train.loop.metrics import measure_bf16_peak_tflops
    from sftdata_train.model.loading import count_matmul_params
    from sftdata_train.loop.peaks import datasheet_bf16_tflops

    device = torch.device("cpu" if args.dry_run else "cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    peak = {"datasheet": datasheet_bf16_tflops(name), "measured": measure_bf16_peak_tflops(device)}
    info = {"device": name, "torch": torch.__version__, "datasheet_bf16_tflops": peak["datasheet"],
            "measured_bf16_peak_tflops": peak["measured"]}
    print(json.dumps(info), flush=True)
    m = build_model(args)
    mc = m.config
    flops_shape = dict(matmul_params=count_matmul_params(m), n_layers=mc.num_hidden_layers,
                       n_heads=mc.num_attention_heads, head_dim=mc.head_dim)
    print(f"model: Qwen3 {'tiny (dry run)' if args.dry_run else '0.6B'} architecture, "
          f"{sum(p.numel() for p in m.parameters()) / 1e6:.1f}M params "
          f"({flops_shape['matmul_params'] / 1e6:.1f}M in matmuls)", flush=True)
    del m
    results = []
    if args.tree:
        import tree_bench

        with tempfile.TemporaryDirectory() as tmp:
            out = tree_bench.main_tree(args, build_model, Path(tmp), peak)
        if args.json:
            Path(args.json).write_text(json.dumps({"info": info, **out}, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        packed = build_packed(args, work)
        if not args.no_ours:
            results.append(bench_ours(args, packed, work, peak))
            print(json.dumps(results[-1]), flush=True)
        if not args.no_trl:
            r = bench_trl(args, packed, work, peak, flops_shape)
            if r is not None:
                results.append(r)
                print(json.dumps(r), flush=True)
    print()
    print(f"{'trainer':32s} {'tokens/s':>10s} {'trained/s':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'MFU(m)':>6s} "
          f"{'peak GB':>8s}  attention")

    def pct(x):
        return f"{100 * x:.1f}%" if x is not None else "n/a"

    for r in results:
        print(f"{r['trainer']:32s} {r['tokens_per_s']:10.0f} {r['trained_tokens_per_s']:10.0f} "
              f"{r['tflops_per_s']:8.2f} {pct(r['mfu']):>6s} {pct(r['mfu_measured']):>6s} "
              f"{r['peak_memory_gb']:8.2f}  {r['attn']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
