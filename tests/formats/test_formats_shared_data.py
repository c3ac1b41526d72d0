"""Tests of the readers on the real data sets in ../shared/data (skipped where absent)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from sftdata.errors import RowError
from sftdata.formats import iter_rows, normalize


REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


# ---------------------------------------------------------------------------- real data


def _data_files() -> list[Path]:
    if not SHARED.is_dir():
        return []
    files = sorted(p for p in SHARED.rglob("*") if p.suffix in (".json", ".jsonl"))
    # dataset_info.json (LLaMA-Factory column mappings) and the DERIVED tool list are not datasets
    return [p for p in files if p.name != "dataset_info.json" and ".DERIVED." not in p.name]


@pytest.mark.shared_data
def test_every_shared_row_normalizes_or_raises_row_error():
    files = _data_files()
    if not files:
        pytest.skip(f"{SHARED} is absent")
    report = {}
    for path in files:
        counts: collections.Counter = collections.Counter()
        n = 0
        for index, item in iter_rows(path):
            assert index == n
            n += 1
            if isinstance(item, RowError):
                counts[f"read:{item.reason.value}"] += 1
                continue
            try:
                normalize(item)
            except RowError as e:
                counts[e.reason.value] += 1
            else:
                counts["ok"] += 1
        report[str(path.relative_to(SHARED))] = dict(counts)
    for name, counts in report.items():
        print(f"{name}: {counts}")
    # every row of these files is valid input
    assert all(set(c) == {"ok"} for c in report.values()), report


def _load(rel: str) -> list[dict]:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return [row for _, row in iter_rows(path)]


@pytest.mark.shared_data
def test_shared_tau_bench_details():
    convs = [normalize(r, messages_field="traj") for r in _load("tau-bench/gpt-4o-airline.json")]
    calls = [c for conv in convs for m in conv.messages for c in m.tool_calls]
    assert len(calls) == 1164 and all(c.id and c.id.startswith("call_") for c in calls)
    none_content = sum(1 for conv in convs for m in conv.messages if m.tool_calls and m.content is None)
    assert none_content == 1074
    # each tool message answers the single call of the assistant message just before it
    pairs = [(conv.messages[i - 1], m) for conv in convs for i, m in enumerate(conv.messages) if m.role == "tool"]
    assert len(pairs) == 1164
    assert all(p.tool_calls[0].id == m.tool_call_id and p.tool_calls[0].name == m.name for p, m in pairs)
    # quirk kept as is: call ids are reused within 49 trajectories (73 repeats), so ids alone do not pair
    dup = [len(ids) - len(set(ids)) for ids in ([c.id for m in conv.messages for c in m.tool_calls] for conv in convs)]
    assert (sum(d > 0 for d in dup), sum(dup)) == (49, 73)


@pytest.mark.shared_data
def test_shared_llamafactory_details():
    parts = [normalize(r) for r in _load("llamafactory/reason_tool_use_demo_50.jsonl")]
    calls = [c for conv in parts for m in conv.messages for c in m.tool_calls]
    assert len(calls) == 68
    assert sum(1 for conv in parts for m in conv.messages if len(m.tool_calls) > 1) == 12
    assert sum(1 for conv in parts if conv.messages[-1].tool_calls) == 11
    # every tool result is linked to a call name; no packed JSON blob survives
    for conv in parts:
        for m in conv.messages:
            if m.role == "tool":
                assert m.name is not None and '"tool_call_id"' not in m.content
    zh = [normalize(r) for r in _load("llamafactory/glaive_toolcall_zh_demo.json")]
    unnamed = [i for i, conv in enumerate(zh) if any(m.role == "tool" and m.name is None for m in conv.messages)]
    assert unnamed == [197, 293]
    en = [normalize(r) for r in _load("llamafactory/glaive_toolcall_en_demo.json")]
    assert sum(len(m.tool_calls) for conv in en for m in conv.messages) == 211
    assert sum(1 for conv in en if conv.tools is None) == 109
