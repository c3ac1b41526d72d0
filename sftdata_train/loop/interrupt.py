"""Ctrl-C and SIGTERM during training: stop at a step boundary with a checkpoint, say how to resume.

:func:`stop_requests` installs handlers for SIGINT and SIGTERM (main thread only) for the
duration of a run. While the loop runs, the first signal only sets :attr:`StopRequest.requested`:
the loop finishes the optimizer step in progress, saves a checkpoint (unless it just saved
one) and raises :class:`Interrupted`. A signal outside the loop (set-up, saving), or a second
signal, raises ``KeyboardInterrupt`` at once, which :func:`sftdata_train.loop.train` turns into
:class:`Interrupted` naming the newest *complete* checkpoint (an interrupted save is never one:
checkpoints are renamed into place only when complete).

``sftdata-train`` prints :meth:`Interrupted.line` (one line, no traceback) and exits 130.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

EXIT_CODE = 130  # the shell's code for "terminated by SIGINT"

_RESUME_FLAGS = ("--resume", "--resume_from_checkpoint", "--resume-from-checkpoint")


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM (a ``KeyboardInterrupt``: code that stops on Ctrl-C
    still does).

    Attributes: ``step`` (optimizer steps done), ``checkpoint`` (the newest complete checkpoint
    dir, or None when none was written yet), ``output_dir``, ``signal_name``.
    """

    def __init__(self, *, step: int, checkpoint: Path | None, output_dir: Path, signal_name: str = "SIGINT") -> None:
        self.step, self.checkpoint, self.output_dir, self.signal_name = step, checkpoint, Path(output_dir), signal_name
        super().__init__(self.line())

    def line(self, argv: list[str] | None = None) -> str:
        """The one line to print: what was kept and the command that resumes (``argv``: the
        arguments the run was started with, default ``sys.argv[1:]``)."""
        if self.checkpoint is None:
            return (f"sftdata-train: interrupted ({self.signal_name}) before the first checkpoint; "
                    f"nothing to resume, rerun the same command to start over")
        return (f"sftdata-train: interrupted ({self.signal_name}) at step {self.step}; kept {self.checkpoint}; "
                f"resume with: {resume_command(argv)}")


def _launched_as_sftdata_train() -> bool:
    prog = sys.argv[0] if sys.argv else ""
    return Path(prog).name == "sftdata-train" or prog.replace("\\", "/").endswith(
        ("sftdata_train/__main__.py", "sftdata_train/cli.py"))


def resume_command(argv: list[str] | None = None) -> str:
    """``sftdata-train`` with ``argv`` (default ``sys.argv[1:]``) minus any resume flag, plus
    ``--resume latest``. Under torchrun (``WORLD_SIZE > 1``) the launcher is not known here: the
    same launch command plus ``--resume latest``; from another program (``sftdata run``, the
    Python API) with no ``argv``: what to set instead."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "the same torchrun command plus --resume latest"
    if argv is None and not _launched_as_sftdata_train():
        return ("the same command (sftdata run resumes the newest checkpoint by itself; "
                "from Python: train(..., resume_from_checkpoint='latest'))")
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in _RESUME_FLAGS:
            # the flag takes an optional value (nargs="?"): skip it when it is not another flag
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                i += 1
        elif not a.startswith(tuple(f + "=" for f in _RESUME_FLAGS)):
            kept.append(a)
        i += 1
    return shlex.join(["sftdata-train", *kept, "--resume", "latest"])


class StopRequest:
    """Set by the signal handlers; read by the loop once per optimizer step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = "SIGINT"
        self.in_loop = False  # while False, a signal raises KeyboardInterrupt at once

    def handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        """The SIGINT/SIGTERM handler: in the loop, the first signal sets ``requested`` (finish the
        step, save, stop); outside it, or a second signal, raises ``KeyboardInterrupt`` at once."""
        self.signal_name = signal.Signals(signum).name
        if self.in_loop and not self.requested:
            self.requested = True  # finish the step, save, stop
            return
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Handlers for SIGINT and SIGTERM for the duration of the block (previous ones restored
    after); outside the main thread nothing is installed and the request is never set."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, stop.handle)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
