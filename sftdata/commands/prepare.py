"""``sftdata prepare INPUT... --output DIR``: traces → masked token rows on disk."""

from __future__ import annotations

import argparse
import re
import sys

from ..errors import ConfigError, SftDataError
from .run import add_config_arguments, reject_flags, run_config


def _kv(items: list[str]) -> dict:
    """``k=v`` pairs; values parsed as JSON when possible (``enable_thinking=false`` → False).

    Raises:
        ConfigError: an item without ``=``.
    """
    import json

    out = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ConfigError(f"--template-kwargs expects KEY=VALUE items (e.g. enable_thinking=false), got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def parse_size(text: str) -> int:
    """``"256MB"``, ``"1g"``, ``"4096"`` → bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 256MB or 1GB, got {text!r}")
    return max(1, int(float(m.group(1)) * _UNITS[m.group(2).lower()]))


def add_parser(sub) -> None:
    """Add ``sftdata prepare`` to the subcommand parsers ``sub``."""
    from ..formats import FORMATS
    from ..options import LAYOUTS, SPECIAL_TOKEN_MODES, TOOL_ARGUMENTS, TRUNCATIONS, TURN_POLICIES
    from ..prepare_config import ON_ERROR

    p = sub.add_parser(
        "prepare",
        help="turn agent traces into masked token rows (Arrow on disk)",
        description="Render traces with the tokenizer's chat template, mask everything but the generated "
        "assistant tokens (exactly as the model generates them: prefix-tree rows when the template rewrites history), "
        "and save input_ids/labels/parent/position_ids/length/linear_length/source_index with stats.json and rejects.jsonl. "
        "Rows are streamed (memory does not grow with the input); the output appears atomically when complete; "
        "a killed run continues with --resume.",
        epilog="examples: sftdata prepare traces.jsonl --output out/data --tokenizer Qwen/Qwen3-0.6B "
        "--template-kwargs enable_thinking=false --max-length 8192 --truncation turns\n"
        "  job array: sftdata prepare big.jsonl -o out/shard-$I --num-shards 64 --shard-index $I; "
        "then sftdata merge out/shard-* -o out/data",
    )
    p.add_argument("inputs", nargs="*", help=".jsonl/.json/.traj/.parquet files, globs, directories of them, save_to_disk dirs, "
                   "or anything datasets.load_dataset reads (a Hub id, a dir of data files, .csv)")
    p.add_argument("--output", "-o", default=None, help="output directory (required without --config)")
    p.add_argument("--split", default=None, help="split of load_dataset inputs (required when there are several)")
    p.add_argument("--dataset-config", default=None, metavar="NAME", help="config name of load_dataset inputs")
    p.add_argument("--revision", default=None, help="Hub revision (commit, tag, branch) of load_dataset inputs")
    p.add_argument("--overwrite", action="store_true", help="replace the output directory if it exists")
    p.add_argument("--resume", action="store_true", help="continue a killed run into the same output from its last committed file")
    p.add_argument("--tokenizer", default=None, help="path or Hub id (default: the embedded tokenizer)")
    p.add_argument("--format", default=None, choices=FORMATS, help="input format (default: auto-detect per row)")
    p.add_argument("--messages-field", default=None, help="key holding the conversation (e.g. traj)")
    p.add_argument("--tools-field", default=None, help="key holding the tool schemas")
    p.add_argument("--tools-file", default=None, metavar="FILE", help="tool schemas stored apart: a JSON list attached to every row, or a JSON object of lists chosen by --tools-key")
    p.add_argument("--tools-key", default=None, metavar="FIELD", help="row field whose value selects the list in --tools-file")
    p.add_argument("--chat-template", default=None, help="jinja file replacing the tokenizer's template")
    p.add_argument("--template-kwargs", nargs="*", default=[], metavar="K=V", help="extra template variables")
    p.add_argument("--turn-policy", choices=TURN_POLICIES, default="exact",
                   help="exact: every trained token as the model generates it (default); all: one rendering, "
                   "rows with a rewritten turn rejected; last: only the final turn (docs/masking.md)")
    p.add_argument("--layout", choices=LAYOUTS, default="tree",
                   help="tree: one prefix-tree row per conversation (default, docs/trees.md); linear: one row per "
                   "root-to-leaf path, for trainers without a tree mask")
    p.add_argument("--train-roles", default="assistant", help="comma-separated roles trained by default")
    p.add_argument("--no-train-reasoning", action="store_true", help="mask reasoning tokens")
    p.add_argument("--keep-trailing", action="store_true", help="keep untrained messages after the last trained turn")
    p.add_argument("--max-length", type=int, default=None, help="maximum tokens per example")
    p.add_argument("--truncation", choices=TRUNCATIONS, default="drop")
    p.add_argument("--special-tokens-in-content", choices=SPECIAL_TOKEN_MODES, default="reject", help="text spelling a control token: reject the row, encode it as plain text, or allow it to become control ids")
    p.add_argument("--stop-tokens", default=None, metavar="TOK[,TOK]", help="comma-separated tokens added to the model's stop "
                   "set (default: EOS + generation_config.json beside the tokenizer; see docs/masking.md)")
    p.add_argument("--end-of-turn", default=None, help=argparse.SUPPRESS)  # old name of --stop-tokens
    p.add_argument("--tool-arguments", choices=TOOL_ARGUMENTS, default="auto",
                   help="tool-call arguments: as the data gives them (auto, default), always objects, or always JSON text")
    p.add_argument("--render-timeout", type=float, default=10.0, metavar="SECONDS", help="wall-time limit of one template render; the row is rejected render_limit beyond it (default 10)")
    p.add_argument("--max-messages", type=_optional_positive(int), default=100_000, metavar="N", help="per-row budget: messages of one row; a longer row is rejected render_limit (default 100,000; 'none' turns it off)")
    p.add_argument("--row-render-max-chars", type=_optional_positive(int), default=None, metavar="N", help="per-row budget: characters all renders of one row may produce (default: no limit)")
    p.add_argument("--row-timeout", type=_optional_positive(float), default=1800.0, metavar="SECONDS", help="per-row budget: wall seconds to render one row (default 1800)")
    p.add_argument("--row-max-memory-mb", type=_optional_positive(float), default=16_384, metavar="MIB", help="per-row budget: growth of the process's resident memory while one row renders (default 16384)")
    p.add_argument("--clock", default=None, metavar="ISO8601", help="the time a template's strftime_now reads, e.g. 2026-01-31T09:00:00 (default: the clock is read once when the run starts and recorded in stats.json)")
    p.add_argument("--render-max-chars", type=int, default=16_000_000, metavar="N", help="output-size limit of one template render, characters (default 16,000,000)")
    p.add_argument("--num-proc", type=int, default=1)
    p.add_argument("--num-shards", type=int, default=1, help="split the input into N disjoint parts (by row index) for a job array")
    p.add_argument("--shard-index", type=int, default=0, help="which part this job prepares (0..N-1)")
    p.add_argument("--shard-block", type=int, default=None, help="rows per sharding block (default 1024; the same in every job)")
    p.add_argument("--shard-size", type=parse_size, default=None, metavar="SIZE", help="size of one output file, the unit of --resume (default 256MB)")
    p.add_argument("--on-error", choices=ON_ERROR, default="skip")
    p.add_argument("--allow-empty", action="store_true", help="accept an input without rows or without any example (exit 0)")
    p.add_argument("--pack", type=int, default=None, metavar="L", help="also pack the rows into sequences of L tokens")
    p.add_argument("--no-progress", action="store_true")
    add_config_arguments(p)
    p.set_defaults(func=run, command_parser=p)


#: ``sftdata prepare`` flags whose value is not the keyword's as given: flag dest → (keyword, conversion).
#: Every other keyword of ``prepare`` (:data:`sftdata.prepare_config.PREPARE_KEYWORDS`) is the flag of
#: the same dest; ``tests/prepare/test_prepare_config.py`` checks that each has one and that the defaults agree.
CONVERTED = {
    "train_roles": ("train_roles", lambda v: tuple(r.strip() for r in v.split(",") if r.strip())),
    "no_train_reasoning": ("train_reasoning", lambda v: not v),
    "keep_trailing": ("trim_trailing", lambda v: not v),
    "template_kwargs": ("template_kwargs", lambda v: _kv(v)),
    "no_progress": ("progress", lambda v: not v),
}
#: Keywords without a flag of their own: ``end_of_turn`` is read by ``--end-of-turn`` into ``stop_tokens``;
#: ``verbose`` (the CLI always prints the summary).
NO_FLAG = ("end_of_turn", "verbose")


def prepare_keywords(args: argparse.Namespace) -> dict:
    """The keywords of :func:`sftdata.prepare.run_prepare` that the flags in ``args`` give.

    Raises:
        ConfigError: a ``--template-kwargs`` item without ``=``.
    """
    from ..prepare_config import DEFAULT_SHARD_BLOCK, DEFAULT_SHARD_BYTES, PREPARE_KEYWORDS

    out = {}
    for dest, (keyword, convert) in CONVERTED.items():
        out[keyword] = convert(getattr(args, dest))
    for keyword in PREPARE_KEYWORDS:
        if keyword not in out and keyword not in NO_FLAG:
            out[keyword] = getattr(args, keyword)
    # --stop-tokens, else its old name --end-of-turn (one of them, as before)
    out["stop_tokens"] = tuple(t for t in (args.stop_tokens or args.end_of_turn or "").split(",") if t) or None
    out["shard_block"] = args.shard_block or DEFAULT_SHARD_BLOCK
    out["shard_size"] = args.shard_size or DEFAULT_SHARD_BYTES
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``sftdata prepare`` (exit status: 0 written, 2 an error, 130 interrupted)."""
    from ..formats.hub import resolve_source
    from ..prepare import run_prepare
    from ..output.stats import summary

    if args.config:
        if reject_flags(args, args.command_parser, {"no_progress"}, "sftdata prepare"):
            return 2
        return run_config(args, until="prepare", prog="sftdata prepare")
    if not args.inputs or not args.output:
        print("sftdata prepare: error: INPUT... and --output are required (or give --config)", file=sys.stderr)
        return 2
    try:
        inputs = []
        for item in args.inputs:
            source = resolve_source(item, split=args.split, name=args.dataset_config, revision=args.revision)
            inputs.extend(source if isinstance(source, list) else [source])
        result = run_prepare(inputs, args.tokenizer, args.output, **prepare_keywords(args))
        stats = result.stats
        if result.already_complete:
            print(f"{args.output} is already complete (same job): nothing to resume")
            return 0
        print(summary(stats))
        if stats["examples_out"] == 0 and not args.allow_empty:
            reasons = ", ".join(f"{k}: {v}" for k, v in stats["rejected_by_reason"].items())
            hint = ""
            if stats.get("too_long_min_length") is not None:
                hint = f"; the shortest example of a row rejected too_long has {stats['too_long_min_length']:,} tokens (--max-length {args.max_length})"
            print(
                f"sftdata prepare: error: no row produced a training example ({stats['rows_rejected']} rows rejected: {reasons}){hint}; "
                f"see {args.output}/rejects.jsonl (--allow-empty accepts an empty output)",
                file=sys.stderr,
            )
            return 2
        if args.pack:
            _pack_in_place(args)
    except SftDataError as e:
        print(f"sftdata prepare: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from pathlib import Path

        from ..output.store import partial_dir

        print(f"sftdata prepare: interrupted; continue with the same command plus --resume "
              f"(committed files in {partial_dir(Path(args.output))} are kept)", file=sys.stderr)
        return 130
    print(f"wrote {args.output}")
    return 0


def _pack_in_place(args: argparse.Namespace) -> None:
    """``--pack L``: replace the output rows by packed rows (``stats.json`` and
    ``rejects.jsonl`` kept, ``pack_stats.json`` added), swapping directories by rename."""
    import shutil
    from pathlib import Path

    from ..output.load import STATS_FILE, load_output
    from ..packing import pack_dataset, save_packed
    from ..output.store import publish

    out = Path(args.output)
    ds = load_output(out)
    packed, report = pack_dataset(ds, args.pack, truncation="turns" if args.truncation == "turns" else "drop")
    tmp = out.parent / f".{out.name}.packing"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_packed(packed, report, tmp)
    for name in (STATS_FILE, "rejects.jsonl"):
        if (out / name).exists():
            shutil.copyfile(out / name, tmp / name)
    del ds, packed
    publish(tmp, out)
    print(report.summary())


def _optional_positive(kind):
    """argparse type: a positive ``kind`` number, or ``none`` for no limit."""

    def parse(text: str):
        if text.strip().lower() in ("none", "null", "off"):
            return None
        value = kind(text)
        if not value > 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse
