"""Old module paths kept working after a module moves: the one mechanism behind ``sftdata._moved``
and ``sftdata_train._moved`` (each holds only its table).

``import pkg.old`` gives the module at its new path itself (the same object: patching an attribute
through either path patches both), with a ``DeprecationWarning`` that names the new path and points at
the importing line. A package that replaced a module of the same name reads the old module's names on
first use (:func:`reexport`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from typing import Any, Callable, Mapping

__all__ = ["MESSAGE_PREFIX", "AliasFinder", "install", "moved_message", "reexport"]

#: every warning's first words (a filter such as ``PYTHONWARNINGS=error:Moved module:DeprecationWarning``)
MESSAGE_PREFIX = "Moved module: "


def moved_message(old: str, new: str) -> str:
    """The warning text for importing ``old``, now ``new``."""
    return f"{MESSAGE_PREFIX}{old} is now {new}; import it from there (the old path will be removed)"


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path (no second copy), then warns."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        self.spec = None

    def create_module(self, spec):
        """The module at the new path (imported if need be)."""
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        """Restore the module's own spec and warn, attributed to the importing code."""
        module.__spec__ = self.spec  # the import system set the alias's spec on the shared module
        # warnings skips importlib's bootstrap frames itself; this module's frames (the loader, the
        # package __getattr__ made by install) and importlib.import_module are skipped here
        frame, level = sys._getframe(1), 2
        while frame is not None:
            name = frame.f_code.co_filename
            if not ("importlib" in name and "_bootstrap" in name):
                if name not in (__file__, importlib.__file__):
                    break
                level += 1
            frame = frame.f_back
        warnings.warn(moved_message(self.old, self.new), DeprecationWarning, stacklevel=level)


class AliasFinder(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that answers only the old paths of ``table`` (old -> new)."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = table

    def find_spec(self, fullname, path=None, target=None):
        """A spec loading the new module for an old path; ``None`` for any other name."""
        new = self.table.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(fullname, new))


def install(package: str, table: Mapping[str, str], getattr_before: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """Put an :class:`AliasFinder` for ``table`` on ``sys.meta_path`` (once, first: it answers only the
    old paths, before an editable install's finder, which would find a stale copy of an old file in the
    source tree it maps) and return ``package``'s ``__getattr__``: ``package.old`` (an attribute)
    imports the old path, with its warning; any other name goes to ``getattr_before``.

    Raises:
        AttributeError: (from the returned function) a name neither moved nor known to ``getattr_before``.
    """
    if not any(isinstance(f, AliasFinder) and f.table is table for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder(table))

    def __getattr__(name: str) -> Any:
        if f"{package}.{name}" in table:
            return importlib.import_module(f"{package}.{name}")
        if getattr_before is not None:
            return getattr_before(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def reexport(package: str, module: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a package that replaced the module of the same name: a name of the package
    that is not one of its submodules is read from ``<package>.<module>`` (imported on first use, so
    importing a submodule does not import it).

    Raises:
        AttributeError: (from the returned function) a name that module lacks, or a submodule's name
            (the import system then loads the submodule).
    """
    folder = os.path.dirname(sys.modules[package].__file__)

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or os.path.exists(os.path.join(folder, name + ".py")):
            raise AttributeError(name)  # a submodule: the import system loads it
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
