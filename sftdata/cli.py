"""The ``sftdata`` command line: ``sftdata {prepare,merge,pack,show,run} ...``.

Each sub-command lives in :mod:`sftdata.commands` and registers itself with
``add_parser(subparsers)``, setting ``func`` (called with the parsed namespace,
returning an exit code). Exit codes: 0 success, 2 a configuration or data error (a message,
never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .cli_warnings import warnings_as_lines

_COMMANDS = ("prepare", "merge", "pack", "show", "run")


def build_parser() -> argparse.ArgumentParser:
    """The ``sftdata`` argument parser with every sub-command of :mod:`sftdata.commands`."""
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
    """Run ``sftdata ARGS``; returns the exit status (0 ok, 2 bad input or configuration, one line
    on stderr; 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        with warnings_as_lines("sftdata"):
            return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (`sftdata show ... | head`): stop quietly, and keep Python
        # from complaining again when it flushes stdout at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
