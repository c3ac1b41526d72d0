"""Interrupts and resume: SIGINT/SIGTERM during ``sftdata-train`` stops at a step boundary with a
checkpoint, one line naming it and the resume command, exit 130, no traceback; the resumed run
says what it resumed from; ``sftdata prepare``'s interrupt line names the real partial folder;
the learning-rate schedule's last step does not run at learning rate 0."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from sftdata_train.checkpoint import directories as ckpt
from sftdata_train.loop.interrupt import resume_command
from sftdata_train.loop.optim import lr_factor
from sftdata_train.testing import prepare_dir, synthetic_conversations

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- schedule
@given(
    total=st.integers(1, 500), warmup_frac=st.floats(0, 0.99), kind=st.sampled_from(["cosine", "linear"]),
    min_ratio=st.sampled_from([0.0, 0.1]),
)
def test_last_step_does_not_run_at_min_lr(total, warmup_frac, kind, min_ratio):
    warmup = int(warmup_frac * total)
    f = [lr_factor(s, total_steps=total, warmup_steps=warmup, kind=kind, min_ratio=min_ratio) for s in range(total + 1)]
    assert all(x > 0 for x in f[:total])  # no step that runs has learning rate 0
    assert all(x > min_ratio for x in f[warmup:total])  # nor, after warm-up, the floor
    if total > warmup:
        assert f[warmup] == pytest.approx(1.0)  # the first step after warm-up at the peak
        assert f[total] == pytest.approx(min_ratio, abs=1e-12)  # the floor is reached one step after the last
        assert all(a >= b - 1e-12 for a, b in zip(f[warmup:], f[warmup + 1:]))  # decays monotonically


# --------------------------------------------------------------------------- resume command
def test_resume_command_replaces_resume_flags(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    base = ["--data", "d d", "--output_dir", "o"]
    for extra in ([], ["--resume"], ["--resume", "checkpoint-3"], ["--resume_from_checkpoint=latest"]):
        cmd = resume_command(base + extra)
        assert shlex.split(cmd) == ["sftdata-train", *base, "--resume", "latest"], cmd
    monkeypatch.setattr(sys, "argv", ["/venv/bin/sftdata-train", *base])
    assert resume_command() == shlex.join(["sftdata-train", *base, "--resume", "latest"])
    # another program (sftdata run, the Python API): not a sftdata-train command line
    monkeypatch.setattr(sys, "argv", ["/venv/bin/sftdata", "run", "p.yaml"])
    assert "sftdata run resumes the newest checkpoint by itself" in resume_command()


# --------------------------------------------------------------------------- prepare
def test_prepare_interrupt_names_the_partial_folder(tmp_path, monkeypatch, capsys):
    import json

    import sftdata.output.store as store
    from sftdata.cli import main as cli_main

    src = tmp_path / "in.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i in range(200):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                             {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    calls = []

    def interrupt_on_second_chunk(name):
        calls.append(name)
        if name == "chunk" and calls.count("chunk") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(store, "crash_point", interrupt_on_second_chunk)
    out = tmp_path / "work" / "x"
    args = ["prepare", str(src), "-o", str(out), "--shard-size", "1", "--no-progress"]
    assert cli_main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    partial = tmp_path / "work" / ".x.partial"
    assert partial.is_dir()
    assert len(err) == 1 and str(partial) in err[0] and "--resume" in err[0], err
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    assert cli_main([*args, "--resume"]) == 0 and (out / "stats.json").is_file()


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    prepare_dir(synthetic_conversations(40, seed=2), root / "prepared")
    return root / "prepared"


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the checkpoint: "
                                 f"{proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no checkpoint after {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_training_saves_and_says_how_to_resume(data_dir, tmp_path, sig, capsys):
    out = tmp_path / "run"
    args = ["--data", str(data_dir), "--output-dir", str(out), "--precision", "fp32", "--max-steps", "100000",
            "--save-steps", "3", "--max-tokens-per-batch", "700", "--no-progress-bar", "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "sftdata_train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (out / "checkpoint-3" / "training_state" / "state.json").is_file(), 240, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    steps = [s for s, _ in ckpt.list_checkpoints(out)]
    assert steps and steps[-1] >= 3
    n = steps[-1]
    kept = out / f"checkpoint-{n}"
    assert last.startswith(f"sftdata-train: interrupted ({sig.name}) at step {n}; kept {kept}; resume with: "), last
    assert [ln for ln in err.splitlines() if "interrupted" in ln] == [last]  # one line
    assert not list(out.glob(".tmp-*")) and not (out / "final").exists()

    # the printed command resumes (stopped one step later here), and says what it resumed from
    from sftdata_train.cli import main as cli_main

    cmd = shlex.split(last.split("resume with: ", 1)[1])
    assert cmd[0] == "sftdata-train" and cmd[-2:] == ["--resume", "latest"]
    capsys.readouterr()
    assert cli_main([*cmd[1:], "--stop-at-step", str(n + 1)]) == 0
    err2 = capsys.readouterr().err
    assert f"sftdata-train: resumed from checkpoint-{n} ({kept}): step {n} of 100000" in err2, err2[-2000:]
    assert [s for s, _ in ckpt.list_checkpoints(out)][-1] == n + 1
