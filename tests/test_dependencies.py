"""Dependencies go one way: the data package (sftdata) never imports the trainer (sftdata_train)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = r"""
import importlib, json, pkgutil, sys
import sftdata
after_package = "sftdata_train" in sys.modules
names = sorted(m.name for m in pkgutil.walk_packages(sftdata.__path__, "sftdata."))
for name in names:
    importlib.import_module(name)
from sftdata import PaddingCollator, PaddingFreeCollator
print(json.dumps({"after_package": after_package, "modules": names,
                  "trainer": sorted(m for m in sys.modules if m.split(".")[0] == "sftdata_train")}))
"""


def test_sftdata_and_every_submodule_import_without_the_trainer():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["after_package"] is False
    assert "sftdata.pipeline.runner" in report["modules"] and "sftdata.commands.run" in report["modules"]
    assert report["trainer"] == []


def test_the_probe_sees_a_trainer_import():
    """The check can fail: importing the orchestration that lives in the trainer is seen."""
    probe = _PROBE.replace("from sftdata import PaddingCollator", "import sftdata_train.pipeline\nfrom sftdata import PaddingCollator")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert "sftdata_train.pipeline" in json.loads(out.stdout.strip().splitlines()[-1])["trainer"]


def test_collators_are_exported_from_sftdata():
    import sftdata
    from sftdata.collate import PaddingCollator, PaddingFreeCollator

    assert sftdata.PaddingCollator is PaddingCollator and sftdata.PaddingFreeCollator is PaddingFreeCollator
    assert {"PaddingCollator", "PaddingFreeCollator"} <= set(sftdata.__all__)


def test_no_import_of_the_trainer_in_the_data_package_but_the_cli_entry():
    """Also the imports inside functions: only `sftdata run`'s command (sftdata/commands/run.py) reaches the
    trainer, when it runs."""
    import ast
    from pathlib import Path

    import sftdata

    root = Path(sftdata.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            found += [(str(path.relative_to(root)), n) for n in names if n.split(".")[0] == "sftdata_train"]
    assert found == [("commands/run.py", "sftdata_train.pipeline")] * 2  # load_pipeline_config, run_config


def test_a_data_only_pipeline_runs_without_the_trainer(tmp_path):
    probe = f"""
import json, sys
from sftdata.pipeline import load_config, run_pipeline
raw = {{"output_dir": {str(tmp_path / 'out')!r}, "datasets": ["examples/traces.jsonl"]}}
res = run_pipeline(raw, log=lambda s: None)
try:
    load_config({{**raw, "train": {{"max_steps": 1}}}})
    refused = ""
except Exception as e:
    refused = str(e)
print(json.dumps({{"stages": [s.status for s in res.stages], "refused": refused,
                  "trainer": "sftdata_train" in sys.modules}}))
"""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True,
                         cwd=root)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["stages"] == ["ran"] and report["trainer"] is False
    assert "train: training runs in sftdata_train" in report["refused"]
