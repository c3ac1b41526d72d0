"""Static analysis of one top-level ``{% for %}`` body for the render memo: the checks of the fallback
rule, the stable key expressions, and the rewrite that wraps observations in :class:`Observe` nodes
(:mod:`sftdata.masking.render_memo` describes the mechanism, the exactness argument and the fallback
rule; :func:`~sftdata.masking.render_memo_plan.plan` runs this on every candidate loop).
"""

from __future__ import annotations

import jinja2.nodes as nodes

from .jinja_nodes import clone
from .render_memo_nodes import NEXT, NS, OTHER, POS, Observe, PosRead

__all__ = ["Ineligible", "LoopAnalysis"]


#: loop attributes that are the same in every render reaching that iteration
_LOOP_STABLE = frozenset({"index0", "index", "first", "previtem", "depth", "depth0"})
#: loop attributes that depend on the number of items (the prefix length)
_LOOP_VOLATILE = frozenset({"last", "length", "revindex", "revindex0", "nextitem"})
#: global functions a body may call (pure, or raising)
_SAFE_CALLS = frozenset({"raise_exception", "namespace", "dict", "range", "strftime_now"})
_PURE_EXPR = (
    nodes.Const, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Compare, nodes.Operand,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div,
    nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Concat, nodes.CondExpr, nodes.Test, nodes.Filter,
    nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword,
)  # fmt: skip
_FORBIDDEN_STMTS = (
    nodes.Macro, nodes.Import, nodes.FromImport, nodes.Include, nodes.Extends, nodes.Block, nodes.Scope,
    nodes.OverlayScope, nodes.EvalContextModifier, nodes.ScopedEvalContextModifier,
)  # fmt: skip


class Ineligible(Exception):
    """The loop runs plainly; the message says why (it becomes the loop's ``LoopPlan.reason``)."""


def _store_names(node: nodes.Node) -> set[str]:
    return {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")}


class LoopAnalysis:
    """Checks one loop body and rewrites it (see :mod:`sftdata.masking.render_memo`)."""

    def __init__(self, loop: nodes.For, ns_names: set[str], volatile: set[str], assigned: set[str], filters: set[str], gen_ext: str | None) -> None:
        self.loop = loop
        self.targets = {n.name for n in loop.target.find_all(nodes.Name)}
        self.local = _store_names(nodes.Template(loop.body)) - self.targets
        self.assigned_anywhere = assigned
        self.filters = filters
        self.gen_ext = gen_ext
        # namespace writes: {% set base.attr = … %}
        self.written: set[str] = set()
        self.bases: list[str] = []
        for body_node in loop.body:
            for ref in body_node.find_all(nodes.NSRef):
                if ref.name in self.local or ref.name in self.targets:
                    raise Ineligible(f"line {ref.lineno}: namespace write on {ref.name!r}, a name the loop body assigns")
                self.written.add(ref.attr)
                if ref.name not in self.bases:
                    self.bases.append(ref.name)
        self.ns_names = (ns_names | set(self.bases)) - self.local - self.targets
        self.volatile_names = volatile - self.local - self.targets - self.ns_names
        self.stable: dict[str, nodes.Expr] = {}  # a key per distinct expression (by its dump)
        self.observed: list[nodes.Expr] = []
        self.kinds: list[int] = []  # per observation: NEXT | NS | OTHER
        self.cmps: list[tuple | None] = []  # per observation: (ns_reads index, op, offset) for ``loop.index0 <op> ns.attr``
        self.ns_reads: dict[str, nodes.Expr] = {}

    # -- stable keys ------------------------------------------------------------------------
    def add_stable(self, expr: nodes.Expr) -> None:
        """Make ``expr`` part of the iteration's stable key (once per distinct expression)."""
        self.stable.setdefault(repr(expr), clone(expr))

    # -- checks + classification, scope-aware ------------------------------------------------
    def check(self, node: nodes.Node, loop_is_ours: bool = True, in_inner: bool = False) -> None:
        """Raise :class:`Ineligible` on a construct outside the fallback rule; record stable keys."""
        if isinstance(node, _FORBIDDEN_STMTS):
            raise Ineligible(f"line {node.lineno}: {type(node).__name__} inside the loop body")
        if isinstance(node, (nodes.Break, nodes.Continue)) and not in_inner:
            raise Ineligible(f"line {node.lineno}: {{% {type(node).__name__.lower()} %}} of the memoised loop")
        if isinstance(node, nodes.For):
            if node.recursive:
                raise Ineligible(f"line {node.lineno}: recursive inner loop")
            self.check(node.target, loop_is_ours, in_inner)
            self.check(node.iter, loop_is_ours, in_inner)
            for child in node.body + node.else_ + ([node.test] if node.test else []):
                self.check(child, False, True)
            return
        if isinstance(node, nodes.CallBlock):
            if not self._is_generation(node.call):
                raise Ineligible(f"line {node.lineno}: call block inside the loop body")
            for child in node.body:
                self.check(child, loop_is_ours, in_inner)
            return
        if isinstance(node, (nodes.FilterBlock, nodes.Filter)) and node.name == "random":
            raise Ineligible(f"line {node.lineno}: the random filter")
        if isinstance(node, nodes.Filter) and node.name not in self.filters:
            raise Ineligible(f"line {node.lineno}: unknown filter {node.name!r}")
        if isinstance(node, nodes.Call):
            self._check_call(node, loop_is_ours)
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            name = node.node.name
            if name == "loop" and loop_is_ours:
                self._loop_attr(node.attr, node.lineno)
                return
            if name in self.ns_names:
                if node.attr in self.written:
                    self.add_stable(node)
                else:
                    self.ns_reads.setdefault(repr(node), clone(node))
                return
        if isinstance(node, nodes.Name) and node.ctx == "load":
            self._name(node, loop_is_ours)
            return
        for child in node.iter_child_nodes():
            self.check(child, loop_is_ours, in_inner)

    def _is_generation(self, call: nodes.Node) -> bool:
        return (
            isinstance(call, nodes.Call)
            and isinstance(call.node, nodes.ExtensionAttribute)
            and call.node.identifier == self.gen_ext
            and call.node.name == "_render"
            and not call.args and not call.kwargs and call.dyn_args is None and call.dyn_kwargs is None
        )  # fmt: skip

    def _check_call(self, node: nodes.Call, loop_is_ours: bool) -> None:
        fn = node.node
        if isinstance(fn, nodes.Getattr):
            if isinstance(fn.node, nodes.Name) and fn.node.name == "loop" and loop_is_ours:
                if fn.attr != "cycle":
                    raise Ineligible(f"line {node.lineno}: loop.{fn.attr}(…)")
                self.add_stable(nodes.Getattr(nodes.Name("loop", "load"), "index0", "load"))
            return
        if isinstance(fn, nodes.Name) and fn.name in _SAFE_CALLS and fn.name not in self.assigned_anywhere:
            return
        raise Ineligible(f"line {node.lineno}: call of {_describe(fn)} inside the loop body")

    def _loop_attr(self, attr: str, lineno: int) -> None:
        if attr in _LOOP_STABLE:
            self.add_stable(nodes.Getattr(nodes.Name("loop", "load"), attr, "load"))
        elif attr not in _LOOP_VOLATILE and attr != "cycle":
            raise Ineligible(f"line {lineno}: loop.{attr}")

    def _name(self, node: nodes.Name, loop_is_ours: bool) -> None:
        name = node.name
        if name == "loop" and loop_is_ours:
            raise Ineligible(f"line {node.lineno}: the loop variable used whole")
        if name == "loop":
            return  # an inner loop's
        if name in self.ns_names:
            raise Ineligible(f"line {node.lineno}: namespace {name!r} used other than as {name}.attr")
        if name in self.volatile_names:
            return  # covered by an observation
        if name in ("caller", "varargs", "kwargs", "self"):
            raise Ineligible(f"line {node.lineno}: {name!r} inside the loop body")
        self.add_stable(nodes.Name(name, "load"))  # targets, outer names, and assigned names' start values

    # -- hoisting ---------------------------------------------------------------------------
    def _info(self, node: nodes.Node, loop_is_ours: bool) -> tuple[bool, bool]:
        """``(hoistable, volatile)``: side-effect free reading nothing the body assigns; reads a
        value that differs between renders."""
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            name = node.node.name
            if name == "loop":
                if not loop_is_ours:
                    return False, False
                return node.attr in _LOOP_STABLE or node.attr in _LOOP_VOLATILE, node.attr in _LOOP_VOLATILE
            if name in self.ns_names:
                return node.attr not in self.written, node.attr not in self.written
        if isinstance(node, nodes.Name):
            if node.ctx != "load" or node.name in self.local or node.name == "loop" or node.name in self.ns_names:
                return False, False
            return True, node.name in self.volatile_names
        if not isinstance(node, _PURE_EXPR) or (isinstance(node, nodes.Filter) and (node.node is None or node.name == "random")):
            return False, False
        hoistable, volatile = True, False
        for child in node.iter_child_nodes():
            h, v = self._info(child, loop_is_ours)
            hoistable &= h
            volatile |= v
        return hoistable, volatile

    def rewrite(self, node: nodes.Node, loop_is_ours: bool = True) -> None:
        """Wrap the largest hoistable expressions that read a volatile value in :class:`Observe`."""
        for fname in node.fields:
            value = getattr(node, fname)
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, nodes.Node):
                        value[i] = self._rewrite_child(child, node, fname, loop_is_ours)
            elif isinstance(value, nodes.Node):
                setattr(node, fname, self._rewrite_child(value, node, fname, loop_is_ours))

    def _rewrite_child(self, child: nodes.Node, parent: nodes.Node, fname: str, loop_is_ours: bool) -> nodes.Node:
        ours = loop_is_ours and not (isinstance(parent, nodes.For) and fname in ("body", "else_", "test"))
        if isinstance(child, nodes.Expr):
            hoistable, volatile = self._info(child, ours)
            if hoistable and volatile:
                if isinstance(child, nodes.Name):
                    raise Ineligible(f"line {child.lineno}: {child.name!r} (a new value every render) used whole inside the loop body")
                child = self._pos_reads(child)
                self.observed.append(clone(child))
                self.kinds.append(self._kind(child))
                self.cmps.append(self._cmp(child))
                return Observe(len(self.observed) - 1, child, lineno=child.lineno)
            if hoistable:
                return child
        self.rewrite(child, ours)
        return child


    def _stable_index(self, node: nodes.Node) -> bool:
        """An index computed from ``loop.index0``/``loop.index`` and integer constants only (the same
        at iteration ``i`` of every render)."""
        if isinstance(node, nodes.Const):
            return type(node.value) is int
        if isinstance(node, nodes.Getattr):
            return isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr in ("index0", "index")
        if isinstance(node, (nodes.Add, nodes.Sub)):
            return self._stable_index(node.left) and self._stable_index(node.right)
        if isinstance(node, (nodes.Neg, nodes.Pos)):
            return self._stable_index(node.node)
        return False

    def _pos_reads(self, expr: nodes.Node) -> nodes.Node:
        """``expr`` with every ``messages[i]`` whose index is :meth:`_stable_index` made a
        :class:`PosRead` (``messages`` being the render's own list: not assigned by the template)."""
        if (
            isinstance(expr, nodes.Getitem) and not isinstance(expr.arg, nodes.Slice) and isinstance(expr.node, nodes.Name)
            and expr.node.name == "messages" and "messages" not in self.assigned_anywhere and self._stable_index(expr.arg)
        ):  # fmt: skip
            return PosRead(expr.node, expr.arg, lineno=expr.lineno)
        for fname in expr.fields:
            value = getattr(expr, fname)
            if isinstance(value, list):
                value[:] = [self._pos_reads(v) if isinstance(v, nodes.Node) else v for v in value]
            elif isinstance(value, nodes.Node):
                setattr(expr, fname, self._pos_reads(value))
        return expr

    def _kind(self, expr: nodes.Expr) -> int:
        """What makes an observation differ between renders: :data:`NEXT` (``loop.last``,
        ``loop.nextitem``), :data:`NS` (a namespace attribute the body does not write),
        :data:`POS` (``messages[i]`` at an index ``i`` computed from ``loop.index0``: the same object
        in two renders when ``i`` is below the length both lists share), :data:`OTHER` (``messages``
        otherwise, or a name assigned from it, ``loop.length``, ``loop.revindex``)."""
        kind = 0
        getattrs = [expr] if isinstance(expr, nodes.Getattr) else []
        for n in getattrs + list(expr.find_all(nodes.Getattr)):  # find_all leaves out the node itself
            if isinstance(n.node, nodes.Name):
                if n.node.name == "loop":
                    kind |= NEXT if n.attr in ("last", "nextitem") else OTHER if n.attr in _LOOP_VOLATILE else 0
                elif n.node.name in self.ns_names:
                    kind |= NS
        positional = [p.node for p in expr.find_all(PosRead)]
        if positional:
            kind |= POS
        names = [expr] if isinstance(expr, nodes.Name) else []
        if any(n.name in self.volatile_names and not any(n is q for q in positional) for n in names + list(expr.find_all(nodes.Name))):
            kind |= OTHER
        return kind


    def _cmp(self, expr: nodes.Expr) -> tuple | None:
        """``(ns_reads index, op, offset)`` when ``expr`` is ``loop.index0 <op> ns.attr`` (or
        ``loop.index``, offset 1; either side), op normalised to the loop side on the left."""
        if not (isinstance(expr, nodes.Compare) and len(expr.ops) == 1 and expr.ops[0].op in _FLIP):
            return None
        left, op, right = expr.expr, expr.ops[0].op, expr.ops[0].expr

        def loop_attr(n: nodes.Node) -> int | None:
            if isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name == "loop" and n.attr in ("index0", "index"):
                return 0 if n.attr == "index0" else 1
            return None

        def ns_attr(n: nodes.Node) -> int | None:
            if isinstance(n, nodes.Getattr) and isinstance(n.node, nodes.Name) and n.node.name in self.ns_names and n.attr not in self.written:
                return list(self.ns_reads).index(repr(n)) if repr(n) in self.ns_reads else None
            return None

        if loop_attr(left) is not None and ns_attr(right) is not None:
            return (ns_attr(right), op, loop_attr(left))
        if loop_attr(right) is not None and ns_attr(left) is not None:
            return (ns_attr(left), _FLIP[op], loop_attr(right))
        return None


#: comparison operators and their mirror (``a < b`` is ``b > a``)
_FLIP = {"gt": "lt", "lt": "gt", "gteq": "lteq", "lteq": "gteq"}


def _describe(fn: nodes.Node) -> str:
    if isinstance(fn, nodes.Name):
        return repr(fn.name)
    return type(fn).__name__
