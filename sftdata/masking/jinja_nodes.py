"""Two helpers for rewriting parsed chat templates (``jinja2.nodes``): custom node types and copies.

Used by the render memo (:mod:`sftdata.masking.render_memo_nodes`,
:mod:`sftdata.masking.render_memo_analysis`) and the guarded scans (:mod:`sftdata.masking.render_scan`).
"""

from __future__ import annotations

from typing import Any

import jinja2.nodes as nodes

__all__ = ["clone", "node_type"]


def node_type(name: str, base: type, fields: tuple[str, ...], doc: str, module: str) -> type:
    """A jinja node class named ``name``, a subclass of ``base`` with ``fields`` added.

    jinja forbids ``class X(nodes.Stmt)`` (its metaclass refuses custom node types, to steer
    extensions to its own nodes); this builds the class as the metaclass would (fields and
    attributes inherited, then extended). Only sftdata's code generator
    (:class:`~sftdata.masking.render_memo_codegen.MemoCodeGenerator`) compiles these nodes; jinja's
    symbol analysis walks them through ``iter_child_nodes``.

    Args:
        module: the ``__module__`` the class reports (the module that defines it).
    """
    namespace = {"fields": base.fields + fields, "attributes": base.attributes, "abstract": False, "__doc__": doc, "__module__": module}
    return type.__new__(nodes.NodeType, name, (base,), namespace)


def clone(node: Any) -> Any:
    """A deep copy of a jinja node, or of a list of them (sharing the environment, unlike
    ``copy.deepcopy``); other values are returned as they are."""
    if isinstance(node, list):
        return [clone(x) for x in node]
    if not isinstance(node, nodes.Node):
        return node
    new = object.__new__(type(node))
    for name in node.fields:
        setattr(new, name, clone(getattr(node, name, None)))
    for name in node.attributes:
        setattr(new, name, getattr(node, name, None))
    return new
