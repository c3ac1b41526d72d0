#!/usr/bin/env python
"""``bench/prepare.py --scale``: ``sftdata prepare`` at 100k and 1M conversations.

Synthetic input from tau-bench (``../shared/data/tau-bench``, 200 GPT-4o airline
trajectories) with perturbations, written as JSON Lines: conversation ``i`` is a prefix of a
random trajectory (without the long system policy, ending at an assistant turn, 2-7
messages with their tool calls and results), in which about 8% of the words of each
message are replaced by random words of the corpus and the digits are re-drawn; no tool
schemas are attached (short conversations, as in the issue's measurements).

Each (size, num_proc) runs ``sftdata prepare`` in a fresh process (the CLI, output to disk)
and reports the process's wall time, the prepare time recorded in ``stats.json`` (from the
call to the published output: tokenizer load included, interpreter start-up not), the CPU
time of the main process and its workers, tokens/s (over the prepare time), tokens/s per
process, tokens per CPU-second (the steadier figure on a shared machine), peak RSS of the main process and
of the largest worker (``ru_maxrss``; the total bound is main + num_proc x worker), and
the throughput per process relative to the small baseline (first size). Then a linear
extrapolation: hours for 1B tokens on a 32-core machine from the per-process rate of the
largest run (the measured 2-process efficiency is printed next to it).

    python bench/prepare.py --scale                              # 10k baseline, 100k, 1M x num_proc 1, 2
    python bench/prepare.py --scale --scale-sizes 10000,100000 --scale-procs 1,2
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAU = REPO.parent / "shared" / "data" / "tau-bench" / "gpt-4o-airline.json"

_RUNNER = r"""
import json, resource, sys, time
from sftdata.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - t0
me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("SCALE_RESULT " + json.dumps({"rc": rc, "wall": wall, "rss_main_kb": me.ru_maxrss, "rss_worker_kb": ch.ru_maxrss,
      "cpu_main": me.ru_utime + me.ru_stime, "cpu_workers": ch.ru_utime + ch.ru_stime}))
"""


def synthesize(path: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` perturbed tau-bench prefixes to ``path`` (JSON Lines); returns bytes written."""
    rng = random.Random(seed)
    trajs = [t["traj"] for t in json.loads(TAU.read_text(encoding="utf-8"))]
    vocab = sorted({w for t in trajs for m in t[1:] if isinstance(m.get("content"), str) for w in m["content"].split() if w.isalpha()})
    digits = re.compile(r"\d")

    def perturb(text: str) -> str:
        words = text.split(" ")
        for k in range(len(words)):
            if rng.random() < 0.08:
                words[k] = rng.choice(vocab)
        return digits.sub(lambda _: str(rng.randrange(10)), " ".join(words))

    size = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            traj = trajs[rng.randrange(len(trajs))][1:]  # without the system policy
            ends = [k for k, m in enumerate(traj) if m["role"] == "assistant" and 1 <= k <= 6]
            cut = rng.choice(ends) + 1 if ends else min(len(traj), 2)
            msgs = []
            for m in traj[:cut]:
                m = dict(m)
                if isinstance(m.get("content"), str):
                    m["content"] = perturb(m["content"])
                msgs.append(m)
            line = json.dumps({"id": i, "messages": msgs}, ensure_ascii=False) + "\n"
            size += len(line)
            f.write(line)
    return size


def run_one(src: Path, out: Path, num_proc: int, tokenizer: str | None) -> dict:
    argv = ["prepare", str(src), "-o", str(out), "--num-proc", str(num_proc), "--no-progress", "--overwrite"]
    if tokenizer:
        argv += ["--tokenizer", tokenizer]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *argv], capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SCALE_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"prepare failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(line[len("SCALE_RESULT ") :])
    stats = json.loads((out / "stats.json").read_text())
    res.update(tokens=stats["tokens_total"], rows=stats["rows_in"], prepare_s=stats["seconds"], rejected=stats["rows_rejected"], files=len(stats["data"]["files"]),
               out_bytes=sum(e["bytes"] for e in stats["data"]["files"]))
    return res


def main(args) -> int:
    if not TAU.is_file():
        print(f"bench/prepare.py --scale: skipped: {TAU} not found")
        return 0
    sizes = [int(x) for x in args.scale_sizes.split(",")]
    procs = [int(x) for x in args.scale_procs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sftdata-scale-", dir=args.scale_dir))
    tokenizer = None
    label = "embedded default"
    try:
        if args.family:
            from sftdata.testing.tokenizers import build_tokenizer

            tokenizer = str(work / "tok")
            build_tokenizer(args.family).save_pretrained(tokenizer)
            label = f"testing family {args.family}"
        elif args.tokenizer:
            tokenizer, label = args.tokenizer, args.tokenizer
        print(f"sftdata prepare at scale: synthetic tau-bench prefixes (perturbed), tokenizer {label}; {os.cpu_count()} cpus, "
              f"load average {os.getloadavg()[0]:.1f} at start")
        hdr = (f"{'conversations':>13} {'num_proc':>8} {'tokens':>13} {'wall s':>8} {'prep s':>8} {'cpu s':>8} {'tokens/s':>10} {'tok/s/proc':>10} "
               f"{'tok/cpu-s':>10} {'vs base':>8} {'RSS main':>9} {'RSS worker':>10} {'RSS bound':>9} {'files':>6}")
        print(hdr)
        print("-" * len(hdr))
        base: dict[int, float] = {}
        rows_out = []
        one = work / "one.jsonl"
        synthesize(one, 1)
        startup_cpu = run_one(one, work / "out-one", 1, tokenizer)["cpu_main"]
        shutil.rmtree(work / "out-one", ignore_errors=True)
        for n in sizes:
            src = work / f"in-{n}.jsonl"
            t0 = time.perf_counter()
            nbytes = synthesize(src, n)
            synth_s = time.perf_counter() - t0
            for p in procs:
                out = work / f"out-{n}-{p}"
                r = run_one(src, out, p, tokenizer)
                shutil.rmtree(out, ignore_errors=True)
                rate = r["tokens"] / r["prepare_s"]
                per_proc = rate / p
                cpu = r["cpu_main"] + r["cpu_workers"]
                base.setdefault(p, per_proc)
                bound_mb = (r["rss_main_kb"] + p * r["rss_worker_kb"] * (p > 1)) / 1024
                rows_out.append((n, p, r, rate, per_proc))
                print(
                    f"{n:>13,} {p:>8} {r['tokens']:>13,} {r['wall']:>8.1f} {r['prepare_s']:>8.1f} {cpu:>8.1f} {rate:>10,.0f} {per_proc:>10,.0f} "
                    f"{r['tokens'] / cpu:>10,.0f} {per_proc / base[p]:>7.2f}x "
                    f"{r['rss_main_kb'] / 1024:>7.0f}MB {r['rss_worker_kb'] / 1024 if p > 1 else 0:>8.0f}MB {bound_mb:>7.0f}MB {r['files']:>6}",
                    flush=True,
                )
            print(f"{'':>13} input {nbytes / 1e6:,.0f} MB JSONL, synthesized in {synth_s:.0f}s (not timed above)", flush=True)
            src.unlink()
        print("-" * len(hdr))
        largest = max(n for n, *_ in rows_out)
        big = {p: (r, rate, pp) for n, p, r, rate, pp in rows_out if n == largest}
        if 1 in big and 2 in big:
            eff = big[2][1] / (2 * big[1][1])
            print(f"2-process efficiency at {largest:,} conversations: {eff:.2f} (tokens/s with 2 processes / twice the 1-process tokens/s)")
        best_pp = max(pp for _, pp in ((p, v[2]) for p, v in big.items()))
        # the main process reads, sends chunks, writes and hashes serially: its CPU per token caps the pool
        multi = [(r, p) for n, p, r, _, _ in rows_out if n == largest and p > 1]
        ceiling = None
        if multi:
            r, p = max(multi, key=lambda x: x[1])
            work = max(r["cpu_main"] - startup_cpu, 1e-9)
            ceiling = r["tokens"] / work
            print(f"main process at {largest:,} x {p}: {r['cpu_main']:.1f} CPU-s ({startup_cpu:.1f} s of it start-up, measured on a 1-row run): "
                  f"one main process can feed at most ~{ceiling:,.0f} tokens/s (~{ceiling / best_pp:.0f} workers)")
        rate32 = min(best_pp * 32, ceiling) if ceiling else best_pp * 32
        print(f"extrapolation: 1B tokens on 32 cores at {best_pp:,.0f} tokens/s per process, capped by the main process"
              f"{'' if ceiling else ' (not measured)'}: {rate32:,.0f} tokens/s, {1e9 / rate32 / 60:.0f} min "
              f"(--num-shards runs several main processes)")
        worst = max((r["rss_main_kb"] + (p * r["rss_worker_kb"] if p > 1 else 0)) / 1024 for _, p, r, _, _ in rows_out)
        print(f"largest RSS bound over all runs: {worst:,.0f} MB (target <= 2048 MB)")
        print(f"machine: load average {os.getloadavg()[0]:.1f} at the end (shared machines make wall times noisy; ratios come from this run)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
