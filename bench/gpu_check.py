#!/usr/bin/env python
"""GPU check of sftdata_train in one run (about 5 minutes on one H100/H200), printing one table.

1. **Attention paths against Hugging Face, in bf16 on CUDA.** A Qwen3-architecture model (4 layers
   of Qwen3-0.6B's widths, random weights) and one padding-free row of 5 sequences (8,192
   tokens, prompts masked). For every path this machine has (PyTorch's ``varlen_attn`` as the
   installed release accepts it, flash-attn, flex, sdpa, and varlen with the decoder layers
   compiled by inductor): the summed loss and all gradients of ``SFTLossModel`` against HF's own
   forward on each sequence alone (``attn_implementation="sdpa"``, ``labels=`` i.e.
   ``ForCausalLMLoss``). Pass: relative loss difference <= 2e-3 and, for every parameter tensor,
   gradient cosine similarity >= 0.999. The compiled row also reports how many graphs dynamo
   built after each of three more row layouts (other token counts, another longest sequence):
   at most 2 (the longest-sequence int becomes dynamic once), and no growth at the last one.
2. **Training throughput and memory** with ``bench/train_gpu.py`` in fresh processes, 8,192-token
   packed rows, one row per step, the Qwen3-0.6B architecture: sftdata_train with its defaults,
   the same planned for a 16 GB card (``--memory-budget-gb 16``), and TRL's ``SFTTrainer`` with
   its defaults. Issue 9's targets are printed next to the numbers (not asserted): defaults at
   >= 45% MFU (datasheet peak) and >= 4x TRL's tokens/s, peak memory <= TRL's and <= 16 GB.

Requirements on the GPU machine: torch with CUDA and transformers; part 2 also needs ``datasets``
(and ``trl`` + ``accelerate`` for the TRL row). Without network access, bring them as wheels::

    # where pip can reach an index, same Python version as the GPU machine:
    python bench/gpu_check.py --download-wheels wheels/ [--python-version 3.11] [--platform manylinux2014_x86_64]
    # on the GPU machine:
    python bench/gpu_check.py --wheels wheels/

``--download-wheels`` fetches, with ``--no-deps`` and at the versions installed here, exactly the
dependency closure of datasets/trl/accelerate minus that of torch/transformers (listed in
``wheels/requirements.txt``); ``--wheels DIR`` installs what is missing from it
(``pip install --no-index --find-links DIR``) before part 2.

Data: ``--data DIR`` (a ``sftdata prepare``/``pack`` dir), else the real traces in
``../shared/data`` when present, else synthetic conversations (then the lengths are not those of
real traces: say so when quoting the figures).

    python bench/gpu_check.py                  # on a GPU
    python bench/gpu_check.py --cpu-smoke      # tiny everything on a CPU: checks the script itself

Runs from a checkout without installing it (the repository root is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

QWEN3_0_6B_4L = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=4,
                     num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(QWEN3_0_6B_4L, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16)
GPU_LENGTHS = (1500, 700, 3000, 900, 2092)
SMOKE_LENGTHS = (30, 7, 50, 13, 20)
LOSS_REL_TOL, GRAD_COS_MIN = 2e-3, 0.999
# part 2's needs (sftdata's own runtime dependencies, TRL) and what the GPU machine already has
WHEEL_ROOTS = ("datasets", "pyarrow", "jinja2", "pyyaml", "tqdm", "safetensors", "tokenizers", "trl", "accelerate")
BASE_ROOTS = ("torch", "transformers")
NEEDED_MODULES = ("datasets", "trl", "accelerate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny model, CPU, sdpa only, dry-run training")
    p.add_argument("--data", help="prepared or packed dataset dir for part 2")
    p.add_argument("--steps", type=int, default=20, help="measured steps per training run")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured steps first (compile, allocator)")
    p.add_argument("--run-timeout", type=int, default=420, help="seconds per training run")
    p.add_argument("--skip-train", action="store_true", help="part 1 only")
    p.add_argument("--skip-trl", action="store_true", help="no TRL row")
    p.add_argument("--wheels", help="install missing datasets/trl/accelerate from this wheel dir first")
    p.add_argument("--download-wheels", metavar="DIR", help="download the wheels part 2 needs into DIR and exit")
    p.add_argument("--python-version", help="with --download-wheels: target Python (e.g. 3.11)")
    p.add_argument("--platform", help="with --download-wheels: target platform tag (e.g. manylinux2014_x86_64)")
    p.add_argument("--json", help="also write every number to this JSON file")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- wheels
def _closure(roots) -> dict[str, str]:
    """name -> installed version for ``roots`` and everything they require (with requested extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    done: set[tuple[str, str]] = set()
    stack: list[tuple[str, str]] = [(r, "") for r in roots]
    while stack:
        raw, extra = stack.pop()
        name = canonicalize_name(raw)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            stack.append((req.name, ""))
            stack.extend((req.name, e) for e in req.extras)
    return seen


def wheel_requirements() -> dict[str, str]:
    """What part 2 needs beyond torch + transformers: name -> version installed here."""
    base = _closure(BASE_ROOTS)
    return {k: v for k, v in sorted(_closure(WHEEL_ROOTS).items()) if k not in base}


def download_wheels(args) -> int:
    reqs = wheel_requirements()
    out = Path(args.download_wheels)
    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{k}=={v}" for k, v in reqs.items()]
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(out), *pins]
    if args.python_version:
        cmd += ["--python-version", args.python_version]
    if args.platform:
        cmd += ["--platform", args.platform]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


def install_wheels(wheel_dir: str) -> None:
    import importlib.util

    missing = [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return
    req = Path(wheel_dir) / "requirements.txt"
    what = ["-r", str(req)] if req.is_file() else missing
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheel_dir, *what]
    print(f"installing {', '.join(missing)} from {wheel_dir}", flush=True)
    subprocess.check_call(cmd)


# ----------------------------------------------------------------------------- part 1: attention
def _row(lengths, vocab, device, seed=0):
    """Sequences (ids, labels with the first 30% masked) and their padding-free batch."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=g)
        labels = ids.clone()
        labels[: max(1, int(0.3 * n))] = -100
        seqs.append((ids.to(device), labels.to(device)))
    ids = torch.cat([s for s, _ in seqs])[None]
    labels = torch.cat([torch.cat([torch.tensor([-100], device=device), lab[1:]]) for _, lab in seqs])[None]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    pos = torch.cat([torch.arange(n, device=device) for n in lengths])[None]
    batch = dict(input_ids=ids, labels=labels, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                 max_length_q=max(lengths), max_length_k=max(lengths))
    return seqs, batch


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(loss, grads, ref_loss, ref_grads) -> dict:
    cos = []
    num = den = 0.0
    for name, r in ref_grads.items():
        o = grads[name]
        if r.norm() > 0:
            cos.append(float(torch.nn.functional.cosine_similarity(o.flatten(), r.flatten(), dim=0)))
        num += float((o - r).pow(2).sum())
        den += float(r.pow(2).sum())
    rel = abs(loss - ref_loss) / abs(ref_loss)
    min_cos = min(cos)
    return dict(loss=loss, ref_loss=ref_loss, loss_rel_diff=rel, min_grad_cosine=min_cos,
                grad_rel_l2=(num / den) ** 0.5, ok=rel <= LOSS_REL_TOL and min_cos >= GRAD_COS_MIN)


def attention_check(smoke: bool) -> tuple[list[dict], dict]:
    from transformers import AutoModelForCausalLM, Qwen3Config

    from sftdata_train.model import attention, torch_varlen
    from sftdata_train.model.compiling import compile_layers
    from sftdata_train.distributed import decoder_layers
    from sftdata_train.loss import SFTLossModel

    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.bfloat16
    size, lengths = (TINY, SMOKE_LENGTHS) if smoke else (QWEN3_0_6B_4L, GPU_LENGTHS)
    config = Qwen3Config(**size)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    base.config.use_cache = False
    state = copy.deepcopy(base.state_dict())
    ref = base.to(device=device, dtype=dtype)
    seqs, batch = _row(lengths, config.vocab_size, device)
    ref_loss = 0.0
    for ids, labels in seqs:  # HF's own loss on each sequence alone, summed over trained tokens
        out = ref(input_ids=ids[None], labels=labels[None], use_cache=False)
        n = int((labels[1:] != -100).sum())
        (out.loss * n).backward()
        ref_loss += float(out.loss.detach()) * n
    ref_grads = _grads(ref)
    del ref

    attention.reset_probes()
    spec = torch_varlen.spec()
    env = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", torch=torch.__version__,
               varlen=spec.describe(), flash_attn=attention.has_flash_attn(), flex=attention.has_flex())
    paths: list[tuple[str, str, bool]] = []
    if not smoke:
        if spec.usable:
            paths += [("varlen", "varlen", False), ("varlen + compile", "varlen", True)]
        if attention.has_flash_attn():
            paths.append(("flash_attn", "flash_attn", False))
        if attention.has_flex():
            paths.append(("flex", "flex", False))
    paths.append(("sdpa", "sdpa", False))
    if smoke:
        paths.append(("sdpa + compile", "sdpa", True))
    rows = []
    for label, backend, compiled in paths:
        row: dict = dict(check=f"attention {label}")
        try:
            torch._dynamo.reset()
            model = AutoModelForCausalLM.from_config(config, attn_implementation=attention.ATTN_NAME,
                                                     dtype=torch.float32)
            model.load_state_dict(state)
            model.config.use_cache = False
            model.to(device=device, dtype=dtype)
            attention.set_backend(backend)
            wrapper = SFTLossModel(model)
            wrapper.attn_dtype = dtype
            if compiled:
                compile_layers(decoder_layers(model), backend="eager" if smoke else "inductor")
                wrapper.compiled = True
            loss, _ = wrapper(**batch)
            loss.backward()
            row.update(_compare(float(loss), _grads(model), ref_loss, ref_grads))
            if compiled:
                from torch._dynamo.utils import counters

                graphs = []
                # other token counts and another longest sequence (max_length_q, a Python int, changes once)
                for seed, lens in enumerate((lengths[1:], lengths[:2], lengths[::2])):
                    _, b = _row(lens, config.vocab_size, device, seed=seed + 1)
                    model.zero_grad(set_to_none=True)
                    wrapper(**b)[0].backward()
                    graphs.append(int(counters["stats"]["unique_graphs"]))
                row["graphs_per_layout"] = graphs
                row["ok"] = row["ok"] and graphs[-1] <= 2 and graphs[-1] == graphs[-2]
            del model, wrapper
        except Exception as e:  # noqa: BLE001 - a failing path is a row of the table, not the end of the run
            row.update(ok=False, error=f"{type(e).__name__}: {e}"[:300])
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    attention.set_backend("auto")
    return rows, env


# ----------------------------------------------------------------------------- part 2: training
def _prepare_packed(args, work: Path, smoke: bool) -> Path:
    from train_gpu import build_packed

    ns = argparse.Namespace(data=args.data, seq_len=512 if smoke else 8192, dry_run=smoke)
    return build_packed(ns, work)


def _train_run(label, extra, packed: Path, args, work: Path, smoke: bool) -> dict:
    out = work / f"{label.replace(' ', '_')}.json"
    cmd = [sys.executable, str(ROOT / "bench" / "train_gpu.py"), "--data", str(packed), "--json", str(out),
           "--steps", str(args.steps), "--warmup", str(args.warmup), *extra]
    if smoke:
        cmd.append("--dry-run")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout, cwd=str(ROOT),
                              env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {args.run_timeout} s"
    wall = time.perf_counter() - t0
    result = dict(run=label, status=status, wall_s=wall)
    if out.is_file():
        data = json.loads(out.read_text())
        if data["results"]:
            result.update(data["results"][0])
    return result


def training_check(args, smoke: bool) -> list[dict]:
    if args.wheels:
        install_wheels(args.wheels)
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        return [dict(run="training", status="skipped: datasets is not installed; bring the wheels "
                                            "(--download-wheels here, --wheels there)")]
    runs = [("ours defaults", ["--no-trl"]), ("ours 16 GB plan", ["--no-trl", "--memory-budget-gb", "16"])]
    if not args.skip_trl:
        runs.append(("trl defaults", ["--no-ours"]))
    if smoke:
        runs = runs[:1]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        packed = _prepare_packed(args, work, smoke)
        return [_train_run(label, extra, packed, args, work, smoke) for label, extra in runs]


# ----------------------------------------------------------------------------- the table
def table(attn_rows: list[dict], train_rows: list[dict]) -> list[tuple[str, str, str, str]]:
    lines: list[tuple[str, str, str, str]] = []
    for r in attn_rows:
        status = "PASS" if r.get("ok") else "FAIL"
        if "error" in r:
            lines.append((r["check"], r["error"], "runs", "FAIL"))
            continue
        lines.append((f"{r['check']}: loss rel diff", f"{r['loss_rel_diff']:.2e}", f"<= {LOSS_REL_TOL:g}", status))
        lines.append((f"{r['check']}: min grad cosine", f"{r['min_grad_cosine']:.6f}", f">= {GRAD_COS_MIN}", status))
        if "graphs_per_layout" in r:
            lines.append((f"{r['check']}: dynamo graphs after 3 more layouts", str(r["graphs_per_layout"]),
                          "no growth", status))
    by = {r["run"]: r for r in train_rows}
    for r in train_rows:
        if r.get("status") != "ok" or "tokens_per_s" not in r:
            lines.append((r["run"], r.get("status", "?"), "runs", "FAIL"))
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
        mfu_m = f"{100 * r['mfu_measured']:.1f}%" if r.get("mfu_measured") is not None else "n/a"
        if r.get("description"):
            lines.append((f"{r['run']}: set-up", r["description"], "", ""))
        elif r.get("attn"):
            lines.append((f"{r['run']}: set-up", f"attention {r['attn']}, gradient checkpointing "
                          f"{r.get('gradient_checkpointing')}", "", ""))
        lines.append((f"{r['run']}: tokens/s", f"{r['tokens_per_s']:,.0f}", "", ""))
        lines.append((f"{r['run']}: MFU datasheet / measured peak", f"{mfu} / {mfu_m}",
                      ">= 45%" if r["run"] == "ours defaults" else "", ""))
        lines.append((f"{r['run']}: peak memory GB", f"{r['peak_memory_gb']:.1f}", "<= 16" if r["run"] != "trl defaults"
                      else "", ""))
    ours, trl = by.get("ours defaults"), by.get("trl defaults")
    if ours and trl and ours.get("tokens_per_s") and trl.get("tokens_per_s"):
        ratio = ours["tokens_per_s"] / trl["tokens_per_s"]
        lines.append(("ours defaults / trl defaults: tokens/s", f"{ratio:.2f}x", ">= 4x", "PASS" if ratio >= 4 else "FAIL"))
        ok = ours["peak_memory_gb"] <= trl["peak_memory_gb"] and ours["peak_memory_gb"] <= 16
        lines.append(("ours defaults peak memory vs trl defaults", f"{ours['peak_memory_gb']:.1f} vs "
                      f"{trl['peak_memory_gb']:.1f} GB", "<= trl and <= 16", "PASS" if ok else "FAIL"))
    if ours and ours.get("mfu") is not None:
        lines.append(("ours defaults: MFU target", f"{100 * ours['mfu']:.1f}%", ">= 45%",
                      "PASS" if ours["mfu"] >= 0.45 else "FAIL"))
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.download_wheels:
        return download_wheels(args)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or --cpu-smoke to check the script on a CPU", file=sys.stderr)
        return 2
    if smoke:
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    t0 = time.perf_counter()
    attn_rows, env = attention_check(smoke)
    print(json.dumps(env), flush=True)
    train_rows = [] if args.skip_train else training_check(args, smoke)
    lines = table(attn_rows, train_rows)
    import transformers

    print(f"\n{env['device']}, torch {env['torch']}, transformers {transformers.__version__}; {env['varlen']}; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| check | value | target | status |\n|---|---|---|---|")
    for line in lines:
        print("| " + " | ".join(line) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(env=env, attention=attn_rows, training=train_rows), indent=2))
    failed = any(r.get("ok") is False for r in attn_rows) or any(r.get("status") != "ok" for r in train_rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
