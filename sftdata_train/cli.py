"""``sftdata-train`` console script (also ``python -m sftdata_train`` and ``torchrun -m sftdata_train``)."""

from __future__ import annotations

import os
import sys

from sftdata.cli_warnings import warnings_as_lines
from sftdata.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (``--config`` YAML, flags; :func:`sftdata_train.config.parse_args`), train, print
    where the model went.

    Returns the process exit code: 0 on success, 2 on a configuration error (one message on
    stderr, every bad key listed), 1 when training stopped on a non-finite gradient norm (nothing
    applied; the last checkpoint is intact).
    """
    from .config.command_line import parse_args
    from .loop.interrupt import EXIT_CODE, Interrupted

    try:
        config = parse_args(argv)
        from .loop.trainer import train

        with warnings_as_lines("sftdata-train"):
            result = train(config)
    except ConfigError as e:
        print(f"sftdata-train: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a non-finite gradient norm with --nonfinite_grad stop
        print(f"sftdata-train: stopped: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:  # SIGINT/SIGTERM: one line (what was kept, how to resume), exit 130
        if int(os.environ.get("RANK", "0")) == 0:
            print(e.line(argv), file=sys.stderr)
        return EXIT_CODE
    if int(os.environ.get("RANK", "0")) == 0:
        where = result.final_model_dir or result.last_checkpoint
        last = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
        print(f"sftdata-train: step {result.step}{last}; model in {where}", file=sys.stderr)
        if result.final_model_dir is not None:  # the last line: how to load it
            from .lora.merge import load_hint

            print(f"sftdata-train: load it with: {load_hint(result.final_model_dir)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
