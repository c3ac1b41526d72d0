"""``bench/prepare.py`` still runs end to end (a few rows, offline test tokenizer).

Not a performance test: it checks that the benchmark's options work together and print their
sections, so the script does not rot between the sessions that measure with it. It skips
itself (exit 0, a message) when ``../shared/data/tau-bench`` is absent, and so does this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TAU = REPO.parent / "shared" / "data" / "tau-bench" / "gpt-4o-airline.json"


@pytest.mark.skipif(not TAU.is_file(), reason="../shared/data/tau-bench is absent")
def test_bench_prepare_runs_with_trials_and_join():
    cmd = [sys.executable, str(REPO / "bench" / "prepare.py"), "--family", "chatml", "--rows", "4", "--join", "2",
           "--policy", "exact", "--no-trl", "--trials", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "2 conversations x repeat 1 = 2 conversations (trajectories joined 2 by 2" in text
    assert "sftdata.prepare turn_policy=exact (default)" in text
    assert "--trials 2: CPU seconds" in text
    for bound in ("b/a1", "b/a2", "b/a3"):
        assert f"  {bound} (" in text and "median" in text


def test_bench_prepare_long_runs_and_caps_a_case():
    """``--long``: one row per size and case, a tool-call variant, and the per-case cap: a case
    past ``--max-seconds`` is reported timed out and the larger sizes skipped, not run."""
    cmd = [sys.executable, str(REPO / "bench" / "prepare.py"), "--family", "chatml", "--long", "6", "8",
           "--long-variants", "chat,tools", "--max-seconds", "300"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for variant in ("chat", "tools"):
        for n in (6, 8):
            rows = [ln for ln in lines if ln.split()[:2] == [variant, str(n)]]
            assert [r.split()[4] for r in rows] == ["render+encode", "prepare"], out.stdout
            assert all(r.split()[2] == str(n) for r in rows), out.stdout  # messages
            assert "ok (1 examples" in rows[1] and rows[1].split()[8].endswith("x"), out.stdout  # prepare / render+encode
    capped = subprocess.run(cmd[:-4] + ["--long-variants", "chat", "--max-seconds", "0.05"], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert capped.returncode == 0, capped.stderr[-2000:]
    rows = [ln for ln in capped.stdout.splitlines() if ln.startswith("chat ")]
    assert len(rows) == 4 and all(r.endswith("  timed out at 0.05 s") for r in rows[:2]), capped.stdout  # N=6: both cases
    assert all(r.endswith("  skipped (N=6 timed out at 0.05 s)") for r in rows[2:]), capped.stdout  # N=8: not run


def test_bench_unseen_templates_runs():
    """``bench/unseen_templates.py`` still runs: one template, a few drawn conversations, both
    policies; one table row per policy and the total print."""
    cmd = [sys.executable, str(REPO / "bench" / "unseen_templates.py"), "--only", "SmolLM3", "--examples", "3", "--data", "gen"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("HuggingFaceTB-SmolLM3-3B ")]
    assert [r.split()[1:4] for r in rows] == [["gen", "exact", "3"], ["gen", "last", "3"]], out.stdout
    assert "total: {'rows': 6," in out.stdout, out.stdout
