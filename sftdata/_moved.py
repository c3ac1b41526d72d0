"""Old flat module paths, kept working: ``import sftdata.render`` gives the module
``sftdata.masking.render`` itself (the same object: patching an attribute through either path patches
both), with a ``DeprecationWarning`` naming the new path. The table is in docs/architecture.md.

Installed once by ``sftdata/__init__.py`` (:func:`install`; the mechanism is
:mod:`sftdata.module_aliases`); nothing in the repository uses an old path.
"""

from __future__ import annotations

import sys
import types

from . import module_aliases

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
    """Install the aliases of :data:`MOVED` (:func:`sftdata.module_aliases.install`) and return the
    package's ``__getattr__``: ``sftdata.render`` (an attribute) imports the old path."""
    sys.modules[package].__class__ = _Package
    return module_aliases.install(package, MOVED, getattr_before)
