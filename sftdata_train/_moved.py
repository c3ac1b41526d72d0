"""Old flat module paths of the trainer, kept working: ``import sftdata_train.attention`` gives the module
``sftdata_train.model.attention`` itself (the same object: patching an attribute through either path
patches both), with a ``DeprecationWarning`` naming the new path. The table is in docs/architecture.md
("Moved module paths (trainer)").

Five old modules are package names now (``config``, ``model``, ``lora``, ``checkpoint``, ``loop``): the
package reads the old module's names from the module that holds its code on first use
(:func:`sftdata.module_aliases.reexport`; ``from sftdata_train.config import TrainConfig`` works as before, without a warning).
Patching a name through such a package path changes only the package's attribute; patch the module
(``sftdata_train.loop.trainer``) instead.

Installed once by ``sftdata_train/__init__.py`` (:func:`install`); nothing in the repository uses an
old path.
"""

from __future__ import annotations

from typing import Any, Callable

from sftdata import module_aliases

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


def install(package: str, getattr_before: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """Install the aliases of :data:`MOVED` (:func:`sftdata.module_aliases.install`) and return the
    package's ``__getattr__``: ``sftdata_train.attention`` (an attribute) imports the old path (with its
    warning); any other name goes to ``getattr_before``."""
    return module_aliases.install(package, MOVED, getattr_before)
