"""``sftdata prepare DIR`` reads a directory exactly as ``sftdata.prepare(DIR)`` does (one code
path: sftdata's reader, never ``datasets.load_dataset``'s Arrow schema unification for JSON rows):
the CLI on the directory, the CLI on its file list and the Python API give the same rows; ToolBench
answers marked ``valid_data: false`` are ``invalid_trace`` under auto-detection. On synthetic
layouts of SWE-agent, mini-swe-agent, ToolBench and one-conversation JSON dirs (always), and on
the real folders of ``../shared/data`` when present."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from sftdata import prepare
from sftdata.cli import main as cli_main
from sftdata.formats import detect_format, normalize
from sftdata.formats.hub import resolve_source
from sftdata.formats.reader import directory_files
from sftdata.output.load import load_output
from sftdata_train.testing import shared_data_dir

FIX = Path(__file__).parents[1] / "fixtures" / "agent_logs"


def _toolbench_dir(root: Path) -> Path:
    d = root / "toolbench" / "G1_answer"
    d.mkdir(parents=True)
    good = json.loads((FIX / "toolbench_answer.json").read_text())
    (d / "1_DFS_woFilter_w2.json").write_text(json.dumps(good))
    # another answer whose tool schemas have other keys (Arrow would null-fill them into every row)
    other = copy.deepcopy(good)
    other["answer_generation"]["function"][0]["parameters"]["properties"]["city"]["is_id"] = False
    (d / "2_DFS_woFilter_w2.json").write_text(json.dumps(other))
    # an invalid answer as ToolBench writes it: valid_data false, no train_messages
    bad = {"answer_generation": {"valid_data": False, "final_answer": "", "function": good["answer_generation"]["function"],
                                 "query_count": 0, "chain": []}, "win": False}
    (d / "3_DFS_woFilter_w2.json").write_text(json.dumps(bad))
    return root / "toolbench"


def _swe_agent_dir(root: Path) -> Path:
    d = root / "swe_agent"
    shutil.copytree(FIX / "swe_agent", d)
    traj = json.loads((d / "demo__calc-1" / "demo__calc-1.traj").read_text())
    traj["history"][-1]["content"] = "another run"
    (d / "demo__calc-2").mkdir()
    (d / "demo__calc-2" / "demo__calc-2.traj").write_text(json.dumps(traj))
    return d


def _mini_dir(root: Path) -> Path:
    d = root / "mini"
    d.mkdir(parents=True)
    shutil.copy(FIX / "mini_swe_agent.traj.json", d / "a.traj.json")
    shutil.copy(FIX / "mini_swe_agent_messages.json", d / "b.json")
    return d


LAYOUTS = {"swe_agent": _swe_agent_dir, "mini_swe_agent": _mini_dir, "toolbench": _toolbench_dir,
           "conversations": lambda root: shutil.copytree(FIX / "conversations", root / "conv") and root / "conv"}


def _cli_rows(inputs: list[str], out: Path) -> tuple[list[dict], dict]:
    assert cli_main(["prepare", *inputs, "--output", str(out), "--no-progress"]) == 0
    ds = load_output(out)
    rows = [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in ds]
    stats = json.loads((out / "stats.json").read_text())
    return rows, stats


def _same_inputs(d: Path, tmp_path: Path) -> dict:
    assert resolve_source(str(d)) == str(d)  # the directory itself, read by sftdata's reader
    by_dir, s_dir = _cli_rows([str(d)], tmp_path / "by_dir")
    files = [str(f) for f in directory_files(d)]
    by_list, s_list = _cli_rows(files, tmp_path / "by_list")
    api = [{"input_ids": list(e["input_ids"]), "labels": list(e["labels"])} for e in prepare(str(d))]
    assert by_dir == by_list == api and by_dir
    assert s_dir["rejected_by_reason"] == s_list["rejected_by_reason"]
    return s_dir


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_cli_reads_a_directory_as_the_python_api(layout, tmp_path):
    d = LAYOUTS[layout](tmp_path / "src")
    stats = _same_inputs(d, tmp_path)
    if layout == "toolbench":
        assert stats["rejected_by_reason"] == {"invalid_trace": 1}
        assert stats["rows_out"] == 2


def test_toolbench_tools_kept_as_written(tmp_path):
    """No ``null`` keys added to tool schemas (what Arrow's unification of the files did)."""
    from sftdata.formats import iter_rows

    d = _toolbench_dir(tmp_path)
    for _, row in iter_rows(str(d)):
        for tool in row["answer_generation"]["function"]:
            assert "null" not in json.dumps(tool)


def test_toolbench_invalid_answer_is_invalid_trace_under_auto_detection():
    from sftdata.errors import Reason, RowError

    row = {"answer_generation": {"valid_data": False, "final_answer": "", "function": []}}
    assert detect_format(row) == "toolbench"
    with pytest.raises(RowError) as e:
        normalize(row)
    assert e.value.reason is Reason.INVALID_TRACE


def test_json_dir_refuses_load_dataset_options(tmp_path):
    from sftdata.errors import ConfigError

    d = _mini_dir(tmp_path)
    with pytest.raises(ConfigError, match="read whole by sftdata's reader.*split does not apply"):
        resolve_source(str(d), split="train")


# --------------------------------------------------------------------------- real folders
def _shared_dirs() -> list:
    root = shared_data_dir()
    if root is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared/data is absent"))]
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        name = d.name.lower().replace("_", "-")
        if any(k in name for k in ("swe-agent", "toolbench", "bfcl")):
            found.append(pytest.param(d, id=d.name))
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no SWE-agent/ToolBench/BFCL folder"))]


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("folder", _shared_dirs())
def test_real_agent_log_folders(folder, tmp_path):
    # each folder's data may sit one level down (next to PROVENANCE.md and LICENSE)
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    target = folder if directory_files(folder) else subdirs[0]
    stats = _same_inputs(target, tmp_path)
    if "toolbench" in folder.name.lower():
        assert "unknown_format" not in stats["rejected_by_reason"]
