"""``sftdata show DIR --index I [--path N] [--html FILE]``: one example with trained tokens highlighted.

A prefix-tree row (see ``docs/trees.md``) holds several sequences the model sees (its
root-to-leaf paths). ``show`` prints a summary (paths, tokens shared by every path, length,
shared, own and trained tokens per path), then path 1 whole and every later path from where
it branches: its shared prefix is folded into one line naming the path that holds it
(``--unfold`` prints every path whole, ``--path N`` only path ``N``, whole). The HTML page
folds the shared prefixes into ``<details>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .run import add_config_arguments


def add_parser(sub) -> None:
    """Register ``sftdata show`` on the CLI's sub-parsers ``sub`` (``argparse``), with :func:`run` as its handler."""
    p = sub.add_parser("show", help="show one prepared example with trained tokens highlighted")
    p.add_argument("data", nargs="?", help="a directory written by `sftdata prepare` (or give --config)")
    p.add_argument("--index", "-i", type=int, default=0, help="row index")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one recorded in stats.json, else the embedded one)")
    p.add_argument("--html", default=None, metavar="FILE", help="write an HTML page instead")
    p.add_argument("--no-color", action="store_true", help="mark trained runs with ⟦ ⟧ instead of colours")
    p.add_argument("--path", type=int, default=None, metavar="N",
                   help="a prefix-tree row: print only its path N (1-based, as in the summary), whole")
    p.add_argument("--unfold", action="store_true", help="a prefix-tree row: print every path whole (shared prefixes repeated)")
    add_config_arguments(p, "a pipeline config: show its prepared (mixed) data with its tokenizer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sftdata show`` with the parsed ``args`` (prints the example, or writes ``--html``); returns the exit
    status (0 done, 2 a bad index, path or configuration, printed)."""
    from ..errors import ConfigError
    from ..output.load import load_output
    from ..show import render_html, render_terminal
    from ..masking.tokenizer import load_tokenizer

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
    return _show(args, tok, ds[args.index])


def _show(args: argparse.Namespace, tok, row: dict) -> int:
    from ..show import path_tokens, render_html, render_terminal, render_tree_html, tree_paths
    from ..masking.tree_arrays import IGNORE_INDEX

    ids, labels, parent = row["input_ids"], row["labels"], row.get("parent") or []
    paths = tree_paths(labels, parent)
    title = f"row {args.index} (source_index {row.get('source_index')})"
    color = not args.no_color and sys.stdout.isatty()
    if args.path is not None:
        if not 1 <= args.path <= len(paths):
            print(f"sftdata show: error: --path {args.path} out of range: row {args.index} has {len(paths)} path(s) "
                  f"(1..{len(paths)})", file=sys.stderr)
            return 2
        p = paths[args.path - 1]
        idx = path_tokens(parent, p)
        # the path as the model sees it: trained only where this path trains (its own tokens)
        p_ids = [ids[i] for i in idx]
        p_lab = [labels[i] if i >= p.start else IGNORE_INDEX for i in idx]
        head = f"{title}, path {p.number}/{len(paths)}: {p.length:,} tokens, {p.trained:,} trained here"
        if args.html:
            Path(args.html).write_text(render_html(tok, p_ids, p_lab, title=head), encoding="utf-8")
            print(f"wrote {args.html}")
            return 0
        print(head)
        print(render_terminal(tok, p_ids, p_lab, color=color))
        return 0
    if args.html:
        page = (render_tree_html(tok, ids, labels, parent, title=title) if len(paths) > 1
                else render_html(tok, ids, labels, title=title))
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}")
        return 0
    n_tr = sum(p.trained for p in paths)
    if len(paths) == 1:
        print(f"{title}: {len(ids)} tokens, {n_tr} trained")
        print(render_terminal(tok, ids, labels, color=color))
        return 0
    common = min(p.shared for p in paths[1:])
    print(f"{title}: a prefix tree of {len(paths)} sequences (paths); {len(ids):,} tokens stored for "
          f"{sum(p.length for p in paths):,} as linear rows; {common:,} tokens shared by every path; {n_tr:,} trained")
    print(f"{'path':>5} {'length':>8} {'shared':>8} {'own':>7} {'trained':>8}  branches from")
    for p in paths:
        print(f"{p.number:>5} {p.length:>8,} {p.shared:>8,} {p.end - p.start:>7,} {p.trained:>8,}  "
              f"{('path ' + str(p.shares_with)) if p.shares_with else '-'}")
    for p in paths:
        print(f"--- path {p.number}/{len(paths)}: {p.length:,} tokens, {p.trained:,} trained here")
        lo = 0 if args.unfold else p.start
        idx = [i for i in path_tokens(parent, p) if i >= lo] if args.unfold else list(range(p.start, p.end))
        if not args.unfold and p.shared:
            tail = tok.backend_tokenizer.decode([ids[i] for i in path_tokens(parent, p)[max(p.shared - 8, 0) : p.shared]],
                                                skip_special_tokens=False)
            print(f"[{p.shared:,} tokens shared with path {p.shares_with} folded (--path {p.number} prints this path whole), "
                  f"ending {tail!r}]")
        p_lab = [labels[i] if i >= p.start else IGNORE_INDEX for i in idx]
        print(render_terminal(tok, [ids[i] for i in idx], p_lab, color=color))
    return 0
