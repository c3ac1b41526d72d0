"""Crash safety and resume: ``prepare`` killed with SIGKILL at several points (through the
``SFTDATA_CRASH_AT`` fault-injection hook of :mod:`sftdata.output.store`) leaves nothing loadable
as complete, and ``--resume`` finishes with byte-identical data; and bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sftdata.cli import main as cli_main
from sftdata.errors import ConfigError
from sftdata.output.load import load_output

REPO = Path(__file__).resolve().parents[2]


def _write_input(path: Path, n: int = 330) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if i % 50 == 7:
                f.write('{"messages": [broken\n')
                continue
            f.write(json.dumps({"messages": [{"role": "user", "content": f"q{i} " + "word " * (i % 9)}, {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    return path


def _args(src: Path, out: Path, *extra: str) -> list[str]:
    # --shard-size 1: every 64-row chunk is committed as its own file (6 files here)
    return ["prepare", str(src), "-o", str(out), "--shard-size", "1", "--no-progress", *extra]


def _run_killed(args: list[str], crash_at: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SFTDATA_CRASH_AT": crash_at, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "sftdata.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "stats.json"}


def _stats(d: Path) -> dict:
    s = json.loads((d / "stats.json").read_text())
    return {k: v for k, v in s.items() if k not in ("seconds", "tokens_per_second")}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    src = _write_input(d / "in.jsonl")
    assert cli_main(_args(src, d / "out")) == 0
    assert len(json.loads((d / "out" / "stats.json").read_text())["data"]["files"]) == 6
    return src, d / "out"


# (crash point, what must hold right after the kill)
CRASHES = [
    ("chunk:3", "during encode: chunk 3 written into an uncommitted file"),
    ("part-write:3", "during a file write: closed but not renamed"),
    ("manifest:3", "after the rename, before the file's manifest"),
    ("finalize", "metadata written, stats.json not yet"),
    ("publish", "between the renames of the final swap"),
]


@pytest.mark.parametrize("crash_at", [c for c, _ in CRASHES])
def test_kill_then_resume_gives_identical_output(clean, tmp_path, crash_at):
    src, ref = clean
    out = tmp_path / "out"
    rerun = crash_at == "publish"  # also the rerun-into-an-existing-output case
    if rerun:
        assert cli_main(_args(src, out, "--turn-policy", "all")) == 0  # an older, different output
    proc = _run_killed(_args(src, out, *(["--overwrite"] if rerun else [])), crash_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = tmp_path / ".out.partial"
    assert partial.is_dir()
    # nothing partial is loadable as complete: the target is absent (or, before the swap,
    # still the complete old output) and the partial directory is refused
    if out.exists():
        assert rerun is False or load_output(out).sftdata_stats["options"]["turn_policy"] == "all"
    else:
        with pytest.raises(ConfigError):
            load_output(out)
    if crash_at == "publish":  # everything was written: the partial dir is complete, only not in place
        assert load_output(partial, verify="full").sftdata_stats["content_fingerprint"] == _stats(ref)["content_fingerprint"]
    else:
        with pytest.raises(ConfigError):
            load_output(partial)
    # without --resume the leftover job is an error, not silently redone or overwritten
    assert cli_main(_args(src, out)) == 2
    assert cli_main(_args(src, out, "--resume", *(["--overwrite"] if rerun else []))) == 0
    assert not partial.exists()
    assert _files(out) == _files(ref)  # byte-identical data files, rejects, metadata
    assert _stats(out) == _stats(ref)
    load_output(out, verify="full")


def test_resume_refuses_another_job(clean, tmp_path, capsys):
    src, _ = clean
    out = tmp_path / "out"
    proc = _run_killed(_args(src, out), "chunk:2")
    assert proc.returncode == -signal.SIGKILL
    assert cli_main(_args(src, out, "--resume", "--turn-policy", "last")) == 2
    assert "started with different options" in capsys.readouterr().err
    # a resume of a finished job is a no-op
    assert cli_main(_args(src, out, "--resume")) == 0
    assert cli_main(_args(src, out, "--resume")) == 0
    assert "already complete" in capsys.readouterr().out


_MEMORY_PROBE = """
import json, resource, sys, tracemalloc
import datasets, numpy, pyarrow, tqdm.auto
import sftdata.output.store, sftdata.chunks
from sftdata import prepare
from sftdata.masking.tokenizer import load_tokenizer
src, out = sys.argv[1], sys.argv[2]
tok = load_tokenizer(None)
tracemalloc.start()
ds = prepare(src, tok, out)
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "tokens": ds.sftdata_stats["tokens_total"]}))
"""


def test_memory_does_not_grow_with_the_input(tmp_path):
    """An input 10x larger must not need more than 1.2x the memory (peak Python allocations
    during ``prepare``, measured with tracemalloc in a fresh process; and peak RSS). Before
    streaming, the peak grew 7x between these sizes (all ids were held as Python lists)."""
    results = []
    for n in (200, 2000):
        src = tmp_path / f"in{n}.jsonl"
        with src.open("w") as f:
            for i in range(n):
                f.write(json.dumps({"messages": [{"role": "user", "content": f"question {i} " + "about the flight " * 8},
                                                 {"role": "assistant", "content": f"answer {i} " + "the seat is free " * 8}]}) + "\n")
        proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(src), str(tmp_path / f"out{n}")],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    small, large = results
    assert large["tokens"] > 9 * small["tokens"]
    assert large["peak"] <= 1.2 * small["peak"], results
    assert large["rss_kb"] <= 1.2 * small["rss_kb"], results
