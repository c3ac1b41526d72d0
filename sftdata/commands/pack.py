"""``sftdata pack DIR --max-length L --output OUT``: prepared rows → packed rows on disk."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..errors import SftDataError
from .run import add_config_arguments, reject_flags, run_config


def add_parser(sub) -> None:
    """Register ``sftdata pack`` on the CLI's sub-parsers ``sub`` (``argparse``), with :func:`run` as its handler."""
    from ..packing import DEFAULT_STRATEGY, STRATEGIES, TRUNCATION

    p = sub.add_parser(
        "pack",
        help="pack prepared rows into fixed-length rows (conversation boundaries kept)",
        description="Pack a `sftdata prepare` output dir globally into rows of at most L tokens. Each row keeps "
        "seq_lengths and position_ids (restarting at 0) so the padding-free collator gives attention no way across "
        "sequence boundaries. A prefix-tree row (docs/trees.md) is one unit; its parent and depths are kept, and a "
        "tree longer than L is split into sub-trees that fit (each repeats the context its branches need). Writes the packed rows (datasets.save_to_disk) and pack_stats.json.",
        epilog="example: sftdata pack out/data --max-length 4096 --output out/packed",
    )
    p.add_argument("input", nargs="?", help="a `sftdata prepare` output dir (datasets.save_to_disk)")
    p.add_argument("--max-length", "-L", type=int, default=None, help="tokens per packed row (required without --config)")
    p.add_argument("--output", "-o", default=None, help="output directory (required without --config)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"packing strategy (default {DEFAULT_STRATEGY}; bfd = best-fit decreasing)")
    p.add_argument("--truncation", choices=TRUNCATION, default="drop",
                   help="sequences longer than L: drop, keep the first L tokens, or cut at the last whole "
                   "trained turn (trees: split into sub-trees that fit, then the same rule per sequence) (default drop; all "
                   "counted in pack_stats.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shuffle", action="store_true", help="keep the planner's row order")
    p.add_argument("--shard-size", type=int, default=None, help="plan shards of this many rows (default: global)")
    p.add_argument("--num-proc", type=int, default=None, help="threads for building rows")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_config_arguments(p)
    p.set_defaults(func=run, command_parser=p)


def run(args: argparse.Namespace) -> int:
    """Run ``sftdata pack`` with the parsed ``args`` (``--config``: the pipeline up to its pack stage); returns
    the exit status (0 done, 2 a configuration or data error, printed)."""
    from ..errors import ConfigError
    from ..packing import pack_dataset, save_packed
    from ..output.load import load_output

    if args.config:
        if reject_flags(args, args.command_parser, set(), "sftdata pack"):
            return 2
        return run_config(args, until="pack", prog="sftdata pack")
    if not args.input or not args.max_length or not args.output:
        print("sftdata pack: error: INPUT, --max-length and --output are required (or give --config)", file=sys.stderr)
        return 2
    try:
        src = Path(args.input)
        out = Path(args.output)
        if not src.is_dir():
            raise ConfigError(f"{src} is not a directory (expected `sftdata prepare` output)")
        replace = out.exists() and any(out.iterdir())
        if replace:
            if not args.overwrite:
                raise ConfigError(f"{out} exists and is not empty (use --overwrite)")
            if out.resolve() == src.resolve():
                raise ConfigError("--output must differ from the input dir")
        if (src / "dataset_dict.json").is_file():
            if not (src / "train").is_dir():
                raise ConfigError(f"{src} holds a DatasetDict without a 'train' split")
            src = src / "train"
        ds = load_output(src)
        if len(ds) == 0:
            raise ConfigError(f"{src} has no rows: nothing to pack")
        packed, report = pack_dataset(
            ds,
            args.max_length,
            strategy=args.strategy,
            seed=args.seed,
            truncation=args.truncation,
            shuffle=not args.no_shuffle,
            shard_size=args.shard_size,
            num_proc=args.num_proc,
        )
        if report.nothing_fits():
            raise ConfigError(report.nothing_fits())
        if replace:  # only once packing succeeded: an error leaves OUT as it was
            shutil.rmtree(out)
        save_packed(packed, report, out)
        stats = src / "stats.json"
        if stats.is_file():
            shutil.copyfile(stats, out / "stats.json")
    except SftDataError as e:
        print(f"sftdata pack: error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    warn = report.warning()
    if warn:
        print(f"sftdata pack: warning: {warn}", file=sys.stderr)
    print(f"wrote {out}")
    return 0
