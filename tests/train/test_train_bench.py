"""bench/train_gpu.py is a GPU benchmark; on CPU it must at least show --help and complete --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sftdata_train.testing import prepare_dir, synthetic_conversations

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train_gpu.py"


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)


def test_help(tmp_path):
    out = _run(["--help"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Qwen3-0.6B" in out.stdout and "--dry-run" in out.stdout and "--seq-len" in out.stdout


def test_dry_run_on_cpu_with_trl(tmp_path):
    prepare_dir(synthetic_conversations(60, seed=9), tmp_path / "prepared")
    out = _run(["--dry-run", "--data", str(tmp_path / "prepared"), "--json", str(tmp_path / "r.json")], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    res = json.loads((tmp_path / "r.json").read_text())
    names = [r["trainer"] for r in res["results"]]
    assert names[0] == "sftdata_train" and any(n.startswith("trl") for n in names)
    for r in res["results"]:
        assert r["tokens_per_s"] > 0 and r["steps"] == 2
    assert "tokens/s" in out.stdout and "MFU" in out.stdout


GPU_CHECK = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_gpu_check_cpu_smoke(tmp_path):
    """bench/gpu_check.py end to end on a CPU: attention rows against HF per-sequence passes, the
    compiled row's graph count, one training run, the table and the JSON."""
    prepare_dir(synthetic_conversations(40, seed=3), tmp_path / "prepared")
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, str(GPU_CHECK), "--cpu-smoke", "--data", str(tmp_path / "prepared"),
                          "--json", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=600,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads((tmp_path / "c.json").read_text())
    assert [r["check"] for r in res["attention"]] == ["attention sdpa", "attention sdpa + compile"]
    for r in res["attention"]:
        assert r["ok"] and r["loss_rel_diff"] < 2e-3 and r["min_grad_cosine"] > 0.999
    assert res["attention"][1]["graphs_per_layout"][-1] <= 2
    (run,) = res["training"]
    assert run["status"] == "ok" and run["tokens_per_s"] > 0 and "fp32" in run["description"]
    assert "| check | value | target | status |" in out.stdout and "attention sdpa: loss rel diff" in out.stdout


def test_gpu_check_wheel_list():
    """--download-wheels fetches part 2's dependency closure minus what torch + transformers bring."""
    sys.path.insert(0, str(GPU_CHECK.parent))
    try:
        from gpu_check import wheel_requirements
    finally:
        sys.path.remove(str(GPU_CHECK.parent))
    reqs = wheel_requirements()
    assert {"datasets", "trl", "accelerate", "pyarrow"} <= set(reqs)
    assert not {"torch", "transformers", "numpy", "tokenizers", "jinja2", "safetensors"} & set(reqs)


def test_tree_dry_run_on_cpu(tmp_path):
    """--tree: tree rows vs linear layout vs `all`, and the tree-vs-per-branch check (here on the
    SDPA tree path in fp32; flex in fp32 and bf16 on a GPU)."""
    out = _run(["--tree", "--dry-run", "--steps", "1", "--warmup", "0", "--traces", "4", "--check-rows", "2",
                "--json", str(tmp_path / "t.json")], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    res = json.loads((tmp_path / "t.json").read_text())
    layouts = [r["layout"] for r in res["results"]]
    assert layouts[:2] == ["tree", "linear"] and layouts[-1] == "trunk" and set(layouts) <= {"tree", "linear", "all", "trunk"}
    tree, linear = res["results"][0], res["results"][1]
    assert tree["tokens_per_s"] > 0 and tree["steps_per_epoch"] <= linear["steps_per_epoch"]
    (check,) = res["checks"]
    assert check["dtype"] == "float32" and check["linear_tokens"] > check["tokens"]
    assert check["rel_loss"] < 1e-5 and check["max_rel_grad"] < 1e-5
    assert ("vs all" in out.stdout or "vs trunk" in out.stdout) and "max rel grad" in out.stdout
