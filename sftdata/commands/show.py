"""``sftdata show DIR --index I [--html FILE]``: one example with trained tokens highlighted.

A prefix-tree row (see ``docs/trees.md``) is shown path by path: every root-to-leaf path is
one sequence the model sees, with the tokens that path trains highlighted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .run import add_config_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="show one prepared example with trained tokens highlighted")
    p.add_argument("data", nargs="?", help="a directory written by `sftdata prepare` (or give --config)")
    p.add_argument("--index", "-i", type=int, default=0, help="row index")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one recorded in stats.json, else the embedded one)")
    p.add_argument("--html", default=None, metavar="FILE", help="write an HTML page instead")
    p.add_argument("--no-color", action="store_true", help="mark trained runs with ⟦ ⟧ instead of colours")
    add_config_arguments(p, "a pipeline config: show its prepared (mixed) data with its tokenizer")
    p.set_defaults(func=run)


def _paths(row: dict) -> list[tuple[list[int], list[int]]]:
    """The row's sequences: itself, or every root-to-leaf path of a tree row."""
    from ..tree import unroll

    if row.get("parent"):
        return unroll({"input_ids": row["input_ids"], "labels": row["labels"], "parent": row["parent"]})
    return [(row["input_ids"], row["labels"])]


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..output import load_output
    from ..show import render_html, render_terminal
    from ..tokenizer import load_tokenizer

    try:
        if args.config:
            from .run import load_pipeline_config

            cfg = load_pipeline_config(args.config, args.overrides)
            args.data = args.data or str(cfg.mixed_dir)
            args.tokenizer = args.tokenizer or cfg.tokenizer
            if not Path(args.data).is_dir():
                raise ConfigError(f"{args.data} is not a directory (run `sftdata prepare --config {args.config}` first)")
        if not args.data:
            raise ConfigError("DATA is required (or give --config)")
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
    paths = _paths(row)
    title = f"row {args.index} (source_index {row.get('source_index')})"
    if len(paths) > 1:
        title += f": a prefix tree of {len(paths)} sequences, {len(row['input_ids'])} tokens stored"
    if args.html:
        pages = [render_html(tok, ids, labels, title=title + (f" — sequence {i + 1}/{len(paths)}" if len(paths) > 1 else ""))
                 for i, (ids, labels) in enumerate(paths)]
        Path(args.html).write_text("\n".join(pages), encoding="utf-8")
        print(f"wrote {args.html}")
        return 0
    n_tr = sum(1 for x in row["labels"] if x != -100)
    print(f"{title}: {len(row['input_ids'])} tokens, {n_tr} trained")
    for i, (ids, labels) in enumerate(paths):
        if len(paths) > 1:
            print(f"--- sequence {i + 1}/{len(paths)}: {len(ids)} tokens, {sum(1 for x in labels if x != -100)} trained here")
        print(render_terminal(tok, ids, labels, color=not args.no_color and sys.stdout.isatty()))
    return 0
