"""A checkpoint carries a manifest (every file's size and sha256, written last); resuming checks
it, and any damage (a missing, truncated or altered file, bytes flipped inside the weights) is one
line naming the file and the newest intact checkpoint, exit 2, no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from sftdata.errors import ConfigError
from sftdata_train.checkpoint import directories as ckpt
from sftdata_train.cli import main as cli_main
from sftdata_train.loop.trainer import Trainer, train
from sftdata_train.testing import prepare_dir, synthetic_conversations


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    data = prepare_dir(synthetic_conversations(24, seed=1), root / "prepared") and root / "prepared"
    out = root / "run"
    res = train(dict(data=str(data), output_dir=str(out), precision="fp32", max_steps=4, save_steps=2,
                     max_tokens_per_batch=700, progress_bar=False, seed=1))
    assert res.completed and [s for s, _ in ckpt.list_checkpoints(out)] == [2, 4]
    return data, out


def _weights(c):
    files = sorted((c / ckpt.STATE_DIR / ckpt.DCP_DIR).glob("*.distcp"))
    assert files
    return max(files, key=lambda f: f.stat().st_size)


def _truncate(f):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f


def _flip(f):
    b = bytearray(f.read_bytes())
    mid = len(b) // 2
    for i in range(mid, mid + 64):
        b[i] ^= 0xFF
    f.write_bytes(bytes(b))
    return f


def _delete(f):
    f.unlink()
    return f


DAMAGE = {
    "weights_truncated": lambda c: _truncate(_weights(c)),
    "weights_missing": lambda c: _delete(_weights(c)),
    "weights_64_bytes_flipped": lambda c: _flip(_weights(c)),
    "dcp_metadata_missing": lambda c: _delete(c / ckpt.STATE_DIR / ckpt.DCP_DIR / ".metadata"),
    "state_json_truncated": lambda c: _truncate(c / ckpt.STATE_DIR / "state.json"),
    "scheduler_json_altered": lambda c: (c / ckpt.STATE_DIR / "scheduler.json").write_text("{}") and
    c / ckpt.STATE_DIR / "scheduler.json",
    "manifest_missing": lambda c: _delete(c / ckpt.MANIFEST),
    "manifest_truncated": lambda c: _truncate(c / ckpt.MANIFEST),
}


def test_manifest_lists_every_file(run):
    _, out = run
    c = out / "checkpoint-4"
    listed = json.loads((c / ckpt.MANIFEST).read_text())["files"]
    on_disk = {p.relative_to(c).as_posix() for p in c.rglob("*") if p.is_file() and p.name != ckpt.MANIFEST}
    assert set(listed) == on_disk and "training_state/state.json" in on_disk
    assert ckpt.checkpoint_damage(c) is None


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(run, tmp_path, kind, capsys):
    data, src = run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    damaged = DAMAGE[kind](out / "checkpoint-4")
    argv = ["--data", str(data), "--output-dir", str(out), "--precision", "fp32", "--max-steps", "4",
            "--save-steps", "2", "--max-tokens-per-batch", "700", "--no-progress-bar", "--seed", "1"]
    capsys.readouterr()
    for resume in (["--resume", "latest"], ["--resume", str(out / "checkpoint-4")]):
        assert cli_main([*argv, *resume]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert str(damaged) in err[0] and "damaged" in err[0], err[0]
        assert f"the last intact checkpoint is {out / 'checkpoint-2'}" in err[0], err[0]
    # the intact earlier checkpoint still resumes
    again = train(dict(data=str(data), output_dir=str(out), precision="fp32", max_steps=4, save_steps=2,
                       max_tokens_per_batch=700, progress_bar=False, seed=1, resume=str(out / "checkpoint-2"),
                       stop_at_step=3))
    assert again.first_step == 2 and again.step == 3


def test_no_intact_checkpoint_left(run, tmp_path):
    data, src = run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    for c in ("checkpoint-2", "checkpoint-4"):
        _flip(_weights(out / c))
    with pytest.raises(ConfigError, match="sha256 mismatch.*no earlier intact checkpoint"):
        Trainer(dict(data=str(data), output_dir=str(out), precision="fp32", max_steps=4, resume="latest"))
