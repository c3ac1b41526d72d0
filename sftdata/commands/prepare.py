"""``sftdata prepare INPUT... --output DIR``: traces → masked token rows on disk."""

from __future__ import annotations

import argparse
import sys

from ..errors import SftDataError
from .run import add_config_arguments, reject_flags, run_config


def _kv(items: list[str]) -> dict:
    """``k=v`` pairs; values parsed as JSON when possible (``enable_thinking=false`` → False)."""
    import json

    out = {}
    for item in items:
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--template-kwargs expects k=v, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn agent traces into masked token rows (Arrow on disk)",
        description="Render traces with the tokenizer's chat template, mask everything but the generated "
        "assistant tokens, and save input_ids/labels/length/source_index with stats.json and rejects.jsonl.",
        epilog="example: sftdata prepare examples/traces.jsonl --output out/data "
        "--tokenizer Qwen/Qwen3-0.6B --template-kwargs enable_thinking=false --max-length 8192 --truncation turns",
    )
    p.add_argument("inputs", nargs="*", help=".jsonl/.json/.parquet files, globs, save_to_disk dirs, or anything "
                   "datasets.load_dataset reads (a Hub id, a dir of data files, .csv)")
    p.add_argument("--output", "-o", default=None, help="output directory (required without --config)")
    p.add_argument("--split", default=None, help="split of load_dataset inputs (required when there are several)")
    p.add_argument("--dataset-config", default=None, metavar="NAME", help="config name of load_dataset inputs")
    p.add_argument("--revision", default=None, help="Hub revision (commit, tag, branch) of load_dataset inputs")
    p.add_argument("--tokenizer", default=None, help="path or Hub id (default: the embedded tokenizer)")
    p.add_argument("--format", default=None, help="input format (default: auto-detect per row)")
    p.add_argument("--messages-field", default=None, help="key holding the conversation (e.g. traj)")
    p.add_argument("--tools-field", default=None, help="key holding the tool schemas")
    p.add_argument("--chat-template", default=None, help="jinja file replacing the tokenizer's template")
    p.add_argument("--template-kwargs", nargs="*", default=[], metavar="K=V", help="extra template variables")
    p.add_argument("--turn-policy", choices=("exact", "all", "last"), default="exact")
    p.add_argument("--train-roles", default="assistant", help="comma-separated roles trained by default")
    p.add_argument("--no-train-reasoning", action="store_true", help="mask reasoning tokens")
    p.add_argument("--keep-trailing", action="store_true", help="keep untrained messages after the last trained turn")
    p.add_argument("--max-length", type=int, default=None, help="maximum tokens per example")
    p.add_argument("--truncation", choices=("drop", "turns"), default="drop")
    p.add_argument("--special-tokens-in-content", choices=("reject", "text", "allow"), default="reject", help="text spelling a control token: reject the row, encode it as plain text, or allow it to become control ids")
    p.add_argument("--end-of-turn", default=None, help="comma-separated end-of-turn tokens (default: detected)")
    p.add_argument("--num-proc", type=int, default=1)
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip")
    p.add_argument("--pack", type=int, default=None, metavar="L", help="also pack the rows into sequences of L tokens")
    p.add_argument("--no-progress", action="store_true")
    add_config_arguments(p)
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from ..encoder import EncodeOptions
    from ..formats.hub import resolve_source
    from ..prepare import prepare

    if args.config:
        if reject_flags(args, args._parser, {"no_progress"}, "sftdata prepare"):
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
        options = EncodeOptions(
            turn_policy=args.turn_policy,
            train_roles=tuple(r.strip() for r in args.train_roles.split(",") if r.strip()),
            train_reasoning=not args.no_train_reasoning,
            trim_trailing=not args.keep_trailing,
            max_length=args.max_length,
            truncation=args.truncation,
            template_kwargs=_kv(args.template_kwargs),
            special_tokens_in_content=args.special_tokens_in_content,
            end_of_turn=tuple(args.end_of_turn.split(",")) if args.end_of_turn else None,
            format=args.format,
            messages_field=args.messages_field,
            tools_field=args.tools_field,
        )
        ds = prepare(
            inputs,
            args.tokenizer,
            args.output,
            options=options,
            chat_template=args.chat_template,
            num_proc=args.num_proc,
            on_error=args.on_error,
            progress=not args.no_progress,
            verbose=True,
        )
        if args.pack:
            _pack_in_place(ds, args)
    except SftDataError as e:
        print(f"sftdata prepare: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


def _pack_in_place(ds, args: argparse.Namespace) -> None:
    """``--pack L``: replace the output rows by packed rows (``stats.json`` kept, ``pack_stats.json`` added)."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..packing import pack_dataset, save_packed

    packed, report = pack_dataset(ds, args.pack, truncation="turns" if args.truncation == "turns" else "drop")
    out = Path(args.output)
    keep = {name: (out / name).read_bytes() for name in ("stats.json", "rejects.jsonl") if (out / name).exists()}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        save_packed(packed, report, Path(tmp) / "packed")
        shutil.rmtree(out)
        shutil.move(str(Path(tmp) / "packed"), str(out))
    for name, data in keep.items():
        (out / name).write_bytes(data)
    print(report.summary())
