"""What the render memo does with a parsed template: :func:`plan` finds the top-level loops, runs the
analysis on each (:class:`~sftdata.masking.render_memo_analysis.LoopAnalysis`) and replaces an
eligible loop's body by a :class:`~sftdata.masking.render_memo_nodes.MemoIteration`; one
:class:`LoopPlan` per loop says what it decided (:mod:`sftdata.masking.render_memo` describes the
mechanism).
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
import jinja2.nodes as nodes

from .render_memo_analysis import Ineligible, LoopAnalysis
from .render_memo_nodes import MemoIteration
from .render_scan import rewrite_scans, scan_guard

__all__ = ["LoopPlan", "plan"]


@dataclass(frozen=True)
class LoopPlan:
    """What :func:`plan` decided for one top-level ``{% for %}`` (line ``lineno``).

    Attributes:
        memoised: the loop's iterations are memoised.
        reason: why not (empty when memoised).
        stable: how many stable key expressions; observed: how many observation expressions.
        kinds: per observation, its kind (:data:`~sftdata.masking.render_memo_nodes.NEXT`,
            ``NS``, ``OTHER``, ``POS``, or-ed); cmps: per observation, ``(ns_reads index, op, offset)``
            when it is ``loop.index0 <op> ns.attr``, else ``None``.
        scan: the loop is a guarded scan that stops at its first iteration whose guard is false
            (:mod:`sftdata.masking.render_scan`; such a loop is not memoised).
    """

    lineno: int
    memoised: bool
    reason: str = ""
    stable: int = 0
    observed: int = 0
    kinds: tuple[int, ...] = ()
    cmps: tuple = ()
    scan: bool = False


def _template_names(root: nodes.Template) -> tuple[set[str], set[str], set[str]]:
    """``(namespace names, volatile names, every assigned name)`` of the whole template."""
    assigns: dict[str, list[nodes.Node]] = {}
    ns_names: set[str] = set()
    for node in root.find_all((nodes.Assign, nodes.AssignBlock)):
        targets = [n.name for n in node.target.find_all(nodes.Name)] if not isinstance(node.target, nodes.Name) else [node.target.name]
        value = node.node if isinstance(node, nodes.Assign) else node
        for t in targets:
            assigns.setdefault(t, []).append(value)
            if isinstance(node, nodes.Assign) and isinstance(node.node, nodes.Call) and isinstance(node.node.node, nodes.Name) and node.node.node.name == "namespace":
                ns_names.add(t)
    volatile = {"messages"}
    changed = True
    while changed:
        changed = False
        for name, values in assigns.items():
            if name in volatile:
                continue
            if any(n.name in volatile for v in values for n in v.find_all(nodes.Name) if n.ctx == "load"):
                volatile.add(name)
                changed = True
    every = set(assigns) | {n.name for n in root.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return ns_names, volatile, every


def _top_loops(root: nodes.Template) -> tuple[list[nodes.For], list[nodes.For]]:
    """``(candidates, others)``: loops whose ancestors are only ``{% if %}`` blocks, and the rest."""
    top: list[nodes.For] = []

    def walk(stmts: list[nodes.Node]) -> None:
        for s in stmts:
            if isinstance(s, nodes.For):
                top.append(s)
            elif isinstance(s, nodes.If):
                walk(s.body)
                for e in s.elif_:
                    walk([e])
                walk(s.else_)

    walk(root.body)
    ids = {id(f) for f in top}
    others = [f for f in root.find_all(nodes.For) if id(f) not in ids]
    return top, others


def plan(root: nodes.Template, environment: jinja2.Environment) -> list[LoopPlan]:
    """Rewrite ``root`` in place so that its eligible top-level loops are memoised.

    Returns:
        one :class:`LoopPlan` per top-level loop (in source order).
    """
    ns_names, volatile, assigned = _template_names(root)
    gen_ext = next((ext.identifier for ext in environment.extensions.values() if "generation" in getattr(ext, "tags", ())), None)
    filters = set(environment.filters)
    loops, _ = _top_loops(root)
    scans = {id(loop) for loop in root.find_all(nodes.For) if scan_guard(loop, assigned) is not None}
    rewrite_scans(root, assigned)
    plans: list[LoopPlan] = []
    for loop_id, loop in enumerate(loops):
        if id(loop) in scans:
            plans.append(LoopPlan(loop.lineno, False, "a guarded scan: it stops at its first iteration whose guard is false", scan=True))
            continue
        try:
            if loop.recursive:
                raise Ineligible("recursive loop")
            a = LoopAnalysis(loop, ns_names, volatile, assigned, filters, gen_ext)
            a.check(nodes.Template(loop.body))
            for name in a.targets:
                a.add_stable(nodes.Name(name, "load"))
            a.add_stable(nodes.Getattr(nodes.Name("loop", "load"), "index0", "load"))
            body = nodes.Template(loop.body)
            a.rewrite(body)
        except Ineligible as e:
            plans.append(LoopPlan(loop.lineno, False, str(e)))
            continue
        stable = list(a.stable.values())
        bases = [nodes.Name(b, "load") for b in a.bases]
        ns_reads = list(a.ns_reads.values())
        for n in stable + a.observed + bases + ns_reads:
            n.set_lineno(loop.lineno, override=False)
            n.set_environment(environment)
        loop.body = [MemoIteration(loop_id, stable, a.observed, bases, ns_reads, body.body, lineno=loop.lineno).set_environment(environment)]
        plans.append(LoopPlan(loop.lineno, True, "", len(stable), len(a.observed), tuple(a.kinds), tuple(a.cmps)))
    return plans
