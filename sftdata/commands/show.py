"""``sftdata show DIR --index I [--html FILE]``: one example with trained tokens highlighted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="show one prepared example with trained tokens highlighted")
    p.add_argument("data", help="a directory written by `sftdata prepare`")
    p.add_argument("--index", "-i", type=int, default=0, help="row index")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one recorded in stats.json, else the embedded one)")
    p.add_argument("--html", default=None, metavar="FILE", help="write an HTML page instead")
    p.add_argument("--no-color", action="store_true", help="mark trained runs with ⟦ ⟧ instead of colours")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..show import render_html, render_terminal
    from ..output import load_output
    from ..tokenizer import load_tokenizer

    try:
        ds = load_output(args.data)
        if len(ds) == 0:
            raise ConfigError(f"{args.data} has no rows")
        if not 0 <= args.index < len(ds):
            raise ConfigError(f"index {args.index} out of range (0..{len(ds) - 1})")
        missing = [c for c in ("input_ids", "labels") if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{args.data} has no {', '.join(missing)} column: not a `sftdata prepare`/`pack` output")
        name = args.tokenizer
        stats = getattr(ds, "sftdata_stats", None) or {}
        if name is None:
            name = stats.get("tokenizer", {}).get("tokenizer_name") or None
        try:
            tok = load_tokenizer(name)
        except ConfigError as e:
            raise ConfigError(f"{e} (the tokenizer recorded in stats.json; pass --tokenizer)" if args.tokenizer is None else str(e)) from None
    except ConfigError as e:
        print(f"sftdata show: error: {e}", file=sys.stderr)
        return 2
    row = ds[args.index]
    title = f"row {args.index} (source_index {row.get('source_index')})"
    if args.html:
        Path(args.html).write_text(render_html(tok, row["input_ids"], row["labels"], title=title), encoding="utf-8")
        print(f"wrote {args.html}")
    else:
        n_tr = sum(1 for x in row["labels"] if x != -100)
        print(f"{title}: {len(row['input_ids'])} tokens, {n_tr} trained")
        print(render_terminal(tok, row["input_ids"], row["labels"], color=not args.no_color and sys.stdout.isatty()))
    return 0
