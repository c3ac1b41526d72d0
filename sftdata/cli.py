"""The ``sftdata`` command line: ``sftdata {prepare,pack,show,run} ...``.

Each sub-command lives in :mod:`sftdata.commands` and registers itself with
``add_parser(subparsers)``, setting ``func`` (called with the parsed namespace,
returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

_COMMANDS = ("prepare", "pack", "show", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sftdata", description="Agent traces to SFT data with exact assistant masks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"sftdata.commands.{name}")
        except ModuleNotFoundError as e:  # a sub-command not built yet
            if e.name != f"sftdata.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
