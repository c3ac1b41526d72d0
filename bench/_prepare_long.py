"""``bench/prepare.py --long N [N ...]``: the cost of one long conversation (issue 16).

For every size ``N`` and every variant, two cases, each in its own subprocess:

* ``render+encode``: ``ChatTemplate.render`` of the whole conversation once + the Rust
  backend's ``encode_batch`` (the bound ``a2`` of ``bench/prepare.py``);
* ``prepare``: ``sftdata.prepare([row], tokenizer, turn_policy=...)`` on that one row.

Variants (``--long-variants``):

* ``chat``: N alternating user/assistant messages (short, distinct texts);
* ``tools``: a user message, then assistant tool calls and tool results alternating, a final
  assistant answer (N messages), one tool schema;
* ``tau``: real text: the longest tau-bench airline trajectories, longest first, joined into
  one trace (the first one's system prompt, the others without theirs) and cut to N messages
  ending on an assistant message, the 14 airline tool schemas attached. (The longest single
  real trajectory in ``../shared/data`` has 62 messages.)

Printed per case: wall and CPU seconds of the measured call (inside the subprocess, after
imports and tokenizer loading; CPU counts all its threads), and the subprocess's peak RSS
(``ru_maxrss`` from ``os.wait4``: the whole process, imports and tokenizer included). A case
that runs past ``--max-seconds`` (the subprocess's wall time) is killed and reported as
"timed out at X s"; one whose resident size passes ``--max-rss-mb`` as "stopped at X MB";
the larger sizes of that variant and case are then skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TAU_DIR = REPO.parent / "shared" / "data" / "tau-bench"
TRAJ_FILE = TAU_DIR / "gpt-4o-airline.json"
TOOLS_FILE = TAU_DIR / "airline_tools.DERIVED.json"

VARIANTS = ("chat", "tools", "tau")
CASES = ("render+encode", "prepare")

LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a record by its id.",
        "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
    },
}


def count(text: str) -> int:
    """``1000``, ``1k``, ``16k`` -> an int (argparse type of ``--long``)."""
    t = text.strip().lower()
    return int(float(t[:-1]) * 1000) if t.endswith("k") else int(t)


# ----------------------------------------------------------------------------------
# the conversations
# ----------------------------------------------------------------------------------


def build_row(variant: str, n: int) -> dict:
    """One row of ``n`` messages (``tau``: at most ``n``, ending on an assistant message)."""
    if variant == "chat":
        msgs = []
        for i in range(n):
            if i % 2 == 0:
                msgs.append({"role": "user", "content": f"Question {i // 2}: what is {i} times {i + 7}?"})
            else:
                msgs.append({"role": "assistant", "content": f"{i - 1} times {i + 6} is {(i - 1) * (i + 6)}."})
        return {"messages": msgs}
    if variant == "tools":
        msgs = [{"role": "user", "content": "Find the records and sum their values."}]
        k = 0
        while len(msgs) < n - 1:
            if msgs[-1]["role"] != "assistant":
                msgs.append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{k}", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"id": k})}}]})
            else:
                msgs.append({"role": "tool", "tool_call_id": f"call_{k}", "name": "lookup",
                             "content": json.dumps({"id": k, "value": k * 37 % 101})})
                k += 1
        msgs.append({"role": "assistant", "content": f"The {k} values sum to {sum(i * 37 % 101 for i in range(k))}."})
        return {"messages": msgs[:n], "tools": [LOOKUP_TOOL]}
    if variant == "tau":
        trajs = sorted(json.loads(TRAJ_FILE.read_text(encoding="utf-8")), key=lambda t: -len(t["traj"]))
        msgs: list[dict] = []
        for t in trajs * (n // 1000 + 1):  # reuse them when N is larger than all of them together
            msgs += [m for m in t["traj"] if not msgs or m["role"] != "system"]
            if len(msgs) >= n:
                break
        msgs = msgs[:n]
        while msgs and msgs[-1]["role"] != "assistant":
            msgs.pop()
        return {"messages": msgs, "tools": json.loads(TOOLS_FILE.read_text(encoding="utf-8"))}
    raise ValueError(f"unknown variant {variant!r}")


# ----------------------------------------------------------------------------------
# one case, in a subprocess
# ----------------------------------------------------------------------------------


def child(spec: dict) -> int:
    """Runs in the subprocess: one case; prints ``RESULT {json}``."""
    import prepare as bench  # bench/prepare.py (sys.path[0] is bench/)
    from _prepare_bounds import bound_sftdata
    from _prepare_stages import cpu, perf

    bench.quiet()
    tok, label, _ = bench.load_tokenizer(Namespace(**spec["tokenizer"]))
    row = build_row(spec["variant"], spec["n"])
    out: dict = {"messages": len(row["messages"]), "label": label}
    if spec["case"] == "render+encode":
        from sftdata.formats import normalize

        r = bound_sftdata(tok, [normalize(row)])
        out.update(seconds=r["seconds"], cpu=r["cpu"], tokens=r["tokens"], error=r["error"])
    else:
        import sftdata

        policy, _, layout = spec["policy"].partition("/")
        c0, t0 = cpu(), perf()
        ds = sftdata.prepare([row], tok, turn_policy=policy, layout=layout or "tree")
        out.update(seconds=perf() - t0, cpu=cpu() - c0)
        s = ds.sftdata_stats
        out.update(tokens=s.get("tokens_one_rendering"), written=s.get("tokens_total"), examples=s.get("examples_out"),
                   rejected=s.get("rejected_by_reason") or None)
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def run_case(spec: dict, max_seconds: float, max_rss_mb: float | None) -> dict:
    """Run one case in a subprocess under the caps; ``{"status": "ok"|..., "peak_mb", ...}``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, str(HERE / "_prepare_long.py"), "--child", json.dumps(spec)],
                             stdout=out, stderr=err, cwd=REPO, text=True)
        t0 = time.perf_counter()
        status = None
        while True:
            pid, wstatus, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - t0
            if elapsed > max_seconds:
                status = f"timed out at {max_seconds:g} s"
            elif max_rss_mb is not None and _rss_mb(p.pid) > max_rss_mb:
                status = f"stopped at {_rss_mb(p.pid):,.0f} MB after {elapsed:.0f} s (--max-rss-mb)"
            if status:
                p.kill()
                pid, wstatus, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(wstatus)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("RESULT ")]
        result = {"peak_mb": ru.ru_maxrss / 1024, "process_wall": wall, "process_cpu": ru.ru_utime + ru.ru_stime}
        if status:
            result["status"] = status
        elif p.returncode != 0 or not lines:
            tail = err.read().strip().splitlines()
            result["status"] = f"failed (exit {p.returncode}): {tail[-1][:120] if tail else ''}"
        else:
            result.update(json.loads(lines[-1][len("RESULT "):]), status="ok")
        return result


# ----------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main_long(args: Namespace) -> int:
    """The ``--long`` benchmark (called by ``bench/prepare.py``)."""
    variants = [v.strip() for v in args.long_variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"bench/prepare.py --long: unknown variant(s) {', '.join(bad)} (choose from {', '.join(VARIANTS)})", file=sys.stderr)
        return 2
    notes = []
    if "tau" in variants and not (TRAJ_FILE.is_file() and TOOLS_FILE.is_file()):
        variants.remove("tau")
        notes.append(f"variant tau skipped: tau-bench data not found under {TAU_DIR}")
    tokenizer = {"tokenizer": args.tokenizer, "family": args.family, "qwen3_real": args.qwen3_real}
    policy = args.policy or "exact"
    cap = f"--max-seconds {args.max_seconds:g}" + (f", --max-rss-mb {args.max_rss_mb:,.0f}" if args.max_rss_mb else "")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"sftdata long-conversation benchmark (bench/prepare.py --long): one conversation per case, each case in its own "
          f"subprocess; prepare turn_policy={policy}; caps per case: {cap}")
    print(f"machine: {os.cpu_count()} cpus" + (f", load average {load:.1f} at the start" if load is not None else ""))
    label_printed = False
    hdr = (f"{'variant':<7} {'N':>7} {'messages':>8} {'tokens':>9}  {'case':<14} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>11} "
           f"{'cpu / r+e':>9}  status")
    for variant in variants:
        stopped: dict[str, str] = {}
        for n in args.long:
            base_cpu = None
            for case in CASES:
                if case in stopped:
                    r = {"status": f"skipped ({stopped[case]})"}
                else:
                    r = run_case({"variant": variant, "n": n, "case": case, "policy": policy, "tokenizer": tokenizer},
                                 args.max_seconds, args.max_rss_mb)
                    if r["status"] != "ok":
                        stopped[case] = f"N={n:,} {r['status'].split(' (')[0]}"
                if not label_printed and r.get("label"):
                    print(f"tokenizer: {r['label']}")
                    print()
                    print(hdr)
                    print("-" * len(hdr))
                    label_printed = True
                if case == "render+encode" and r.get("cpu") is not None:
                    base_cpu = r["cpu"]
                ratio = r["cpu"] / base_cpu if case == "prepare" and base_cpu and r.get("cpu") is not None else None
                status = r["status"]
                if status == "ok" and r.get("rejected"):
                    status = f"row rejected: {r['rejected']}"
                elif status == "ok" and case == "prepare":
                    status = f"ok ({r.get('examples')} examples, {r.get('written') or 0:,} tokens written)"
                if not label_printed:
                    print(hdr)
                    print("-" * len(hdr))
                    label_printed = True
                peak = r.get("peak_mb")
                print(f"{variant:<7} {n:>7,} {_fmt(r.get('messages'), ','):>8} {_fmt(r.get('tokens'), ','):>9}  {case:<14} "
                      f"{_fmt(r.get('seconds'), '.2f'):>8} {_fmt(r.get('cpu'), '.2f'):>8} {_fmt(peak, ',.0f'):>11} "
                      f"{(_fmt(ratio, '.1f') + 'x') if ratio is not None else '':>9}  {status}", flush=True)
    print()
    print("wall s / cpu s: the measured call inside its subprocess (after imports and loading the tokenizer); cpu s counts all")
    print("threads. peak RSS: the whole subprocess (ru_maxrss; imports and tokenizer included). cpu / r+e: prepare's CPU time")
    print("over render + encode of one rendering of the same conversation (ChatTemplate.render + encode_batch).")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child(json.loads(sys.argv[2])))
    print("run bench/prepare.py --long N [N ...] (this file is its --long part)", file=sys.stderr)
    sys.exit(2)
