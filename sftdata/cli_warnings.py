"""How the command lines show sftdata's own warnings: one ``<prog>: warning: <message>`` line
on stderr, instead of Python's format (the file, line and source line of the code that
warned, which mean nothing to someone preparing data or training).

A warning counts as sftdata's own when its category is defined in ``sftdata``/``sftdata_train``
(e.g. :class:`~sftdata.formats.reader.ArrowArgumentsWarning`) or when the code that issued it
lives in those packages; warnings of other libraries keep the format they had.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Iterator

_PACKAGES = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep for name in ("sftdata", "sftdata_train")
)


def is_own_warning(category: type[Warning], filename: str) -> bool:
    """Whether a warning is sftdata's own (see the module doc)."""
    return category.__module__.split(".")[0] in ("sftdata", "sftdata_train") or os.path.abspath(filename).startswith(_PACKAGES)


@contextlib.contextmanager
def warnings_as_lines(prog: str) -> Iterator[None]:
    """Within the block, show sftdata's own warnings as ``<prog>: warning: <message>``; the
    previous ``warnings.showwarning`` is restored on exit."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202 - warnings' hook
        if is_own_warning(category, filename):
            print(f"{prog}: warning: {message}", file=file if file is not None else sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
