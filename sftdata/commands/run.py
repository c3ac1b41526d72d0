"""``sftdata run CONFIG.yaml``: the whole pipeline (prepare → mix → pack → train) from one config.

Also the ``--config`` of ``sftdata prepare``/``pack``/``show`` (:func:`run_config`, :func:`reject_flags`).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import SftDataError


def add_config_arguments(
    p: argparse.ArgumentParser,
    config_help: str = "a pipeline config (docs/pipeline.md): run the pipeline up to this command's stage",
) -> None:
    """``--config FILE`` and ``--set KEY=VALUE`` (shared by the sub-commands)."""
    p.add_argument("--config", "-c", default=None, metavar="FILE", help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path, YAML value), e.g. --set train.max_steps=5; repeatable")


def add_parser(sub) -> None:
    """Register ``sftdata run`` on the CLI's sub-parsers ``sub`` (``argparse``), with :func:`run` as its handler."""
    p = sub.add_parser(
        "run",
        help="run a pipeline config: prepare -> mix -> pack -> train, skipping up-to-date stages",
        description="Run the stages a pipeline config describes (docs/pipeline.md). The whole file is validated "
        "before anything runs. A stage whose output holds a record with the same fingerprint is skipped; each "
        "output dir gets the resolved config (sftdata_pipeline.yaml) and a stage record (sftdata_stage.json).",
        epilog="example: sftdata run examples/pipeline.yaml --set train.max_steps=20",
    )
    p.add_argument("config", help="pipeline config (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path, YAML value), e.g. --set datasets.0.weight=2; repeatable")
    p.add_argument("--until", choices=("prepare", "pack", "train"), default="train",
                   help="last stage to run (prepare includes the mix; default train)")
    p.add_argument("--force", action="store_true", help="re-run every stage, replacing its output")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would run; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def load_pipeline_config(path: str, overrides: list[str]):
    """The whole pipeline config, ``train:`` included (checked by ``sftdata_train.pipeline``, imported here)."""
    from sftdata_train.pipeline import load_config

    return load_config(path, overrides)


def run_config(args: argparse.Namespace, *, until: str, prog: str) -> int:
    """Run the pipeline of ``args.config`` up to ``until``; prints errors as ``<prog>: error: …``.

    The one place where the ``sftdata`` command line reaches the trainer: ``sftdata_train.pipeline``
    (imported here, when the command runs) checks and runs the ``train:`` section.
    """
    from sftdata_train.pipeline import run_pipeline

    progress = not getattr(args, "no_progress", False)
    if not progress:
        import datasets

        datasets.disable_progress_bars()
    try:
        result = run_pipeline(
            args.config, until=until, force=getattr(args, "force", False), dry_run=getattr(args, "dry_run", False),
            overrides=args.overrides, progress=progress, log=lambda line: print(line, file=sys.stderr),
        )
    except SftDataError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: one line, no traceback (training names its checkpoint)
        what = str(e) or "interrupted; the stages already finished are kept: rerun the same command to continue"
        print(f"{prog}: {what}", file=sys.stderr)
        return 130
    print(f"data: {result.config.data_dir if until != 'prepare' else result.config.mixed_dir}")
    if result.config.train_dir is not None and until == "train":
        print(f"train: {result.config.train_dir}")
    return 0


def reject_flags(args: argparse.Namespace, parser: argparse.ArgumentParser, allowed: set[str], prog: str) -> bool:
    """With ``--config``, flags that the config sets are refused (the file is the one description).

    Returns True (after printing an error) when such a flag was given.
    """
    given = [
        a.option_strings[0] if a.option_strings else a.dest
        for a in parser._actions
        if a.dest not in allowed | {"help", "config", "overrides", "func", "command_parser"}
        and getattr(args, a.dest, a.default) not in (a.default, None, [])
    ]
    if given:
        print(f"{prog}: error: {', '.join(given)} cannot be combined with --config: set the key in the file or "
              "use --set KEY=VALUE", file=sys.stderr)
        return True
    return False


def run(args: argparse.Namespace) -> int:
    """Run ``sftdata run`` (:func:`run_config` up to ``--until``); returns the exit status (0, 2 an error, 130
    interrupted)."""
    return run_config(args, until=args.until, prog="sftdata run")
