"""Run ``sftdata.prepare`` over every dataset in ``../shared/data`` and print one table.

    python bench/shared_data.py [--family qwen3] [--policy exact] [--max-length N]

Per dataset: rows in / out / rejected (by reason), examples, expanded turns, tokens,
trained-token share and throughput (tokens of output per second of the whole prepare
call, single process). Skips cleanly when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

DATASETS = [
    ("tau-bench/gpt-4o-airline.json", {"messages_field": "traj"}, "tau-bench/airline_tools.DERIVED.json"),
    ("llamafactory/glaive_toolcall_en_demo.json", {}, None),
    ("llamafactory/glaive_toolcall_zh_demo.json", {}, None),
    ("llamafactory/reason_tool_use_demo_50.jsonl", {}, None),
    ("llamafactory/alpaca_en_demo.json", {}, None),
    ("fireact/gpt_format/hotpotqa.jsonl", {}, None),
    ("fireact/gpt_format/hotpotqa_multimethod.jsonl", {}, None),
    ("fireact/gpt_format/multitask.jsonl", {}, None),
    ("fireact/gpt_format/multitask_multimethod.jsonl", {}, None),
    ("fireact/alpaca_format/hotpotqa.json", {}, None),
]


def _with_tools(path: Path, tools_path: Path, field: str) -> list[dict]:
    """tau-bench rows with the derived tool schemas attached (the file has none)."""
    tools = json.loads(tools_path.read_text())
    return [{"messages": r[field], "tools": tools} for r in json.loads(path.read_text())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default=None, help="offline test tokenizer family (default: the embedded tokenizer)")
    ap.add_argument("--policy", default="exact", choices=("exact", "all", "last"))
    ap.add_argument("--max-length", type=int, default=None)
    args = ap.parse_args(argv)
    if not SHARED.exists():
        print(f"{SHARED} is absent: nothing to run")
        return 0
    import sftdata
    from sftdata.masking.tokenizer import load_tokenizer

    if args.family:
        from sftdata.testing.tokenizers import build_tokenizer

        tok, tok_name = build_tokenizer(args.family), f"testing family {args.family}"
    else:
        tok, tok_name = load_tokenizer(None), "embedded default"
    print(f"tokenizer: {tok_name}; turn policy {args.policy}; max_length {args.max_length}; single process")
    head = f"{'dataset':48s} {'in':>6s} {'out':>6s} {'rej':>5s} {'examples':>8s} {'expanded':>8s} {'tokens':>11s} {'trained':>8s} {'tok/s':>9s}  rejected by reason"
    print(head)
    print("-" * len(head))
    for rel, kwargs, tools_rel in DATASETS:
        path = SHARED / rel
        if not path.exists():
            print(f"{rel:48s} absent")
            continue
        name = rel
        source: object = path
        if tools_rel and (SHARED / tools_rel).exists():
            source = _with_tools(path, SHARED / tools_rel, kwargs.pop("messages_field"))
            name += " (+tools)"
        ds = sftdata.prepare(source, tok, turn_policy=args.policy, max_length=args.max_length, truncation="turns", **kwargs)
        s = ds.sftdata_stats
        reasons = ", ".join(f"{k}: {v}" for k, v in s["rejected_by_reason"].items()) or "-"
        print(
            f"{name:48s} {s['rows_in']:6d} {s['rows_out']:6d} {s['rows_rejected']:5d} {s['examples_out']:8d} "
            f"{s['expanded_turns']:8d} {s['tokens_total']:11,d} {100 * s['trained_share']:7.1f}% {s['tokens_per_second'] or 0:9,.0f}  {reasons}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
