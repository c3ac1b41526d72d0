"""``final/`` of every run loads where users load it, offline (``HF_HUB_OFFLINE=1``), also on the
embedded default model: a full fine-tuning and a merged LoRA run with
``AutoModelForCausalLM.from_pretrained``, a LoRA adapter with peft's ``AutoPeftModelForCausalLM``
(and transformers' own adapter loading), its base written to ``final/base``; the run's last line
is the Python line that loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftdata_train.cli import main as cli_main
from sftdata_train.lora.merge import base_reference
from sftdata_train.testing import prepare_dir, synthetic_conversations

pytest.importorskip("peft")
REPO = Path(__file__).resolve().parents[3]

_LOAD = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM
from peft import AutoPeftModelForCausalLM
ids = torch.tensor([[1, 5, 9, 13, 200, 7]])
out = {}
for kind, path in json.loads(sys.argv[1]).items():
    loaders = {"auto": AutoModelForCausalLM}
    if kind == "adapter":
        loaders["peft"] = AutoPeftModelForCausalLM
    for name, cls in loaders.items():
        m = cls.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            out[f"{kind}/{name}"] = m(input_ids=ids).logits[0, -1].tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    data = root / "prepared"
    prepare_dir(synthetic_conversations(24, seed=4), data)
    base = ["--data", str(data), "--precision", "fp32", "--max-steps", "3", "--max-tokens-per-batch", "700",
            "--no-progress-bar", "--seed", "2", "--learning-rate", "0.01"]
    extra = {"full": [], "adapter": ["--lora-r", "4"], "merged": ["--lora-r", "4", "--merge-lora"]}
    lines = {}
    for kind, more in extra.items():
        out = root / kind
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert cli_main([*base, "--output-dir", str(out), *more]) == 0, err.getvalue()[-2000:]
        lines[kind] = err.getvalue().strip().splitlines()[-1]
    return root, lines


def test_last_line_says_how_to_load(runs):
    root, lines = runs
    assert lines["full"] == ("sftdata-train: load it with: from transformers import AutoModelForCausalLM; "
                             f"AutoModelForCausalLM.from_pretrained({str(root / 'full' / 'final')!r})")
    assert lines["adapter"] == ("sftdata-train: load it with: from peft import AutoPeftModelForCausalLM; "
                                f"AutoPeftModelForCausalLM.from_pretrained({str(root / 'adapter' / 'final')!r})")
    assert "AutoModelForCausalLM.from_pretrained" in lines["merged"]


def test_every_final_loads_offline(runs):
    root, _ = runs
    conf = json.loads((root / "adapter" / "final" / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == str((root / "adapter" / "final" / "base").resolve())
    assert (root / "adapter" / "final" / "base" / "config.json").is_file()
    paths = {k: str(root / k / "final") for k in ("full", "adapter", "merged")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "empty_hf_home"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _LOAD, json.dumps(paths)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Retrying" not in proc.stderr
    logits = json.loads(proc.stdout.strip().splitlines()[-1])
    import torch

    t = {k: torch.tensor(v) for k, v in logits.items()}
    # the adapter loads the same way through peft and through transformers, and (same seed, same
    # steps) gives the merged run's model; the full run is another model
    assert torch.allclose(t["adapter/peft"], t["adapter/auto"], atol=1e-5)
    assert torch.allclose(t["adapter/peft"], t["merged/auto"], atol=1e-4)
    assert not torch.allclose(t["full/auto"], t["merged/auto"], atol=1e-4)


def test_base_reference(tmp_path, monkeypatch):
    final = tmp_path / "run" / "final"
    assert base_reference(None, final) == str(final.resolve() / "base")
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    assert base_reference("m", final) == str((tmp_path / "m").resolve())  # a relative local dir: absolute
    assert base_reference("Qwen/Qwen3-0.6B", final) == "Qwen/Qwen3-0.6B"  # a Hub id as given
