"""Old flat module paths of the trainer, kept working: ``import sftdata_train.attention`` gives the module
``sftdata_train.model.attention`` itself (the same object: patching an attribute through either path
patches both), with a ``DeprecationWarning`` naming the new path. The table is in docs/architecture.md
("Moved module paths (trainer)").

Five old modules are package names now (``config``, ``model``, ``lora``, ``checkpoint``, ``loop``): the
package reads the old module's names from the module that holds its code on first use
(:func:`reexport`; ``from sftdata_train.config import TrainConfig`` works as before, without a warning).
Patching a name through such a package path changes only the package's attribute; patch the module
(``sftdata_train.loop.trainer``) instead.

Installed once by ``sftdata_train/__init__.py`` (:func:`install`); nothing in the repository uses an
old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from typing import Any, Callable

#: ``sftdata_train.<old>`` -> the module's path now.
MOVED = {
    # moved-table-start (rewritten by the move, one group at a time)
    'sftdata_train.config_cli': 'sftdata_train.config.command_line',
    'sftdata_train.aliases': 'sftdata_train.config.aliases',
    'sftdata_train.alias_converters': 'sftdata_train.config.alias_converters',
    'sftdata_train.attention': 'sftdata_train.model.attention',
    'sftdata_train.seq_layout': 'sftdata_train.model.seq_layout',
    'sftdata_train.torch_varlen': 'sftdata_train.model.torch_varlen',
    'sftdata_train.tree_attention': 'sftdata_train.model.tree_attention',
    'sftdata_train.compiling': 'sftdata_train.model.compiling',
    'sftdata_train.recompute': 'sftdata_train.model.recompute',
    'sftdata_train.lora_init': 'sftdata_train.lora.init_adapter',
    'sftdata_train.lora_merge': 'sftdata_train.lora.merge',
    'sftdata_train.qlora': 'sftdata_train.lora.qlora',
    'sftdata_train.checkpoint_manager': 'sftdata_train.checkpoint.manager',
    'sftdata_train.state': 'sftdata_train.checkpoint.state',
    'sftdata_train.export': 'sftdata_train.checkpoint.export',
    'sftdata_train.step': 'sftdata_train.loop.step',
    'sftdata_train.optim': 'sftdata_train.loop.optim',
    'sftdata_train.guards': 'sftdata_train.loop.guards',
    'sftdata_train.metrics': 'sftdata_train.loop.metrics',
    'sftdata_train.peaks': 'sftdata_train.loop.peaks',
    'sftdata_train.tracking': 'sftdata_train.loop.tracking',
    'sftdata_train.interrupt': 'sftdata_train.loop.interrupt',
    # moved-table-end
}

#: An old module path that is a package now -> the module that holds the old module's code.
PACKAGES = {
    # packages-table-start
    'sftdata_train.config': 'sftdata_train.config.train_config',
    'sftdata_train.model': 'sftdata_train.model.loading',
    'sftdata_train.lora': 'sftdata_train.lora.adapter',
    'sftdata_train.checkpoint': 'sftdata_train.checkpoint.directories',
    'sftdata_train.loop': 'sftdata_train.loop.trainer',
    # packages-table-end
}
_PREFIX = "Moved module: "


def _message(old: str) -> str:
    return f"{_PREFIX}{old} is now {MOVED[old]}; import it from there (the old path will be removed)"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str) -> None:
        self.old = old
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[self.old])
        self.spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.spec  # the import system set the alias's spec on the shared module
        # attribute the warning to the importing code: warnings skips importlib's bootstrap frames
        # itself; this module's frames (the loader, sftdata_train.__getattr__) and
        # importlib.import_module are skipped here
        frame, level = sys._getframe(1), 2
        while frame is not None:
            name = frame.f_code.co_filename
            if not ("importlib" in name and "_bootstrap" in name):
                if name not in (__file__, importlib.__file__):
                    break
                level += 1
            frame = frame.f_back
        warnings.warn(_message(self.old), DeprecationWarning, stacklevel=level)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(fullname))
        return None


def install(package: str, getattr_before: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """Put the alias finder on ``sys.meta_path`` (first: it answers only the old paths, before an
    editable install's finder, which would find a stale copy of an old file in the source tree it maps)
    and return the package's ``__getattr__``: ``sftdata_train.attention`` (an attribute) imports the old
    path (with its warning); any other name goes to ``getattr_before``."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())

    def __getattr__(name: str) -> Any:
        if f"{package}.{name}" in MOVED:
            return importlib.import_module(f"{package}.{name}")
        if getattr_before is not None:
            return getattr_before(name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def reexport(package: str, module: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a package that replaced the module of the same name: a name of the package
    that is not one of its submodules is read from ``<package>.<module>`` (imported on first use, so
    importing a submodule does not import it). Raises ``AttributeError`` for a name that module lacks."""
    folder = os.path.dirname(sys.modules[package].__file__)

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or os.path.exists(os.path.join(folder, name + ".py")):
            raise AttributeError(name)  # a submodule: the import system loads it
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
