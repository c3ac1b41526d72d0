"""The jinja nodes :func:`~sftdata.masking.render_memo_plan.plan` adds to a template, and the kinds of
observation it tells the runtime about (:mod:`sftdata.masking.render_memo` describes the mechanism).

A memoised loop's body becomes one :class:`MemoIteration`; each observation inside it is an
:class:`Observe`, and a positional read ``messages[loop.index0 + c]`` inside an observation a
:class:`PosRead`. :mod:`sftdata.masking.render_memo_codegen` compiles them.
"""

from __future__ import annotations

import jinja2.nodes as nodes

from .jinja_nodes import node_type

__all__ = ["MemoIteration", "Observe", "PosRead", "NEXT", "NS", "OTHER", "POS"]


def _node_type(name: str, base: type, fields: tuple[str, ...], doc: str) -> type:
    """A node class of this module (:func:`~sftdata.masking.jinja_nodes.node_type`)."""
    return node_type(name, base, fields, doc, __name__)


MemoIteration = _node_type(
    "MemoIteration", nodes.Stmt, ("loop_id", "stable", "observed", "bases", "ns_reads", "body"),
    """The whole body of a memoised loop: ``stable`` (key expressions), ``observed`` (observation
    expressions, by index), ``bases`` (the namespace variables the body writes), ``ns_reads`` (the
    namespace attributes it reads and never writes), ``body``.""",
)  # fmt: skip
Observe = _node_type("Observe", nodes.Expr, ("index", "node"), """``node``'s value, recorded as observation ``index`` of the current iteration.""")
PosRead = _node_type(
    "PosRead", nodes.Expr, ("node", "arg"),
    """``messages[arg]`` inside an observation, ``arg`` computed from ``loop.index0``/``loop.index`` and
    constants: compiled as jinja compiles the subscript, the index read reported to ``render_memo.pos``.""",
)  # fmt: skip

#: observation kinds, or-ed per observation (:class:`~sftdata.masking.render_memo_analysis.LoopAnalysis`
#: assigns them): NEXT ``loop.last``/``loop.nextitem``; NS a namespace attribute the body does not
#: write; OTHER ``messages`` (or a name assigned from it), ``loop.length``, ``loop.revindex``; POS
#: ``messages[i]`` at an index computed from ``loop.index0``
NEXT, NS, OTHER, POS = 1, 2, 4, 8
