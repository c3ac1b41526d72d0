"""``bench/prepare.py --trials N``: prepare's CPU time against the render + encode bounds,
over N interleaved runs in one process.

One run of each row is not enough on a shared machine: the CPU time of the same call moves by
±25% from run to run, and the bounds (mostly Rust, multi-threaded) and prepare (mostly Python)
are slowed by different amounts when a neighbour is busy. Interleaving ``a1, a2, a3, b`` N times
and taking the ratio within each trial keeps each ratio to one moment of the machine; the median
and the worst trial are printed.
"""

from __future__ import annotations

import os
import statistics
from typing import Callable

BOUNDS = {
    "a1": "HF apply_chat_template + tokenizer(text)",
    "a2": "sftdata render + encode_batch",
    "a3": "sftdata render + encode_batch_fast",
}


def run_trials(n: int, bounds: dict[str, Callable[[], dict]], prepare: Callable[[], dict]) -> dict[str, list[float]]:
    """CPU seconds of every bound and of ``prepare`` (key ``b``), ``n`` interleaved runs each."""
    cpu: dict[str, list[float]] = {k: [] for k in (*bounds, "b")}
    for _ in range(n):
        for k, f in bounds.items():
            cpu[k].append(f()["cpu"])
        cpu["b"].append(prepare()["cpu"])
    return cpu


def print_trials(cpu: dict[str, list[float]], policy: str) -> None:
    """Per-trial CPU seconds, then the median and the worst trial of ``b / a_k`` (< 1: prepare
    costs less CPU than that bound)."""
    bounds = [k for k in cpu if k != "b"]
    n = len(cpu["b"])
    par = os.environ.get("TOKENIZERS_PARALLELISM")
    threads = os.environ.get("RAYON_NUM_THREADS")
    rust = (f"TOKENIZERS_PARALLELISM={par}" if par is not None else "TOKENIZERS_PARALLELISM unset") + (
        f", RAYON_NUM_THREADS={threads}" if threads else ", RAYON_NUM_THREADS unset: Rust batches use every core")
    print()
    print(f"--trials {n}: CPU seconds, prepare(turn_policy={policy}) (b) against the bounds, interleaved in this process "
          f"({rust})")
    print(f"  {'trial':>5} " + " ".join(f"{k:>7}" for k in (*bounds, "b")) + "  " + " ".join(f"{'b/' + k:>7}" for k in bounds))
    for i in range(n):
        print(f"  {i + 1:>5} " + " ".join(f"{cpu[k][i]:7.2f}" for k in (*bounds, "b")) + "  "
              + " ".join(f"{cpu['b'][i] / cpu[k][i]:7.3f}" for k in bounds))
    for k in bounds:
        ratios = [b / a for b, a in zip(cpu["b"], cpu[k])]
        print(f"  b/{k} ({BOUNDS.get(k, k)}): median {statistics.median(ratios):.3f}, "
              f"best {min(ratios):.3f}, worst {max(ratios):.3f}")
