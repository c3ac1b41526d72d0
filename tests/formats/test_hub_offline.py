"""A tokenizer/model Hub id with the Hub unreachable (``HF_HUB_OFFLINE=1``, or an endpoint that
refuses connections) fails with one line before transformers' retries start, and loads from the
local cache when the cache holds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sftdata.errors import ConfigError
from sftdata.hub_access import hub_kwargs

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port on this machine: connection refused


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), HF_HOME=str(tmp_path / "hf"),
               **extra)
    return env


@pytest.mark.parametrize("net", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": UNREACHABLE}], ids=["offline", "refused"])
def test_cli_hub_ids_fail_with_one_line(tmp_path, net):
    env = _env(tmp_path, **net)
    prep = subprocess.run([sys.executable, "-m", "sftdata.cli", "prepare", str(REPO / "examples" / "traces.jsonl"),
                           "--tokenizer", "no-such-org/no-such-tokenizer", "-o", str(tmp_path / "out"),
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert prep.returncode == 2, prep.stderr[-2000:]
    lines = prep.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-org/no-such-tokenizer" in lines[0] and "not a local path" in lines[0], lines
    assert "Retrying" not in prep.stderr  # decided before from_pretrained's back-off
    why = "HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in net else "cannot connect to http://127.0.0.1:9"
    assert why in lines[0]


def test_train_model_id_fails_with_one_line(tmp_path):
    from sftdata_train.testing import prepare_dir, synthetic_conversations

    prepare_dir(synthetic_conversations(8, seed=0), tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "sftdata_train", "--data", str(tmp_path / "data"), "--output-dir",
                           str(tmp_path / "run"), "--model", "no-such-org/no-such-model", "--max-steps", "1",
                           "--no-progress-bar"], env=_env(tmp_path, HF_HUB_OFFLINE="1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln]
    assert len(err) == 1 and "no-such-org/no-such-model" in err[0] and "HF_HUB_OFFLINE" in err[0], proc.stderr
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr


def test_cached_id_loads_offline(tmp_path):
    """A Hub id in the local cache loads with the Hub unreachable (``local_files_only``)."""
    from sftdata.assets import default_tokenizer_path

    snap = tmp_path / "hf" / "hub" / "models--some-org--cached-tok" / "snapshots" / ("0" * 40)
    shutil.copytree(default_tokenizer_path(), snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    # what huggingface_hub records for a file the repo does not have (no model config.json)
    (snap.parents[1] / ".no_exist" / ("0" * 40)).mkdir(parents=True)
    (snap.parents[1] / ".no_exist" / ("0" * 40) / "config.json").touch()
    code = ("from sftdata.masking.tokenizer import load_tokenizer; t = load_tokenizer('some-org/cached-tok'); "
            "print(len(t))")
    for net in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": UNREACHABLE}):
        proc = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, **net), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0 and int(proc.stdout.strip()) > 100, proc.stderr[-2000:]
        assert "Retrying" not in proc.stderr


def test_local_paths_are_never_probed(tmp_path, monkeypatch):
    import sftdata.hub_access as ha

    monkeypatch.setattr(ha, "hub_unreachable", lambda: pytest.fail("probed the Hub for a local path"))
    assert hub_kwargs(tmp_path, what="model") == {}
    monkeypatch.setattr(ha, "hub_unreachable", lambda: "HF_HUB_OFFLINE is set")
    with pytest.raises(ConfigError, match="'org/x' is not a local path"):
        hub_kwargs("org/x", what="model")
