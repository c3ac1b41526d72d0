"""Throughput, FLOPs/MFU, memory, and the metrics sinks (``metrics.jsonl``, progress bar, trackers).

FLOPs of a training step (forward + backward), following Kaplan et al. 2020 / PaLM appendix B:

* dense: ``6 * P * tokens`` where ``P`` = :func:`sftdata_train.model.count_matmul_params`
  (every parameter used in a matmul per token; the input embedding lookup excluded, the LM head
  included once);
* attention: ``6 * n_layers * n_heads * head_dim * Σ L_i²`` over the sequences ``i`` of the
  step: ``QKᵀ`` and ``AV`` are ``2 * L² * d`` FLOPs each in forward, halved by the causal mask,
  times 3 for forward + backward.

MFU = achieved FLOP/s / (world size × per-device bf16 peak). ``mfu`` uses the datasheet dense
peak of the GPU (:mod:`sftdata_train.loop.peaks`) or ``--peak-tflops``; ``mfu_measured`` uses the
throughput of a large bf16 matmul measured once on the device (:func:`measure_bf16_peak_tflops`).
On a CPU without ``--peak-tflops`` both are ``null``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

METRIC_KEYS = (
    "step", "loss", "lr", "grad_norm", "tokens_per_s", "trained_tokens_per_s", "mfu", "mfu_measured", "peak_memory_gb",
)


def step_flops(matmul_params: int, tokens: int, sum_sq_lengths: int, n_layers: int, n_heads: int, head_dim: int) -> float:
    """FLOPs of forward + backward over ``tokens`` tokens whose sequences have ``Σ L² = sum_sq_lengths``."""
    return 6.0 * matmul_params * tokens + 6.0 * n_layers * n_heads * head_dim * sum_sq_lengths


def measure_bf16_peak_tflops(device: torch.device, n: int = 8192, iters: int = 20) -> float | None:
    """Achievable bf16 dense TFLOP/s of ``device``: best timing of an ``n × n × n`` matmul.

    The operands come from a private generator and the global RNG states (CPU and ``device``)
    are restored afterwards, so measuring does not change a run's random stream. Returns None
    on a CPU, where the figure would mean little (the timing itself, :func:`_time_matmul`, runs
    anywhere).
    """
    if device.type != "cuda":
        return None
    return _time_matmul(device, n, iters)


def _time_matmul(device: torch.device, n: int, iters: int) -> float:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
        for _ in range(3):
            a @ b
        _sync(device)
        best = math.inf
        for _ in range(iters):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        del a, b
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return 2.0 * n**3 / best / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory in GB (1e9 bytes): CUDA max allocated on ``device``; on CPU the process peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss * (1 if sys.platform == "darwin" else 1024) / 1e9


class MetricsLogger:
    """Writes one JSON object per logged step to ``metrics.jsonl`` (rank 0) and mirrors it to a
    tqdm bar and to the experiment trackers (:mod:`sftdata_train.loop.tracking`).

    On resume, records of steps after the resumed step (left by the interrupted run) are dropped
    so that the file holds exactly one record per logged step.
    """

    def __init__(
        self, output_dir: str | os.PathLike, *, enabled: bool, total_steps: int, start_step: int = 0,
        progress_bar: bool = True, trackers: Sequence[Any] = (),
    ) -> None:
        """``trackers``: opened trackers (``log(record)``/``close()``), closed by :meth:`close`
        (``--tensorboard`` is folded into ``report_to`` when the config is validated)."""
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        self._bar = None
        self.trackers = list(trackers)
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if start_step > 0 and int(rec.get("step", 0)) <= start_step:
                    kept.append(line)
            self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        if progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (must hold ``step``) to ``metrics.jsonl`` and the other sinks."""
        if not self.enabled:
            return
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        for tracker in self.trackers:
            tracker.log(record)
        if self._bar is not None:
            post = {k: record[k] for k in ("loss", "eval_loss", "lr", "grad_norm") if record.get(k) is not None}
            fmt = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in post.items()}
            if record.get("tokens_per_s"):
                fmt["tok/s"] = f"{record['tokens_per_s']:.3g}"
            self._bar.set_postfix(fmt, refresh=False)

    def advance(self, n: int = 1) -> None:
        """Move the progress bar by ``n`` optimizer steps."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Close the progress bar and every tracker (idempotent)."""
        if self._bar is not None:
            self._bar.close()
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


class Throughput:
    """Accumulates tokens/FLOPs between two logs and turns them into rates."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new interval now, with nothing counted."""
        self.t0 = time.perf_counter()
        self.tokens = 0
        self.trained = 0
        self.flops = 0.0

    def add(self, tokens: int, trained: int, flops: float) -> None:
        """Count one step: real ``tokens``, ``trained`` tokens and ``flops`` (all ranks)."""
        self.tokens += tokens
        self.trained += trained
        self.flops += flops

    def rates(
        self, *, world_size: int, peak_tflops: float | None, measured_tflops: float | None = None
    ) -> dict[str, float | None]:
        """Tokens/s and MFU since the last reset; ``mfu`` against ``peak_tflops`` (datasheet or
        ``--peak-tflops``), ``mfu_measured`` against ``measured_tflops`` (None when not known)."""
        dt = max(time.perf_counter() - self.t0, 1e-9)

        def mfu(peak: float | None) -> float | None:
            return self.flops / dt / (world_size * peak * 1e12) if peak else None

        return {
            "tokens_per_s": self.tokens / dt,
            "trained_tokens_per_s": self.trained / dt,
            "mfu": mfu(peak_tflops),
            "mfu_measured": mfu(measured_tflops),
        }
