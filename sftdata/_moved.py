"""Old flat module paths, kept working: ``import sftdata.render`` gives the module
``sftdata.masking.render`` itself (the same object: patching an attribute through either path patches
both), with a ``DeprecationWarning`` naming the new path. The table is in docs/architecture.md.

Installed once by ``sftdata/__init__.py`` (:func:`install`); nothing in the repository uses an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: ``sftdata.<old>`` -> the module's path now.
MOVED = {
    'sftdata.template_env': 'sftdata.masking.template_env',
    'sftdata.template': 'sftdata.masking.template',
    'sftdata.render_memo': 'sftdata.masking.render_memo',
    'sftdata.render_limits': 'sftdata.masking.render_limits',
    'sftdata.format_size': 'sftdata.masking.format_size',
    'sftdata.row_budget': 'sftdata.masking.row_budget',
    'sftdata.stop_tokens': 'sftdata.masking.stop_tokens',
    'sftdata.control_tokens': 'sftdata.masking.control_tokens',
    'sftdata.render': 'sftdata.masking.render',
    'sftdata.turn_location': 'sftdata.masking.turn_location',
    'sftdata.segments': 'sftdata.masking.segments',
    'sftdata.tokenizer': 'sftdata.masking.tokenizer',
    'sftdata.tree': 'sftdata.masking.tree',
    'sftdata.tree_arrays': 'sftdata.masking.tree_arrays',
    'sftdata.tree_fit': 'sftdata.masking.tree_fit',
    'sftdata.encode': 'sftdata.masking.encode',
    'sftdata.turn_check': 'sftdata.masking.turn_check',
    'sftdata.collate_rows': 'sftdata.collate.collate_rows',
    'sftdata.tree_collate': 'sftdata.collate.tree_collate',
    'sftdata.samplers': 'sftdata.collate.samplers',
    'sftdata.columns': 'sftdata.output.columns',
    'sftdata.store': 'sftdata.output.store',
    'sftdata.merge': 'sftdata.output.merge',
    'sftdata.stats': 'sftdata.output.stats',
}
_PREFIX = "Moved module: "


def _message(old: str) -> str:
    return f"{_PREFIX}{old} is now {MOVED[old]}; import it from there (the old path will be removed)"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec  # the import system set the alias's spec on the shared module
        old = next(k for k, v in MOVED.items() if v == self.new)
        # attribute the warning to the importing code: warnings skips importlib's bootstrap frames
        # itself; this one, importlib.import_module and sftdata.__getattr__ are skipped here
        frame, level = sys._getframe(1), 2
        while frame is not None:
            name = frame.f_code.co_filename
            if not ("importlib" in name and "_bootstrap" in name):
                if name not in (__file__, importlib.__file__):
                    break
                level += 1
            frame = frame.f_back
        warnings.warn(_message(old), DeprecationWarning, stacklevel=level)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))
        return None


class _Package(types.ModuleType):
    """``sftdata``'s module class: importing an old path sets ``sftdata.<old>`` to the module, except
    where ``sftdata`` binds that name itself (``sftdata.merge`` stays the function)."""

    def __setattr__(self, name, value):
        current = self.__dict__.get(name)
        if (isinstance(value, types.ModuleType) and f"{self.__name__}.{name}" in MOVED
                and current is not None and not isinstance(current, types.ModuleType)):
            return
        super().__setattr__(name, value)


def install(package: str, getattr_before=None):
    """Put the alias finder on ``sys.meta_path`` (first: it answers only the old paths) and
    return the package's ``__getattr__``: ``sftdata.render`` (an attribute) imports the old path."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # before an editable install's finder, which would find
        # a stale copy of the old file in the source tree it maps
    sys.modules[package].__class__ = _Package

    def __getattr__(name: str):
        if f"{package}.{name}" in MOVED:
            return importlib.import_module(f"{package}.{name}")
        if getattr_before is not None:
            return getattr_before(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
