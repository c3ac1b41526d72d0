"""Guarded scans: a loop that stops at the first iteration whose guard is false (exact).

Qwen3's chat template (and Qwen3.5's, StepFun's) finds the last user query with a reverse scan::

    {%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
    {%- for message in messages[::-1] %}
        {%- set index = (messages|length - 1) - loop.index0 %}
        {%- if ns.multi_step_tool and message.role == "user" and … %}
            {%- set ns.multi_step_tool = false %}
            {%- set ns.last_query_index = index %}
        {%- endif %}
    {%- endfor %}

Once ``ns.multi_step_tool`` is false the remaining iterations do nothing, yet jinja runs them all:
every render of ``m[:k]`` walks all ``k`` messages, so a conversation's renders cost O(N²)
iterations (on Qwen3's template, 2,000 messages: 2 million iterations, 85% of prepare's time).
:func:`rewrite_scans` adds, at the start of such a loop's body, a statement that leaves the loop
when the guard is false (:data:`ScanExit`, compiled to ``if not (guard): break``).

When the rewrite applies (:func:`scan_guard`), and why it is exact
------------------------------------------------------------------
The loop has no ``{% else %}``, no inline filter (``for x in y if …``, evaluated per item), is not
recursive, and iterates ``messages`` or a slice of it with constant bounds, or ``messages|reverse``
(``messages`` not assigned by the template: the list the renderer passes, so iterating it raises
nothing). Its body is, in order: ``{% set name = value %}`` statements, then one ``{% if %}``
without ``elif``/``else``, and nothing else (no output, not even whitespace). Each ``value``
cannot raise and has no effect: a constant, a name, a loop attribute, ``messages|length``, or
integer arithmetic (``+``, ``-``, ``*``, unary ``-``) of constant integers, integer loop
attributes and ``messages|length``. The ``if`` test is ``G`` or ``G and …`` (the left-most
operand of an ``and`` chain), where ``G`` is ``ns.attr`` or ``not ns.attr`` (``attr`` not starting
with ``_``), and neither the loop target nor the ``set`` statements rebind ``ns``.

Proof: at an iteration where ``G`` is false, the ``set`` statements bind loop-local names (jinja
scopes them to the iteration) and raise nothing, the ``if`` test is false without evaluating
anything after ``G`` (``and`` short-circuits) and no branch runs: the iteration writes nothing and
outputs nothing, so the namespace is unchanged and ``G`` is false again at the next iteration (it
reads only ``ns.attr``, which only the skipped branch could write). By induction every remaining
iteration does nothing; leaving the loop there gives the same output, namespace and errors.
``G`` itself is evaluated where jinja evaluates it (after the ``set`` statements, which raise
nothing): an error it raises is raised the same.

A scan over ``messages[::-1]`` also iterates ``messages|reverse`` instead (jinja's ``reverse``
filter gives ``reversed(messages)``): the same items in the same order, and neither raises on the
list the renderer passes, but no copy of the list is made, so a scan that stops after a few
iterations costs O(1), not O(messages) (the loop's ``loop.length``/``loop.last``, if the body read
them, are computed by jinja from the iterator as for any iterable: the same values).

A scan whose guard stays true down to the first message still walks every message; when the
rest of its test is item-pure (:func:`_memo_rest`), its test is compiled as ``guard and
ScanVerdict(rest)`` and the scan memo skips the positions already found false
(:mod:`sftdata.masking.render_scan_memo`).

The rewrite is applied with the render memo (:mod:`sftdata.masking.render_memo`), so
``ChatTemplate(memo=False)`` / ``SFTDATA_RENDER_MEMO=0`` render as jinja compiles the template.
"""

from __future__ import annotations

from typing import Any

import jinja2.nodes as nodes

from .jinja_nodes import clone, node_type

__all__ = ["ScanExit", "ScanVerdict", "rewrite_scans", "scan_guard"]

#: loop attributes that are integers
_INT_LOOP_ATTRS = frozenset({"index0", "index", "revindex", "revindex0", "length", "depth", "depth0"})
#: loop attributes a ``set`` may bind whole (reading them raises nothing)
_LOOP_ATTRS = _INT_LOOP_ATTRS | {"first", "last"}


ScanExit = node_type("ScanExit", nodes.Stmt, ("test", "scan_id", "loop_ref"), """Leave the enclosing loop when ``test`` is false
(``if not (test): break``); with a ``scan_id``, then skip the iterations the scan memo knows do
nothing (:mod:`sftdata.masking.render_scan_memo`).""", __name__)
ScanVerdict = node_type("ScanVerdict", nodes.Expr, ("scan_id", "node", "loop_ref"), """The rest of a memoised scan's test (after its
guard): its value, passed through the scan memo, which notes the items it is false for.""", __name__)


def _is_messages(node: nodes.Node, assigned: set[str]) -> bool:
    return isinstance(node, nodes.Name) and node.name == "messages" and node.ctx == "load" and "messages" not in assigned


def _int_expr(node: nodes.Node, assigned: set[str]) -> bool:
    """An integer-valued expression whose evaluation raises nothing."""
    if isinstance(node, nodes.Const):
        return type(node.value) is int
    if isinstance(node, nodes.Getattr):
        return isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr in _INT_LOOP_ATTRS
    if isinstance(node, nodes.Filter):
        plain = not node.args and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None
        return plain and node.name in ("length", "count") and node.node is not None and _is_messages(node.node, assigned)
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul)):
        return _int_expr(node.left, assigned) and _int_expr(node.right, assigned)
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        return _int_expr(node.node, assigned)
    return False


def _safe_value(node: nodes.Node, assigned: set[str]) -> bool:
    """A ``set`` value whose evaluation raises nothing and has no effect."""
    if isinstance(node, nodes.Const) or (isinstance(node, nodes.Name) and node.ctx == "load"):
        return True
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "loop":
        return node.attr in _LOOP_ATTRS
    return _int_expr(node, assigned)


def _const_int(node: nodes.Node) -> bool:
    """An integer constant, possibly negated (``-1`` parses as ``Neg(Const(1))``)."""
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        node = node.node
    return isinstance(node, nodes.Const) and type(node.value) is int


def _safe_iterable(node: nodes.Node, assigned: set[str]) -> bool:
    """``messages``, ``messages[a:b:c]`` with constant (or absent) bounds, ``messages|reverse``."""
    if _is_messages(node, assigned):
        return True
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice) and _is_messages(node.node, assigned):
        parts = (node.arg.start, node.arg.stop, node.arg.step)
        return all(p is None or _const_int(p) for p in parts)
    if isinstance(node, nodes.Filter) and node.name == "reverse" and node.node is not None:
        plain = not node.args and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None
        return plain and _is_messages(node.node, assigned)
    return False


def _ns_read(node: nodes.Node) -> str | None:
    """The namespace name of ``ns.attr`` / ``not ns.attr``, else ``None``."""
    if isinstance(node, nodes.Not):
        node = node.node
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load" and not node.attr.startswith("_"):
        return node.node.name
    return None


def scan_guard(loop: nodes.For, assigned: set[str]) -> nodes.Expr | None:
    """The guard ``G`` of a guarded scan (see the module doc), or ``None`` when the loop is not one.

    Args:
        loop: a ``{% for %}`` node.
        assigned: every name the template assigns anywhere (``messages`` must not be one).
    """
    if loop.recursive or loop.else_ or loop.test is not None or not loop.body or not _safe_iterable(loop.iter, assigned):
        return None
    *sets, last = loop.body
    if not isinstance(last, nodes.If) or last.elif_ or last.else_:
        return None
    bound = {n.name for n in loop.target.find_all(nodes.Name)}
    for s in sets:
        if not (isinstance(s, nodes.Assign) and isinstance(s.target, nodes.Name) and _safe_value(s.node, assigned)):
            return None
        bound.add(s.target.name)
    guard = _and_operands(last.test)[0]
    name = _ns_read(guard)
    if name is None or name in bound or name == "loop":
        return None
    return guard


#: jinja tests and filters that read their argument only (no environment state, no side effect)
_PURE_TESTS = frozenset({
    "defined", "undefined", "none", "string", "number", "mapping", "sequence", "iterable", "boolean", "integer",
    "float", "true", "false", "lower", "upper", "eq", "ne", "equalto", "in", "sameas", "odd", "even",
    "divisibleby", "lt", "le", "gt", "ge", "lessthan", "greaterthan",
})
_PURE_FILTERS = frozenset({"length", "count", "lower", "upper", "trim", "string", "first", "last"})
_LOOP_LINEAR = {"index0": (0, 1, 0), "index": (0, 1, 1), "revindex0": (1, -1, -1), "revindex": (1, -1, 0), "length": (1, 0, 0)}


def _linear(node: nodes.Node, assigned: set[str]) -> tuple[int, int, int] | None:
    """``(a, b, c)`` with ``node == a * L + b * loop.index0 + c`` (``L`` = ``messages|length``), or ``None``."""
    if isinstance(node, nodes.Const) and type(node.value) is int:
        return 0, 0, node.value
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "loop":
        return _LOOP_LINEAR.get(node.attr)
    if isinstance(node, nodes.Filter) and node.name in ("length", "count") and _int_expr(node, assigned):
        return 1, 0, 0
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        x = _linear(node.node, assigned)
        return None if x is None else (x if isinstance(node, nodes.Pos) else (-x[0], -x[1], -x[2]))
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul)):
        x, y = _linear(node.left, assigned), _linear(node.right, assigned)
        if x is None or y is None:
            return None
        if isinstance(node, nodes.Mul):
            if x[:2] == (0, 0):
                return x[2] * y[0], x[2] * y[1], x[2] * y[2]
            return (y[2] * x[0], y[2] * x[1], y[2] * x[2]) if y[:2] == (0, 0) else None
        sign = 1 if isinstance(node, nodes.Add) else -1
        return x[0] + sign * y[0], x[1] + sign * y[1], x[2] + sign * y[2]
    return None


def _item_pure(node: Any, names: set[str]) -> bool:
    """Whether ``node`` reads only the names ``names`` (the loop item, and values that depend on the
    item's position in ``messages`` alone), constants, their fields and items, pure ``str``
    methods, tests and filters: the same value, or the same error, at every render that iterates
    the same item."""
    from .template_env import PURE_STR_METHODS

    if node is None or isinstance(node, nodes.Const):
        return True
    if isinstance(node, nodes.Name):
        return node.ctx == "load" and node.name in names
    if isinstance(node, nodes.Getattr):
        return not node.attr.startswith("_") and _item_pure(node.node, names)
    if isinstance(node, nodes.Getitem):
        return _item_pure(node.node, names) and _item_pure(node.arg, names)
    if isinstance(node, nodes.Slice):
        return all(_item_pure(x, names) for x in (node.start, node.stop, node.step))
    if isinstance(node, nodes.Call):
        f = node.node
        return (isinstance(f, nodes.Getattr) and f.attr in PURE_STR_METHODS and _item_pure(f.node, names) and not node.kwargs
                and node.dyn_args is None and node.dyn_kwargs is None and all(_item_pure(a, names) for a in node.args))
    if isinstance(node, (nodes.Test, nodes.Filter)):
        pure = _PURE_TESTS if isinstance(node, nodes.Test) else _PURE_FILTERS
        return (node.name in pure and _item_pure(node.node, names) and not node.kwargs and node.dyn_args is None
                and node.dyn_kwargs is None and all(_item_pure(a, names) for a in node.args))
    if isinstance(node, nodes.Compare):
        return _item_pure(node.expr, names) and all(_item_pure(op.expr, names) for op in node.ops)
    if isinstance(node, (nodes.And, nodes.Or, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod)):
        return _item_pure(node.left, names) and _item_pure(node.right, names)
    if isinstance(node, (nodes.Not, nodes.Neg, nodes.Pos)):
        return _item_pure(node.node, names)
    if isinstance(node, nodes.Concat):
        return all(_item_pure(x, names) for x in node.nodes)
    if isinstance(node, nodes.CondExpr):
        return all(_item_pure(x, names) for x in (node.test, node.expr1, node.expr2))
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return all(_item_pure(x, names) for x in node.items)
    return False


def _memo_rest(loop: nodes.For, assigned: set[str]) -> nodes.Expr | None:
    """For a guarded scan over ``messages|reverse``: the rest of its test after the guard, when that
    rest is item-pure (:func:`_item_pure`; ``set`` names count only when their value is a
    function of the item's position alone: ``(messages|length - 1) - loop.index0``), else ``None``."""
    if not isinstance(loop.target, nodes.Name) or not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == "reverse"):
        return None
    *sets, last = loop.body
    names = {loop.target.name}
    for st in sets:
        if not isinstance(st, nodes.Assign) or not isinstance(st.target, nodes.Name):
            continue
        lin = _linear(st.node, assigned)
        if lin is not None and lin[0] + lin[1] == 0:  # a*L + b*index0 + c with index0 = L - 1 - i: no L
            names.add(st.target.name)
        else:
            names.discard(st.target.name)
    _, *rest = _and_operands(last.test)
    if not rest or not all(_item_pure(r, names) for r in rest):
        return None
    out = rest[0]
    for r in rest[1:]:
        out = nodes.And(out, r, lineno=r.lineno)
    return out


def _whole_reverse(node: nodes.Node) -> bool:
    """``x[::-1]``: a slice without bounds and with step ``-1``."""
    if not (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice)):
        return False
    step = node.arg.step
    return node.arg.start is None and node.arg.stop is None and step is not None and _linear(step, set()) == (0, 0, -1)


def _and_operands(test: nodes.Expr) -> list[nodes.Expr]:
    """The operands of an ``a and b and …`` chain (left-associated), left-most first."""
    rest: list[nodes.Expr] = []
    while isinstance(test, nodes.And):
        rest.append(test.right)
        test = test.left
    return [test, *reversed(rest)]


def rewrite_scans(root: nodes.Template, assigned: set[str]) -> list[int]:
    """Add a :data:`ScanExit` at the start of every guarded scan's body in ``root`` (in place);
    a scan over ``messages[::-1]`` iterates ``messages|reverse`` (see the module doc).

    Args:
        root: the parsed template.
        assigned: every name the template assigns.

    Returns:
        the source line of every loop rewritten.
    """
    lines = []
    scan_id = 0
    for loop in list(root.find_all(nodes.For)):
        guard = scan_guard(loop, assigned)
        if guard is None:
            continue
        if _whole_reverse(loop.iter):
            lazy = nodes.Filter(loop.iter.node, "reverse", [], [], None, None, lineno=loop.iter.lineno)
            lazy.set_environment(loop.environment)
            loop.iter = lazy
        rest = _memo_rest(loop, assigned)
        # ``loop_ref``: a ``loop`` read in the tree, so that jinja gives the loop its LoopContext
        exit_ = ScanExit(clone(guard), None if rest is None else scan_id, None if rest is None else nodes.Name("loop", "load"), lineno=loop.lineno)
        exit_.set_environment(loop.environment)
        exit_.set_lineno(loop.lineno, override=False)
        if rest is not None:  # test = guard and verdict(rest): the same value, in the same order
            last = loop.body[-1]
            verdict = ScanVerdict(scan_id, rest, nodes.Name("loop", "load"), lineno=last.lineno)
            last.test = nodes.And(guard, verdict, lineno=last.lineno)
            last.test.set_environment(loop.environment)
            last.test.set_lineno(last.lineno, override=False)
            scan_id += 1
        loop.body.insert(0, exit_)
        lines.append(loop.lineno)
    return lines


def compile_scan_exit(generator: Any, node: Any, frame: Any) -> None:
    """Code for a :data:`ScanExit` (called by the code generator's ``visit_ScanExit``)."""
    generator.writeline("if not (", node)
    generator.visit(node.test, frame)
    generator.write("):")
    generator.indent()
    generator.writeline("break")
    generator.outdent()
    if node.scan_id is not None:
        generator.writeline(f"if environment.render_memo.scans.skip({node.scan_id}, ", node)
        generator.visit(node.loop_ref, frame)
        generator.write(", environment.render_memo.render_lists):")
        generator.indent()
        generator.writeline("continue")
        generator.outdent()


def compile_scan_verdict(generator: Any, node: Any, frame: Any) -> None:
    """Code for a :data:`ScanVerdict` (called by the code generator's ``visit_ScanVerdict``)."""
    generator.write(f"environment.render_memo.scans.verdict({node.scan_id}, ")
    generator.visit(node.loop_ref, frame)
    generator.write(", environment.render_memo.render_lists, ")
    generator.visit(node.node, frame)
    generator.write(")")
