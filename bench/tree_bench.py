#!/usr/bin/env python
"""Tree training on GPU: prefix-tree rows vs the linear layout vs the ``all`` policy, and a
loss/gradient check of the flex tree path against per-branch HF forward passes.

Used by ``bench/train_gpu.py --tree`` (see there for the model and the measurement); also
runnable alone:

    python bench/tree_bench.py --check-only            # the flex-vs-per-branch check only (GPU)
    python bench/tree_bench.py --dry-run               # tiny model on CPU: checks the script runs

Data: tau-bench from ``../shared/data`` rendered with Qwen3's template (``--chat-template``,
default the vendored ``sftdata/testing/templates/qwen3.jinja``) by ``--tokenizer`` (a
real-vocabulary Qwen3 tokenizer dir; default the embedded tokenizer). Exact masks are
``turn_policy="exact"`` examples merged into one tree row per conversation (or a prepared dir
with a ``parent`` column, ``--data``); the linear layout is ``sftdata.masking.tree.unroll`` of the same
trees; ``all`` is ``turn_policy="all"`` (one rendering per conversation; where ``prepare``
rejects the rows whose turns the template rewrites, ``turn_rewritten``, it is left out and
said so); ``trunk`` is the first root-to-leaf path of every tree (the conversation's own
rendering when it was inserted first: the cost of one rendering, whatever ``all`` does).
Each layout is packed to ``--seq-len`` (truncation ``turns``) and trained one packed row per
optimizer step.

Printed per layout: packed rows (= steps per epoch), tokens and trained tokens per epoch,
measured tokens/s, the epoch time (measured when ``--epoch`` is given, else steps/epoch x the
measured seconds per step) and its ratio to the ``all`` epoch (``trunk`` when ``all`` has no
rows). The check prints the loss and
gradient agreement (fp32: relative differences; bf16: relative loss difference and the
cosine similarity of every parameter gradient, worst parameter).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
QWEN3_TEMPLATE = REPO / "sftdata" / "testing" / "templates" / "qwen3.jinja"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tree mode (--tree)")
    g.add_argument("--tokenizer", default=None, help="tokenizer dir (default: embedded); a real-vocabulary Qwen3 one "
                                                    "for the figures of the issue")
    g.add_argument("--chat-template", default=str(QWEN3_TEMPLATE), help="chat template file (default: Qwen3's)")
    g.add_argument("--traces", type=int, default=200, help="tau-bench trajectories to use (default all 200)")
    g.add_argument("--epoch", action="store_true", help="time whole epochs instead of --steps steps per layout")
    g.add_argument("--check-rows", type=int, default=4, help="tree rows in the flex-vs-per-branch check")
    g.add_argument("--check-only", action="store_true", help="run only the flex-vs-per-branch check")


# ----------------------------------------------------------------------------- data
def _conversations(n: int, dry_run: bool):
    from sftdata_train.testing import shared_data_dir, synthetic_conversations

    shared = shared_data_dir()
    if shared is None:
        print("../shared/data not found: synthetic conversations (not tau-bench)", flush=True)
        return synthetic_conversations(min(n, 60) if dry_run else 400, seed=1)
    tb = shared / "tau-bench"
    tools = json.loads((tb / "airline_tools.DERIVED.json").read_text())
    raw = json.loads((tb / "gpt-4o-airline.json").read_text())[: (min(n, 6) if dry_run else n)]
    rows = []
    for r in raw:
        msgs = r["traj"]
        if dry_run:  # CPU-sized: a short system prompt, the first turns
            msgs = [dict(m) for m in msgs[:10]]
            msgs[0]["content"] = msgs[0]["content"][:400]
        rows.append({"messages": msgs, **({} if dry_run else {"tools": tools})})
    print(f"tau-bench: {len(rows)} trajectories", flush=True)
    return rows


def build_layouts(args, tokenizer, workdir: Path) -> dict[str, Path]:
    """Packed dirs of the layouts: ``tree`` (exact), ``linear`` (exact, unrolled), ``all`` (when it
    has rows), ``trunk`` (the first path of every tree)."""
    import datasets

    from sftdata import prepare
    from sftdata.packing import pack_dataset, save_packed
    from sftdata_train.testing import (
        tree_dataset,
        tree_rows_from_examples,
        unrolled_dataset,
    )

    template = Path(args.chat_template).read_text()
    tokenizer.chat_template = template
    if args.data:
        tree = datasets.load_from_disk(args.data)
        if "parent" not in tree.column_names:
            tree = tree_dataset(tree_rows_from_examples(tree))
        all_rows = None
    else:
        convs = _conversations(args.traces, args.dry_run)
        t0 = time.perf_counter()
        exact = prepare(convs, tokenizer, turn_policy="exact")
        tree = tree_dataset(tree_rows_from_examples(exact))
        all_rows = prepare(convs, tokenizer, turn_policy="all")
        print(f"prepared in {time.perf_counter() - t0:.1f}s", flush=True)
    layouts = {"tree": tree, "linear": unrolled_dataset(tree)}
    if all_rows is not None:
        if len(all_rows):
            layouts["all"] = all_rows
        else:
            reasons = getattr(all_rows, "sftdata_stats", {}).get("rejected_by_reason")
            print(f"all    : no row (rejected: {reasons}); the baseline is `trunk`", flush=True)
    layouts["trunk"] = _trunks(tree)
    out = {}
    for name, ds in layouts.items():
        packed, report = pack_dataset(ds, args.seq_len, truncation="turns", seed=0)
        save_packed(packed, report, workdir / name)
        print(f"{name:7s}: {report.rows_in:,} rows, {report.tokens_out:,} tokens ({report.trained_tokens_out:,} trained) "
              f"in {report.bins:,} packed rows of {args.seq_len} (fill {report.fill:.3f}; truncated rows "
              f"{report.truncated_rows}, tree paths cut {report.tree_paths_dropped})", flush=True)
        out[name] = workdir / name
    return out


def _trunks(tree):
    """The first root-to-leaf path of every tree row, as linear rows."""
    import datasets

    from sftdata.masking.tree import unroll

    rows = []
    for r in tree:
        ids, labels = unroll(r)[0]
        rows.append({"input_ids": ids, "labels": labels, "length": len(ids), "source_index": r["source_index"]})
    return datasets.Dataset.from_list(rows)


# ----------------------------------------------------------------------------- training throughput
def time_layout(args, name: str, packed_dir: Path, workdir: Path, model, tokenizer, peak) -> dict:
    from sftdata_train.loop.trainer import Trainer

    device = torch.device("cpu" if args.dry_run else "cuda")
    cfg = dict(data=str(packed_dir), output_dir=str(workdir / f"run-{name}"), model=None, device=device.type,
               precision="fp32" if args.dry_run else "bf16-mixed", max_tokens_per_batch=args.seq_len, max_steps=10**6,
               lr=1e-5, warmup_steps=0, attn_implementation=args.attn, compile=args.compile,
               activation_checkpointing=args.activation_checkpointing, progress_bar=False, peak_tflops=peak,
               shuffle=False)
    trainer = Trainer(cfg, model=model, tokenizer=tokenizer)
    per_epoch = trainer.stream.batches_per_epoch
    steps = per_epoch if args.epoch else min(args.steps, per_epoch)
    for _ in range(min(args.warmup, per_epoch)):
        trainer.train_step([next(trainer.stream)])
    trainer.stream.load_state_dict({"epoch": 0, "batch_in_epoch": 0})  # measure from the epoch start
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tokens = trained = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = trainer.train_step([next(trainer.stream)])
        tokens += out.tokens
        trained += out.trained_tokens
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    epoch_s = dt if steps == per_epoch else dt / steps * per_epoch
    del trainer
    return dict(layout=name, steps_per_epoch=per_epoch, measured_steps=steps, seconds=dt, tokens=tokens,
                trained_tokens=trained, tokens_per_s=tokens / dt, epoch_seconds=epoch_s,
                epoch_measured=steps == per_epoch, peak_memory_gb=mem)


# ----------------------------------------------------------------------------- the check
def _grads(model):
    return {k: p.grad.detach().float().clone() for k, p in model.named_parameters() if p.grad is not None}


def tree_check(model, rows, device: torch.device, dtype: torch.dtype) -> dict:
    """Loss and gradients of tree rows through the tree attention (flex on CUDA) vs every
    root-to-leaf path alone through transformers' ``sdpa``, in ``dtype``.

    Returns ``rel_loss``, ``max_rel_grad`` (max over parameters of ``max|a - b| / max|b|``) and
    ``min_cos`` (the lowest cosine similarity of a parameter's two gradients).
    """
    import torch.nn.functional as F

    from sftdata.collate.collators import PaddingFreeCollator
    from sftdata.masking.tree import IGNORE_INDEX, unroll
    from sftdata_train.loss import SFTLossModel
    from sftdata_train.model.tree_attention import register, resolve_tree_backend

    model = model.to(device=device, dtype=dtype).train()
    model.config.use_cache = False
    # per branch: transformers' own attention, one path at a time
    model.set_attn_implementation("sdpa")
    model.zero_grad(set_to_none=True)
    total, n = torch.zeros((), device=device, dtype=torch.float32), 0
    for r in rows:
        for ids, labels in unroll(r):
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0, :-1].float()
            tgt = torch.tensor(labels[1:], device=device)
            total = total + F.cross_entropy(logits, tgt, ignore_index=IGNORE_INDEX, reduction="sum")
            n += int((tgt != IGNORE_INDEX).sum())
    (total / n).backward()
    ref_loss, ref = float(total.detach() / n), _grads(model)
    # the tree path
    model.set_attn_implementation(register())
    model.zero_grad(set_to_none=True)
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in PaddingFreeCollator()(rows).items()}
    loss_sum, count = SFTLossModel(model)(**batch)
    (loss_sum / count).backward()
    tree_loss, got = float(loss_sum.detach() / count), _grads(model)
    assert int(count) == n, (int(count), n)
    floor = 1e-6 * max(float(g.abs().max()) for g in ref.values())
    rel = max(float((got[k] - ref[k]).abs().max()) / max(float(ref[k].abs().max()), floor) for k in ref)
    cos = min(float(F.cosine_similarity(got[k].flatten(), ref[k].flatten(), dim=0)) for k in ref
              if float(ref[k].abs().max()) > floor)
    return dict(dtype=str(dtype).replace("torch.", ""), backend=resolve_tree_backend(device, True), tokens=int(
        batch["input_ids"].shape[1]), linear_tokens=sum(len(i) for r in rows for i, _ in unroll(r)), trained_tokens=n,
        loss_tree=tree_loss, loss_per_branch=ref_loss, rel_loss=abs(tree_loss - ref_loss) / abs(ref_loss),
        max_rel_grad=rel, min_cos=cos)


def run_check(args, tree_dir: Path, build_model) -> list[dict]:
    import datasets

    device = torch.device("cpu" if args.dry_run else "cuda")
    ds = datasets.load_from_disk(str(tree_dir))
    rows = [r for r in ds if r["parent"]][: args.check_rows]
    if not rows:
        print("no tree row to check", flush=True)
        return []
    out = []
    for dtype in (torch.float32,) if args.dry_run else (torch.float32, torch.bfloat16):
        res = tree_check(build_model(args), rows, device, dtype)
        print(json.dumps({"check": res}), flush=True)
        out.append(res)
    return out


def print_tables(results: list[dict], checks: list[dict]) -> None:
    base = next((r for r in results if r["layout"] == "all"), None) or next(
        (r for r in results if r["layout"] == "trunk"), None)
    print()
    head = f"vs {base['layout']}" if base else "vs base"
    print(f"{'layout':8s} {'steps/epoch':>11s} {'tokens/s':>10s} {'epoch s':>9s} {head:>9s}  measured")
    for r in results:
        ratio = f"{r['epoch_seconds'] / base['epoch_seconds']:.2f}x" if base else "n/a"
        how = "whole epoch" if r["epoch_measured"] else f"{r['measured_steps']} steps, extrapolated"
        print(f"{r['layout']:8s} {r['steps_per_epoch']:11d} {r['tokens_per_s']:10.0f} {r['epoch_seconds']:9.1f} "
              f"{ratio:>9s}  {how}")
    if checks:
        print()
        print(f"{'check':8s} {'backend':>8s} {'tokens':>7s} {'linear':>7s} {'rel loss':>9s} {'max rel grad':>12s} "
              f"{'min cos':>8s}")
        for c in checks:
            print(f"{c['dtype']:8s} {c['backend']:>8s} {c['tokens']:7d} {c['linear_tokens']:7d} {c['rel_loss']:9.2e} "
                  f"{c['max_rel_grad']:12.2e} {c['min_cos']:8.5f}")


def main_tree(args, build_model, workdir: Path, peak) -> dict:
    """The ``--tree`` benchmark (called by ``bench/train_gpu.py``); returns the results."""
    from sftdata_train.model.loading import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    dirs = build_layouts(args, tokenizer, workdir)
    checks = run_check(args, dirs["tree"], build_model)
    results = []
    if not args.check_only:
        for name, d in dirs.items():
            model = build_model(args)
            results.append(time_layout(args, name, d, workdir, model, tokenizer, peak))
            print(json.dumps(results[-1]), flush=True)
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print_tables(results, checks)
    return {"results": results, "checks": checks}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import train_gpu

    sys.exit(train_gpu.main(["--tree", *sys.argv[1:]]))
