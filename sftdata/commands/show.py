"""``sftdata show DIR --index I [--html FILE]``: one example with trained tokens highlighted."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="show one prepared example with trained tokens highlighted")
    p.add_argument("data", nargs="?", help="a directory written by `sftdata prepare` (or give --config)")
    p.add_argument("--index", "-i", type=int, default=0, help="row index")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one recorded in stats.json, else the embedded one)")
    p.add_argument("--html", default=None, metavar="FILE", help="write an HTML page instead")
    p.add_argument("--no-color", action="store_true", help="mark trained runs with ⟦ ⟧ instead of colours")
    p.add_argument("--config", "-c", default=None, metavar="FILE",
                   help="a pipeline config: show its prepared (mixed) data with its tokenizer")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config (dotted path, YAML value); repeatable")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import datasets

    from ..errors import ConfigError
    from ..show import render_html, render_terminal
    from ..tokenizer import load_tokenizer

    if args.config:
        from ..pipeline import load_config

        try:
            cfg = load_config(args.config, args.overrides)
        except ConfigError as e:
            print(f"sftdata show: error: {e}", file=sys.stderr)
            return 2
        args.data = args.data or str(cfg.mixed_dir)
        args.tokenizer = args.tokenizer or cfg.tokenizer
    if not args.data:
        print("sftdata show: error: DATA is required (or give --config)", file=sys.stderr)
        return 2
    if not Path(args.data).is_dir():
        hint = f" (run `sftdata prepare --config {args.config}` first)" if args.config else ""
        print(f"sftdata show: error: {args.data} is not a directory{hint}", file=sys.stderr)
        return 2
    ds = datasets.load_from_disk(args.data)
    if not 0 <= args.index < len(ds):
        print(f"sftdata show: error: index {args.index} out of range (0..{len(ds) - 1})", file=sys.stderr)
        return 2
    name = args.tokenizer
    stats_path = Path(args.data) / "stats.json"
    if name is None and stats_path.exists():
        recorded = json.loads(stats_path.read_text()).get("tokenizer", {}).get("tokenizer_name")
        name = recorded or None
    try:
        tok = load_tokenizer(name)
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
