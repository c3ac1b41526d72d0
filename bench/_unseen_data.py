"""The conversations ``bench/unseen_templates.py`` runs: drawn per template (``gen``) and the real
traces of ../shared/data (``tau``, ``rtu``), served the way the test suite serves them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def served(conv, caps):
    """``conv`` as the test suite serves it to a template with ``caps`` (JSON-text arguments, flat schemas)."""
    from sftdata.schema import Conversation

    if caps.string_arguments and conv.has_tool_calls:
        msgs = tuple(replace(m, tool_calls=tuple(replace(c, arguments_text=json.dumps(dict(c.arguments), ensure_ascii=False))
                                                 for c in m.tool_calls)) for m in conv.messages)
        conv = Conversation(msgs, conv.tools)
    if caps.flat_tool_schemas and conv.tools:
        conv = Conversation(conv.messages, tuple(t["function"] if isinstance(t.get("function"), dict) else t for t in conv.tools))
    return conv


def generated(caps, n: int, seed: int, **draw) -> list:
    """``n`` conversations drawn (seeded) from ``conversations_for(caps, ends_with="assistant", **draw)``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from sftdata.testing.strategies import conversations_for

    out: list = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(conversations_for(caps, **{"ends_with": "assistant", "max_turns": 3, **draw}))
    def collect(conv):
        out.append(conv)

    collect()
    return out


def real_traces(rows: int | None) -> dict[str, list]:
    """Conversations of the real traces (normalised by sftdata; rows it cannot normalise are skipped and counted)."""
    from sftdata.errors import RowError
    from sftdata.formats.normalize import normalize

    out: dict[str, list] = {}
    tau, tools = SHARED / "tau-bench" / "gpt-4o-airline.json", SHARED / "tau-bench" / "airline_tools.DERIVED.json"
    raw: dict[str, list] = {}
    if tau.is_file() and tools.is_file():
        schemas = json.loads(tools.read_text(encoding="utf-8"))
        raw["tau"] = [{"messages": t["traj"], "tools": schemas} for t in json.loads(tau.read_text(encoding="utf-8"))][:rows]
    rtu = SHARED / "llamafactory" / "reason_tool_use_demo_50.jsonl"
    if rtu.is_file():
        raw["rtu"] = [json.loads(x) for x in rtu.read_text(encoding="utf-8").splitlines() if x.strip()][:rows]
    for k, rs in raw.items():
        convs = []
        for r in rs:
            try:
                convs.append(normalize(r, None))
            except RowError as e:  # not a template matter: reported once
                convs.append(e)
        out[k] = convs
    return out
