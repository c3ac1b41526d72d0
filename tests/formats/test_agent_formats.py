"""Readers for agent-framework logs (SWE-agent, mini-swe-agent, ToolBench), one-conversation
files and directories, and ``--tools-file``; on hand-written imitations of each layout
(``tests/fixtures/agent_logs``) and on ``../shared/data`` when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftdata import prepare
from sftdata.cli import main as cli_main
from sftdata.errors import ConfigError, Reason, RowError
from sftdata.formats import detect_format, iter_rows, normalize
from sftdata.testing.tokenizers import build_tokenizer

FIX = Path(__file__).parents[1] / "fixtures" / "agent_logs"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def chatml():
    return build_tokenizer("chatml")


def _only_row(path):
    [(index, row)] = list(iter_rows(path))
    assert index == 0 and isinstance(row, dict)
    return row


def test_swe_agent_traj(chatml):
    row = _only_row(FIX / "swe_agent" / "demo__calc-1" / "demo__calc-1.traj")
    assert detect_format(row) == "swe_agent"
    conv = normalize(row)
    roles = [m.role for m in conv.messages]
    assert roles == ["system", "user", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    demo = conv.messages[1]
    assert demo.train is False  # a demonstration is context, never trained
    first = conv.messages[3]
    assert first.reasoning == "The bug is probably an off-by-one in add."  # from thinking_blocks
    assert first.tool_calls[0].name == "bash" and first.tool_calls[0].arguments == {"command": "grep -n 'def add' src/calc.py"}
    assert conv.messages[4].tool_call_id == "call_a1"
    assert conv.messages[2].content.startswith("<uploaded_files>")  # text parts joined, cache_control ignored
    (ex,) = prepare([row], chatml)
    trained = chatml.decode([i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
    assert "The fix is in place; submitting." in trained and "demonstration" not in trained


def test_cli_reads_a_traj_file(tmp_path):
    """Regression: ``sftdata prepare x.traj`` failed with "unsupported file type .traj" because
    the CLI's source resolver kept its own suffix list; it now uses the readers' list."""
    from sftdata.formats.hub import resolve_source

    traj = FIX / "swe_agent" / "demo__calc-1" / "demo__calc-1.traj"
    assert resolve_source(str(traj)) == str(traj)
    assert cli_main(["prepare", str(traj), "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["rows_out"] == 1


def test_swe_agent_errors():
    row = _only_row(FIX / "swe_agent" / "demo__calc-1" / "demo__calc-1.traj")
    row["history"][4]["tool_call_ids"] = ["call_a1", "call_zz"]
    with pytest.raises(RowError) as ei:
        normalize(row)
    assert ei.value.reason is Reason.BAD_TOOL_CALL and ei.value.field == "history[4].tool_call_ids"
    row["history"][4]["tool_call_ids"] = ["call_a1"]
    row["history"][5]["role"] = "assitant"
    with pytest.raises(RowError) as ei:
        normalize(row)
    assert ei.value.reason is Reason.UNKNOWN_ROLE and ei.value.field == "history[5].role"


def test_swe_agent_directory_reads_only_traj_files(chatml, tmp_path):
    """A SWE-agent output dir holds .traj files next to preds.json and logs: only the .traj are traces."""
    ds = prepare(FIX / "swe_agent", chatml, tmp_path / "out")
    s = ds.sftdata_stats
    assert (s["rows_in"], s["rows_out"], s["rows_rejected"]) == (1, 1, 0)


def test_mini_swe_agent_trajectory_and_message_array(chatml):
    row = _only_row(FIX / "mini_swe_agent.traj.json")
    assert detect_format(row) == "mini_swe_agent"
    conv = normalize(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]  # exit dropped
    # a bare array of messages is ONE conversation, not one row per message
    row = _only_row(FIX / "mini_swe_agent_messages.json")
    assert list(row) == ["messages"] and len(row["messages"]) == 6
    conv = normalize(row)
    assert conv.messages[2].content.startswith("THOUGHT: use pwd.")
    ds = prepare(FIX / "mini_swe_agent_messages.json", chatml)
    assert ds.sftdata_stats["rows_in"] == 1 and ds.sftdata_stats["rows_out"] == 1


def test_mini_swe_agent_exit_in_the_middle_is_rejected():
    row = _only_row(FIX / "mini_swe_agent.traj.json")
    row["messages"].insert(2, {"role": "exit", "content": "", "extra": {}})
    with pytest.raises(RowError) as ei:
        normalize(row)
    assert ei.value.reason is Reason.UNKNOWN_ROLE and ei.value.field == "messages[2].role"


def test_toolbench_answer(chatml):
    row = _only_row(FIX / "toolbench_answer.json")  # one object with a single list key: still one row
    assert detect_format(row) == "toolbench"
    conv = normalize(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert conv.messages[3].name == "forecast_for_weatherbox"
    assert [t["function"]["name"] for t in conv.tools] == ["forecast_for_weatherbox", "Finish"]
    assert conv.messages[4].tool_calls[0].arguments["final_answer"] == "Sunny, 21 C in Lyon tomorrow."
    row["answer_generation"]["valid_data"] = False
    with pytest.raises(RowError) as ei:
        normalize(row)
    assert ei.value.reason is Reason.INVALID_TRACE and ei.value.field == "answer_generation.valid_data"
    ds = prepare(FIX / "toolbench_answer.json", chatml)
    assert ds.sftdata_stats["rows_out"] == 1


def test_directory_of_conversation_files(chatml, tmp_path):
    rows = list(iter_rows(FIX / "conversations"))
    assert [r["id"] for _, r in rows] == ["a", "c1", "c2", "b"]  # sorted by relative path: a.json, c.jsonl, more/b.json
    assert [i for i, _ in rows] == [0, 1, 2, 3]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no input files"):
        list(iter_rows(tmp_path / "empty"))


def test_tools_file_by_key_and_list(chatml, tmp_path):
    ds = prepare(FIX / "conversations", chatml, tools_file=FIX / "tools_by_env.json", tools_key="env", turn_policy="all")
    assert ds.sftdata_stats["rows_out"] == 4
    text = chatml.decode(ds[3]["input_ids"])  # row b, env weather
    assert "rain_chance" in text and '"stock"' not in text
    assert '"stock"' in chatml.decode(ds[0]["input_ids"])
    # a mapping needs --tools-key; a list must not get one
    with pytest.raises(ConfigError, match="--tools-key"):
        prepare(FIX / "conversations", chatml, tools_file=FIX / "tools_by_env.json")
    tools_list = tmp_path / "tools.json"
    tools_list.write_text(json.dumps(json.loads((FIX / "tools_by_env.json").read_text())["shop"]))
    with pytest.raises(ConfigError, match="nothing to choose"):
        prepare(FIX / "conversations", chatml, tools_file=tools_list, tools_key="env")
    # a row whose key has no entry, and a row with tools of its own, are rejected (not guessed)
    src = tmp_path / "rows.jsonl"
    src.write_text(
        json.dumps({"env": "bank", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n"
        + json.dumps({"env": "shop", "tools": [{"name": "own"}], "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n"
    )
    ds = prepare(src, chatml, tmp_path / "o", tools_file=FIX / "tools_by_env.json", tools_key="env")
    assert ds.sftdata_stats["rejected_by_reason"] == {"bad_tools": 2}
    bad = tmp_path / "bad_tools.json"
    bad.write_text('[{"description": "no name"}]')
    with pytest.raises(ConfigError, match="bad_tools.json"):
        prepare(src, chatml, tools_file=bad)


def test_cli_tools_file_on_shared_tau_bench(tmp_path):
    traj = SHARED / "tau-bench" / "gpt-4o-airline.json"
    tools = SHARED / "tau-bench" / "airline_tools.DERIVED.json"
    if not traj.exists() or not tools.exists():
        pytest.skip("../shared/data/tau-bench is absent")
    rows = json.loads(traj.read_text())[:5]
    src = tmp_path / "tau.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "out"
    assert cli_main(["prepare", str(src), "-o", str(out), "--messages-field", "traj", "--tools-file", str(tools), "--no-progress"]) == 0
    attached = [{"messages": r["traj"], "tools": json.loads(tools.read_text())} for r in rows]
    expected = prepare(attached)
    import datasets

    got = datasets.load_from_disk(str(out))
    assert got["input_ids"] == expected["input_ids"] and got["labels"] == expected["labels"]
    from sftdata.masking.tokenizer import load_tokenizer

    assert "# Tools" in load_tokenizer(None).decode(got[0]["input_ids"])  # the embedded template's tools section
