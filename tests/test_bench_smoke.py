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
