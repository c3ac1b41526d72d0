#!/usr/bin/env python
"""``sftdata prepare`` per real chat template on real agent traces: rows, reasons, token ratio, speed.

For every template vendored in ``sftdata/testing/templates/real`` (with its offline test
tokenizer: the template's control tokens on a small shared BPE, so token counts are not the
real model's) and for each dataset of ``../shared/data`` that has tool calls or reasoning
(tau-bench airline with its tool schemas; LLaMA-Factory's ``reason_tool_use`` with parallel
calls and reasoning), one ``sftdata.prepare`` run with the default options (policy ``exact``,
tree layout), single process. Printed per run:

* rows in / out / rejected, and the rejections by reason;
* ``written/1r``: tokens written / tokens of one rendering per conversation (the cost of exact
  masks with prefix trees; 1.000 = no turn rewritten), and the same for the linear layout
  (``linear/1r``: what one example per rewritten turn would write);
* turns trained in place / branched, and how ``G_k`` was read (prompt mismatch, history
  rewritten, stop token from the next message, no stop token);
* ``tok/s``: tokens written per second of the prepare call (CPU time of this process).

Usage::

    python bench/templates.py                 # every template, both datasets
    python bench/templates.py --only gpt-oss GLM --rows 100

Skips (exit 0) when ``../shared/data`` is absent. No network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def datasets_available(rows: int | None) -> dict[str, tuple[list[dict], dict]]:
    out = {}
    tau = SHARED / "tau-bench" / "gpt-4o-airline.json"
    tools = SHARED / "tau-bench" / "airline_tools.DERIVED.json"
    if tau.is_file() and tools.is_file():
        schemas = json.loads(tools.read_text(encoding="utf-8"))
        trajs = json.loads(tau.read_text(encoding="utf-8"))[:rows]
        out["tau-bench"] = ([{"messages": t["traj"], "tools": schemas} for t in trajs], {})
    rtu = SHARED / "llamafactory" / "reason_tool_use_demo_50.jsonl"
    if rtu.is_file():
        lines = [json.loads(x) for x in rtu.read_text(encoding="utf-8").splitlines() if x.strip()][:rows]
        out["reason_tool_use"] = (lines, {"special_tokens_in_content": "text"})
    return out


def flat_tools(rows: list[dict]) -> list[dict]:
    """Tool schemas as ``{"name", "description", "parameters"}`` (templates that take them flat)."""
    out = []
    for r in rows:
        if isinstance(r.get("tools"), list):
            r = {**r, "tools": [t.get("function", t) if isinstance(t, dict) else t for t in r["tools"]]}
        out.append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="substrings of template names to run")
    ap.add_argument("--rows", type=int, default=None, help="first N rows of each dataset")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"bench/templates.py: skipped: {SHARED} not found")
        return 0
    warnings.filterwarnings("ignore")
    import datasets

    datasets.disable_progress_bars()
    import sftdata
    from sftdata.testing.real_templates import REAL_TEMPLATES, real_template_tokenizer

    data = datasets_available(args.rows)
    names = sorted(n for n in REAL_TEMPLATES if not args.only or any(o.lower() in n.lower() for o in args.only))
    hdr = (f"{'template':<44} {'data':<15} {'in':>4} {'out':>4} {'rej':>4} {'written/1r':>10} {'linear/1r':>9} "
           f"{'in place':>8} {'branch':>6} {'mism':>5} {'rewr':>5} {'stop+':>5} {'nostop':>6} {'tok/s':>8}  rejected by reason")
    print(hdr)
    print("-" * len(hdr))
    tmp = tempfile.TemporaryDirectory(prefix="sftdata-templates-")
    for name in names:
        rt = REAL_TEMPLATES[name]
        tok = real_template_tokenizer(name)
        for dname, (rows, extra) in data.items():
            src = Path(tmp.name) / f"{dname}.jsonl"
            with src.open("w", encoding="utf-8") as f:
                for r in flat_tools(rows) if rt.caps.flat_tool_schemas else rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            c0 = time.process_time()
            try:
                ds = sftdata.prepare(str(src), tok, stop_tokens=rt.stop_tokens, template_kwargs=dict(rt.template_kwargs), **extra)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"{name:<44} {dname:<15} error: {type(e).__name__}: {str(e)[:80]}")
                continue
            cpu = time.process_time() - c0
            s = ds.sftdata_stats
            r = s["render"]
            ratio = s.get("written_per_rendering") or 0.0
            lin = s["tokens_linear_layout"] / s["tokens_one_rendering"] if s.get("tokens_one_rendering") else 0.0
            reasons = ", ".join(f"{k} {v}" for k, v in s["rejected_by_reason"].items()) or "-"
            print(
                f"{name:<44} {dname:<15} {s['rows_in']:>4} {s['rows_out']:>4} {s['rows_rejected']:>4} {ratio:>10.3f} {lin:>9.3f} "
                f"{s['turns_trained_in_place']:>8} {s['turns_branched']:>6} {r.get('prompt_mismatch', 0):>5} "
                f"{r.get('history_rewritten', 0):>5} {r.get('stop_token_from_next_message', 0):>5} {r.get('no_stop_token', 0):>6} "
                f"{s['tokens_total'] / cpu if cpu else 0:>8,.0f}  {reasons}"
            )
    tmp.cleanup()
    print("\nwritten/1r: tokens written (tree layout) / tokens of one rendering of each conversation; linear/1r: the same for the")
    print("linear layout. mism/rewr: turns read off a mismatched generation prompt / a rewritten history; stop+: stop token taken")
    print("from the next message; nostop: turns without a stop token. Test tokenizers: small BPE + the template's control tokens.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
