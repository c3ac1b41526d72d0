"""Output: what ``prepare``/``merge`` write and how it is read back. ``columns`` (the Arrow schema of
a row), ``stats`` (counters, ``stats.json``, the content fingerprint), ``store`` (a job directory, part
files written and published atomically), ``merge`` (several outputs into one), ``load`` (checked loading
of an output directory, ``load_output``). See docs/architecture.md and docs/output.md.

``sftdata.output.load_output`` (the documented path) and the other names of :mod:`sftdata.output.load`
keep working from here.
"""

from __future__ import annotations


def __getattr__(name: str):
    import importlib
    import os

    if name.startswith("__") or os.path.exists(os.path.join(os.path.dirname(__file__), name + ".py")):
        raise AttributeError(name)  # a submodule: the import system loads it (without torch)

    try:
        return getattr(importlib.import_module(__name__ + ".load"), name)
    except AttributeError:
        raise AttributeError(f"module 'sftdata.output' has no attribute {name!r}") from None
