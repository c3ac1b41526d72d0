"""``sftdata merge SHARD_DIR... --output DIR``: recombine a sharded ``prepare``."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    """Register ``sftdata merge`` on the CLI's sub-parsers ``sub`` (``argparse``), with :func:`run` as its handler."""
    from .prepare import parse_size

    p = sub.add_parser(
        "merge",
        help="merge the outputs of `sftdata prepare --num-shards N --shard-index i` (i = 0..N-1)",
        description="Recombine shard outputs into the output an unsharded run would write: the same rows in the "
        "same order, summed stats.json, one content fingerprint, rejects.jsonl in row order.",
        epilog="example: sftdata merge out/shard-* --output out/data",
    )
    p.add_argument("shards", nargs="+", help="the shard output directories (any order)")
    p.add_argument("--output", "-o", required=True, help="merged output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the output directory if it exists")
    p.add_argument("--shard-size", type=parse_size, default=None, metavar="SIZE", help="size of one output file (default: the shards')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sftdata merge`` with the parsed ``args``; returns the exit status (0 done, 2 an sftdata error, printed)."""
    from ..errors import SftDataError
    from ..output.merge import merge
    from ..output.stats import summary

    try:
        stats = merge(args.shards, args.output, overwrite=args.overwrite, shard_size=args.shard_size)
    except SftDataError as e:
        print(f"sftdata merge: error: {e}", file=sys.stderr)
        return 2
    print(summary(stats))
    print(f"wrote {args.output}")
    return 0
