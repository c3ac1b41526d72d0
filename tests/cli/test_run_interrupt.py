"""``sftdata run`` interrupted (Ctrl-C / SIGTERM): one line, exit 130, no traceback."""

from __future__ import annotations

import argparse

import sftdata_train.pipeline as train_pipeline
from sftdata.commands.run import run_config


def test_run_interrupted_prints_one_line_and_exits_130(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_pipeline, "run_pipeline", interrupted)
    args = argparse.Namespace(config="x.yaml", overrides=[], no_progress=True)
    assert run_config(args, until="train", prog="sftdata run") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sftdata run: interrupted") and "rerun the same command" in err[0]
