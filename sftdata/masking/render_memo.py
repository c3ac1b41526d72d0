"""Memoised loop iterations for chat-template renders of one conversation (issue 16, build item 1).

Masking renders one conversation many times: ``render(m[:k], add_generation_prompt=True)`` and
``render(m[:k+1])`` for every trained turn ``k``, plus a few variants. Every render runs the
template's loop over ``messages`` from the start, so one conversation costs O(N²) loop iterations.
This module lets such a loop skip the iterations whose output is already known: an iteration's
output and its namespace writes are recorded, keyed on everything the iteration can read, and
replayed when a later render of the same conversation reaches an iteration with the same key.

Mechanism
---------
:func:`plan` rewrites the parsed template (``jinja2.nodes``) before it is compiled:

* **Which loops.** A ``{% for %}`` at the template's top level (its ancestors are only ``{% if %}``
  blocks) whose body passes the checks below is *memoised*; every other loop, and every loop
  that fails a check, runs exactly as jinja compiles it (``LoopPlan.reason`` says why).
* **What an iteration reads.** Every name the body reads is classified (scoping as jinja's:
  ``{% set %}`` inside the body does not carry from one iteration to the next, so only namespace
  attribute writes, ``{% set ns.x = … %}``, escape an iteration):

  - *stable key* parts, evaluated at the start of the iteration and compared by value (strings,
    numbers, ``None``, booleans) or by identity (dicts, lists, tuples that hold only such plain
    data, and functions): the loop target (the message), ``loop.index0``, ``loop.first``,
    ``loop.previtem``…, the outer variables the body reads (``tools``, ``add_generation_prompt``,
    template kwargs, special tokens, ``strftime_now``…), the start value of every name the body
    assigns and reads (a read before the ``{% set %}`` sees the outer value), and the start value
    of every namespace attribute the body both writes and reads;
  - *observations*: reads whose value differs from render to render of one conversation —
    ``messages`` (a new list each render) and the names assigned from it at top level, the
    loop attributes that depend on the prefix length (``loop.last``, ``loop.length``,
    ``loop.revindex``, ``loop.revindex0``, ``loop.nextitem``) and the namespace attributes the body
    reads but never writes (``ns.last_query_index``). Each is wrapped, together with the largest
    side-effect-free expression around it that reads nothing the body assigns
    (``loop.index0 > ns.last_query_index``, ``loop.last or messages[loop.index0 + 1].role != "tool"``),
    in an :class:`Observe` node. Such an expression has the same value anywhere in the iteration
    (its inputs do not change during it), so its value at the start of the iteration is the value
    the body sees.

* **Recording and replay** (:class:`RenderMemo`, installed as ``environment.render_memo``): the
  iteration runs with its output collected in a buffer, every observation's value is recorded (the
  first time it is evaluated), and every namespace write (``_Namespace.__setitem__`` reports it to
  :func:`note_write`) is journaled as (which namespace variable, attribute, value). A later
  iteration with an equal stable key is a hit when every recorded observation, evaluated now at the
  start of the iteration, gives the recorded value: its recorded output is emitted and its writes
  are applied to the current render's namespace objects.

* **Skipping unchanged iterations** (what makes a conversation's renders linear in its length
  for the loop): each render keeps a *trace* of the loop — per iteration its output, the kinds of
  observations it made, the namespace values written so far and, for observations of the form
  ``loop.index0 <op> ns.attr``, the interval of ``ns.attr`` values that give the same result
  (intersected over the iterations so far). At the first iteration of the next render, if its key
  equals the trace's first key (same outer values, same namespace state the body reads), the
  leading iterations whose items are the same objects are replayed in one step (their output
  joined, the namespace values restored, the ``LoopContext`` moved to the first iteration that
  runs), up to the first iteration that observed: ``messages`` (or a name assigned from it),
  ``loop.length``/``loop.revindex``; a namespace attribute whose value changed (for the comparison
  form: whose new value leaves the interval, found by bisection); ``loop.last``/``loop.nextitem``
  when the next item differs. The trace then continues from there. Rendering ``m[:k+1]`` after
  ``m[:k]`` runs O(1) iterations of such a loop (plus C-speed list comparisons and joins).
* **Turning a loop off**: a loop that, over a window of at least 4 renders and 256 lookups, misses
  on more than a quarter of its lookups on items it already ran on (a reverse scan
  ``for m in messages[::-1]``, whose items move with the prefix length) runs its body as jinja
  compiles it (the body is compiled twice) for the rest of the conversation.

Exactness argument
------------------
The body is a deterministic function of what it reads (the sandbox forbids mutating dicts and
lists; the checks below exclude every stateful construct). Its reads are the loop target and loop
attributes, outer names, namespace attributes and the objects reached from them; all are either
stable-key parts, or covered by an observation whose value the body depends on only through that
expression. When the stable key is equal and every observation made in the recorded run has the
recorded value, the new run follows the recorded run step by step (by induction on the execution:
the first point where the two could differ is an observation the recorded run made, whose value was
checked equal), so it produces the recorded output and the recorded writes. A value that is not
plain data (a namespace, a macro, a cycler, a loop object, a container holding one) makes the
iteration uncacheable; an exception while computing a key or an observation makes it a miss; an
iteration that raises is not recorded. A skipped iteration is one the trace ran with the same
inputs: the same item objects up to it (so the same target, ``loop.index0``, ``loop.previtem``), the
same outer values and namespace state (the first key; namespace writes are replayed in order), and
observations whose values cannot have changed by the rule above (``loop.last`` is false and
``loop.nextitem`` the same object when item ``i+1`` is the same object in both lists; an integer
comparison result is the same for every value in its interval). A render stopped by a render
limit (the time limit is raised asynchronously) drops the conversation's memo. Output size is checked as the plain render checks it
(:meth:`RenderMemo.buffer` raises the render-size error at the same output character).

Fallback rule (a loop runs plainly when its body has any of): ``{% break %}``/``{% continue %}`` of
this loop; a call of anything but a method (``x.split(…)``), ``loop.cycle``, ``raise_exception``,
``namespace``, ``dict``, ``range``, ``strftime_now`` or a ``{% generation %}`` block (so template
macros, ``caller``, ``cycler``, ``joiner``, ``lipsum`` fall back); ``loop.changed``, ``loop(…)``,
``loop`` used other than through its attributes; the ``random`` filter; a namespace variable used
other than ``ns.attr``; a namespace write on a name the body assigns; macros, imports, includes,
blocks or call blocks other than ``{% generation %}`` inside the body; ``messages`` (or a name
assigned from it) used whole inside the body, e.g. as an inner loop's iterable (its value is a new
list every render: the memo would never hit); a recursive loop; a loop inside another loop, a macro,
a call block, a ``{% set %}`` block, a ``{% filter %}`` block or a ``{% with %}``. A loop whose
iterations keep missing is turned off for the conversation (see above). A loop with an inline
filter (``for m in messages if …``) iterates a generator: its iterations are memoised but not
skipped.

Contract: within one conversation (between :meth:`RenderMemo.new_conversation` calls) the message
dicts and the tools passed to renders are not mutated. Disable with ``ChatTemplate(memo=False)`` or
the environment variable ``SFTDATA_RENDER_MEMO=0``.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import jinja2
import jinja2.nodes as nodes
from jinja2.runtime import LoopContext, Undefined
from jinja2.utils import Namespace, missing
from markupsafe import Markup

from .render_limits import LimitedCodeGenerator, RenderLimitExceeded
from .render_scan import compile_scan_exit, rewrite_scans, scan_guard

__all__ = ["LoopPlan", "MemoIteration", "Observe", "RenderMemo", "MemoCodeGenerator", "memo_enabled_by_default", "note_write", "plan"]


def memo_enabled_by_default() -> bool:
    """``False`` when the environment variable ``SFTDATA_RENDER_MEMO`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get("SFTDATA_RENDER_MEMO", "1").strip().lower() not in ("0", "false", "off", "no")


# ----------------------------------------------------------------------------------------------
# AST nodes added by plan()
# ----------------------------------------------------------------------------------------------


def _node_type(name: str, base: type, fields: tuple[str, ...], doc: str) -> type:
    """A jinja node class. jinja forbids ``class X(nodes.Stmt)`` (its metaclass refuses custom
    node types, to steer extensions to its own nodes); this builds the class as the metaclass
    would (fields and attributes inherited, then extended). Only :class:`MemoCodeGenerator`
    compiles these nodes; jinja's symbol analysis walks them through ``iter_child_nodes``."""
    namespace = {"fields": base.fields + fields, "attributes": base.attributes, "abstract": False, "__doc__": doc, "__module__": __name__}
    return type.__new__(nodes.NodeType, name, (base,), namespace)


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


# ----------------------------------------------------------------------------------------------
# static analysis
# ----------------------------------------------------------------------------------------------

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


class _Ineligible(Exception):
    pass


@dataclass
class LoopPlan:
    """What :func:`plan` decided for one top-level ``{% for %}`` (line ``lineno``).

    Attributes:
        memoised: the loop's iterations are memoised.
        reason: why not (empty when memoised).
        stable: how many stable key expressions; observed: how many observation expressions.
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


def _clone(node: Any) -> Any:
    """A deep copy of a jinja node (sharing the environment, unlike ``copy.deepcopy``)."""
    if isinstance(node, list):
        return [_clone(x) for x in node]
    if not isinstance(node, nodes.Node):
        return node
    new = object.__new__(type(node))
    for name in node.fields:
        setattr(new, name, _clone(getattr(node, name, None)))
    for name in node.attributes:
        setattr(new, name, getattr(node, name, None))
    return new


def _store_names(node: nodes.Node) -> set[str]:
    return {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")}


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


class _LoopAnalysis:
    """Checks one loop body and rewrites it (see the module docstring)."""

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
                    raise _Ineligible(f"line {ref.lineno}: namespace write on {ref.name!r}, a name the loop body assigns")
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
    def _stable(self, expr: nodes.Expr) -> None:
        self.stable.setdefault(repr(expr), _clone(expr))

    # -- checks + classification, scope-aware ------------------------------------------------
    def check(self, node: nodes.Node, loop_is_ours: bool = True, in_inner: bool = False) -> None:
        """Raise :class:`_Ineligible` on a construct outside the fallback rule; record stable keys."""
        if isinstance(node, _FORBIDDEN_STMTS):
            raise _Ineligible(f"line {node.lineno}: {type(node).__name__} inside the loop body")
        if isinstance(node, (nodes.Break, nodes.Continue)) and not in_inner:
            raise _Ineligible(f"line {node.lineno}: {{% {type(node).__name__.lower()} %}} of the memoised loop")
        if isinstance(node, nodes.For):
            if node.recursive:
                raise _Ineligible(f"line {node.lineno}: recursive inner loop")
            self.check(node.target, loop_is_ours, in_inner)
            self.check(node.iter, loop_is_ours, in_inner)
            for child in node.body + node.else_ + ([node.test] if node.test else []):
                self.check(child, False, True)
            return
        if isinstance(node, nodes.CallBlock):
            if not self._is_generation(node.call):
                raise _Ineligible(f"line {node.lineno}: call block inside the loop body")
            for child in node.body:
                self.check(child, loop_is_ours, in_inner)
            return
        if isinstance(node, (nodes.FilterBlock, nodes.Filter)) and node.name == "random":
            raise _Ineligible(f"line {node.lineno}: the random filter")
        if isinstance(node, nodes.Filter) and node.name not in self.filters:
            raise _Ineligible(f"line {node.lineno}: unknown filter {node.name!r}")
        if isinstance(node, nodes.Call):
            self._check_call(node, loop_is_ours)
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            name = node.node.name
            if name == "loop" and loop_is_ours:
                self._loop_attr(node.attr, node.lineno)
                return
            if name in self.ns_names:
                if node.attr in self.written:
                    self._stable(node)
                else:
                    self.ns_reads.setdefault(repr(node), _clone(node))
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
                    raise _Ineligible(f"line {node.lineno}: loop.{fn.attr}(…)")
                self._stable(nodes.Getattr(nodes.Name("loop", "load"), "index0", "load"))
            return
        if isinstance(fn, nodes.Name) and fn.name in _SAFE_CALLS and fn.name not in self.assigned_anywhere:
            return
        raise _Ineligible(f"line {node.lineno}: call of {_describe(fn)} inside the loop body")

    def _loop_attr(self, attr: str, lineno: int) -> None:
        if attr in _LOOP_STABLE:
            self._stable(nodes.Getattr(nodes.Name("loop", "load"), attr, "load"))
        elif attr not in _LOOP_VOLATILE and attr != "cycle":
            raise _Ineligible(f"line {lineno}: loop.{attr}")

    def _name(self, node: nodes.Name, loop_is_ours: bool) -> None:
        name = node.name
        if name == "loop" and loop_is_ours:
            raise _Ineligible(f"line {node.lineno}: the loop variable used whole")
        if name == "loop":
            return  # an inner loop's
        if name in self.ns_names:
            raise _Ineligible(f"line {node.lineno}: namespace {name!r} used other than as {name}.attr")
        if name in self.volatile_names:
            return  # covered by an observation
        if name in ("caller", "varargs", "kwargs", "self"):
            raise _Ineligible(f"line {node.lineno}: {name!r} inside the loop body")
        self._stable(nodes.Name(name, "load"))  # targets, outer names, and assigned names' start values

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
                    raise _Ineligible(f"line {child.lineno}: {child.name!r} (a new value every render) used whole inside the loop body")
                child = self._pos_reads(child)
                self.observed.append(_clone(child))
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


def _interval(op: str, x: int, result: bool) -> tuple[float, float]:
    """The integers ``v`` with ``(x <op> v) == result``, as a closed interval."""
    inf = float("inf")
    if op == "gt":  # x > v  <=>  v <= x - 1
        return (-inf, x - 1) if result else (x, inf)
    if op == "lt":  # x < v  <=>  v >= x + 1
        return (x + 1, inf) if result else (-inf, x)
    if op == "gteq":  # x >= v  <=>  v <= x
        return (-inf, x) if result else (x + 1, inf)
    return (x, inf) if result else (-inf, x - 1)  # lteq: x <= v  <=>  v >= x


#: observation kinds (see :meth:`_LoopAnalysis._kind`)
NEXT, NS, OTHER, POS = 1, 2, 4, 8


def _describe(fn: nodes.Node) -> str:
    if isinstance(fn, nodes.Name):
        return repr(fn.name)
    return type(fn).__name__


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
                raise _Ineligible("recursive loop")
            a = _LoopAnalysis(loop, ns_names, volatile, assigned, filters, gen_ext)
            a.check(nodes.Template(loop.body))
            for name in a.targets:
                a._stable(nodes.Name(name, "load"))
            a._stable(nodes.Getattr(nodes.Name("loop", "load"), "index0", "load"))
            body = nodes.Template(loop.body)
            a.rewrite(body)
        except _Ineligible as e:
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


# ----------------------------------------------------------------------------------------------
# code generation
# ----------------------------------------------------------------------------------------------


class MemoCodeGenerator(LimitedCodeGenerator):
    """Compiles :class:`MemoIteration` and :class:`Observe` (other nodes as jinja does)."""

    _plain_copy = False

    def visit_ScanExit(self, node: Any, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Compile a guarded scan's exit (:mod:`sftdata.masking.render_scan`)."""
        compile_scan_exit(self, node, frame)

    def visit_PosRead(self, node: Any, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Compile ``messages[i]`` as jinja compiles a subscript (``environment.getitem``), ``i``
        passed through ``render_memo.pos`` (which notes the index read) unless compiled plainly."""
        self.write("environment.getitem(")
        self.visit(node.node, frame)
        self.write(", ")
        if not self._plain_copy:
            self.write("environment.render_memo.pos(")
        self.visit(node.arg, frame)
        if not self._plain_copy:
            self.write(")")
        self.write(")")

    def visit_Observe(self, node: Observe, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Compile an observation: its expression's value passed through ``render_memo.obs``."""
        if self._plain_copy:
            self.visit(node.node, frame)
            return
        self.write(f"environment.render_memo.obs({node.index}, ")
        self.visit(node.node, frame)
        self.write(")")

    def visit_MemoIteration(self, node: MemoIteration, frame: Any) -> None:  # noqa: N802
        """Compile a memoised loop body: looked up, replayed or recorded by ``render_memo``."""
        key, bases, state, buf = (self.temporary_identifier() for _ in range(4))
        # the body twice: as jinja compiles it, for a loop the memo has turned off, and memoised
        self.writeline(f"if environment.render_memo.off[{node.loop_id}]:")
        self.indent()
        self._plain_copy = True
        try:
            self.blockvisit(node.body, frame)
        finally:
            self._plain_copy = False
        self.outdent()
        self.writeline("else:")
        self.indent()
        self.writeline("try:")
        self.indent()
        self.writeline(f"{key} = (")
        for e in node.stable:
            self.visit(e, frame)
            self.write(", ")
        self.write(")")
        self.writeline(f"{bases} = (")
        for e in node.bases:
            self.visit(e, frame)
            self.write(", ")
        self.write(")")
        self.outdent()
        self.writeline("except Exception:")
        self.indent()
        self.writeline(f"{key} = {bases} = None")
        self.outdent()
        self.writeline(f"{state} = environment.render_memo.begin({node.loop_id}, {key}, (")
        for e in node.observed:
            self.write("lambda: ")
            self.visit(e, frame)
            self.write(", ")
        self.write(f"), {bases}, {frame.symbols.ref('loop')}, lambda: (")
        for e in node.ns_reads:
            self.visit(e, frame)
            self.write(", ")
        self.write("))")
        self.writeline(f"if {state}.out is not None:")
        self.indent()
        self.start_write(frame, node)
        self.write(f"{state}.out")
        self.end_write(frame)
        self.outdent()
        self.writeline("else:")
        self.indent()
        self.writeline(f"{buf} = environment.render_memo.buffer()")
        outer = frame.buffer
        frame.buffer = buf
        try:
            self.blockvisit(node.body, frame)
        finally:
            frame.buffer = outer
        self.start_write(frame, node)
        self.write(f"environment.render_memo.end({state}, {buf})")
        self.end_write(frame)
        self.outdent()
        self.outdent()


# ----------------------------------------------------------------------------------------------
# runtime
# ----------------------------------------------------------------------------------------------


class _Uncacheable(Exception):
    pass


_ACTIVE = threading.local()


def note_write(namespace: Namespace, attr: str, value: Any) -> None:
    """Called by the template namespace on every attribute write: journal it for the iteration
    being recorded in this thread, if any."""
    journal = getattr(_ACTIVE, "journal", None)
    if journal is not None:
        journal.append((namespace, attr, value))


_PRIMITIVES = frozenset({str, int, float, bool, type(None), Markup})
_CONTAINERS = frozenset({dict, list, tuple})
_FUNCTIONS = (type(len), type(_clone), type("".strip), type)


class _Iteration:
    __slots__ = ("loop", "key", "out", "record", "obs", "seen", "bases", "writes", "keep")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.out: str | None = None
        self.record = False


class _LoopMemo:
    """One memoised loop: its recorded iterations (``cache``), the trace of the last render that
    ran it (``t_*``: per iteration its output, observation kinds, namespace writes so far), the
    trace being built by the current render (``n_*``), and hit counters."""

    def __init__(self, kinds: tuple[int, ...], cmps: tuple = ()) -> None:
        self.kinds = kinds
        self.cmps = cmps
        self.cache: dict = {}
        self.lookups = self.hits = self.render_lookups = self.render_misses = self.bad = self.skipped = 0
        self.seen_lookups = self.seen_skipped = 0  # lookups/skips counted by earlier renders
        self.skip_renders = self.window_skipped = 0  # the skip judge's window: renders, and those that mostly skipped
        self.seen_items: dict[int, Any] = {}  # id -> item: items this loop has run an iteration on
        self.disabled = False
        self.t_out: list | None = None
        self.t_render: tuple[Any, Any] = (None, None)
        self.n_render: tuple[Any, Any] = (None, None)
        self.n_items: Any = None
        self.n_ok = False

    def new_trace(self, items: Any, render: tuple[Any, Any] = (None, None)) -> None:
        """Start the current render's trace over ``items``; ``render`` is ``(base, messages)`` of
        the render (see :meth:`RenderMemo.start_render`)."""
        self.n_render = render
        self.n_items = items if type(items) in (list, tuple) else None
        self.n_ok = self.n_items is not None
        self.n_out: list = []
        self.n_flags: list = []
        self.n_snap: list = []
        self.n_cum: dict = {}
        self.n_key0: Any = None
        self.n_ns: Any = None
        self.n_first_other = self.n_first_ns = self.n_first_cmp = -1
        self.n_iv: tuple = ()  # per ns_reads index: the interval of its values every iteration so far allows
        self.n_ivs: list = []
        self.n_reach: list = []  # per iteration: the largest messages index read by it or an earlier one
        self.n_ns_raw: Any = None

    def add(self, out: str, flag: int, writes: tuple, obs: tuple = (), reach: int = -1) -> None:
        """Append one iteration (its output, observation kinds, namespace writes, the largest
        ``messages`` index its positional observations read) to the trace."""
        if not self.n_ok:
            return
        reach_so_far = self.n_reach[-1] if self.n_reach else -1
        self.n_reach.append(reach if reach > reach_so_far else reach_so_far)
        if writes:
            cum = dict(self.n_cum)
            for base_index, attr, value in writes:
                cum[(base_index, attr)] = value
            self.n_cum = cum
        i = len(self.n_out)
        if flag & NS:
            # an observation of a namespace attribute: a comparison loop.index0 <op> ns.attr
            # narrows that attribute's interval; any other makes the iteration need equal values
            plain_ns = False
            ivs = list(self.n_iv)
            for index, value in obs:
                cmp = self.cmps[index] if index < len(self.cmps) else None
                if self.kinds[index] & NS and (cmp is None or value[0] is not bool):
                    plain_ns = True
                elif cmp is not None:
                    a, op, offset = cmp
                    while len(ivs) <= a:
                        ivs.append((float("-inf"), float("inf")))
                    lo, hi = _interval(op, i + offset, value[1])
                    ivs[a] = (max(ivs[a][0], lo), min(ivs[a][1], hi))
            self.n_iv = tuple(ivs)
            if plain_ns and self.n_first_ns < 0:
                self.n_first_ns = i
            if self.n_first_cmp < 0 and any(c is not None for c in self.cmps):
                self.n_first_cmp = i
        self.n_out.append(out)
        self.n_flags.append(flag)
        self.n_snap.append(self.n_cum)
        self.n_ivs.append(self.n_iv)
        if flag & OTHER and self.n_first_other < 0:
            self.n_first_other = i

    def commit(self) -> None:
        """End of a render: its trace (the iterations it recorded, a prefix of the loop) becomes
        the one the next render may skip over."""
        if self.n_items is not None and self.n_out:
            self.t_items, self.t_out, self.t_flags, self.t_snap = self.n_items, self.n_out, self.n_flags, self.n_snap
            self.t_render = self.n_render
            self.t_key0, self.t_ns, self.t_first_other, self.t_first_ns = self.n_key0, self.n_ns, self.n_first_other, self.n_first_ns
            self.t_ivs, self.t_first_cmp = self.n_ivs, self.n_first_cmp
            self.t_reach = self.n_reach
        self.n_items = None
        self.n_ok = False


class _Buffer(list):
    """An iteration's output pieces, raising the render-size error where the plain render would."""

    __slots__ = ("room", "limit")

    def append(self, piece: str) -> None:
        self.room -= len(piece)
        if self.room < 0:
            raise RenderLimitExceeded(_SIZE_MESSAGE.format(self.limit))
        list.append(self, piece)

    def extend(self, pieces: Any) -> None:
        for p in pieces:
            self.append(p)


def _interval_prefix(ivs: list, values: Any, j: int, first: int) -> int:
    """The largest ``j' <= j`` such that every iteration before ``j'`` allows the namespace values
    ``values`` (``ivs[i]``: per attribute, the interval iterations ``0..i`` allow; they shrink as
    ``i`` grows, so the answer is found by bisection). Values that are not ints allow ``first``."""
    if values is None or any(type(v) is not int for v in values):
        return first

    def ok(i: int) -> bool:
        return all(lo <= values[a] <= hi for a, (lo, hi) in enumerate(ivs[i]) if a < len(values))

    lo, hi = first, j  # ok(first - 1) holds (no comparison before first); find the largest good count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid - 1):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_prefix(a: Any, b: Any) -> int:
    """How many leading items of ``a`` and ``b`` are the same objects (C speed)."""
    n = min(len(a), len(b))
    return next(itertools.compress(itertools.count(), map(operator.is_not, a, b)), n) if n else 0


_SIZE_MESSAGE = "the rendering exceeds {:,} characters (render size limit)"
_FAR = 1 << 62  # a positional read no skip can cover (a negative or non-integer index)
_MISS_WINDOW = 256  # a window of at least 4 renders and this many lookups of a loop judges its misses


class RenderMemo:
    """The per-template memo of loop iterations (``environment.render_memo``).

    Args:
        max_chars: the render size limit (characters, ``None``: none), checked while an
            iteration's output is buffered exactly as :func:`~sftdata.masking.render_limits.collect` checks it.
    """

    def __init__(self, max_chars: int | None) -> None:
        self.max_chars = max_chars
        self.enabled = True
        #: characters emitted so far by the current render (kept by :meth:`count`)
        self.emitted = 0
        self.mark: Any = None
        self.loops: dict[int, _LoopMemo] = {}
        self._plain: dict[int, tuple[Any, bool]] = {}
        self.current: _Iteration | None = None
        #: the largest ``messages`` index the current iteration's positional observations read
        #: (:data:`_FAR` after a negative or non-integer index)
        self.reach = -1
        self.render_lists: tuple[Any, Any] = (None, None)
        self._kinds: dict[int, tuple] = {}
        #: per loop: run its body plainly (the memo is off, or the loop kept missing)
        self.off: list[bool] = []

    # -- per conversation / per render ---------------------------------------------------------
    def new_conversation(self) -> None:
        """Forget every recorded iteration (call between conversations)."""
        self.loops.clear()
        self._plain.clear()
        self.current = None
        self.off = [not self.enabled] * len(self.off)

    def start_render(self, mark: Any, messages: Any = None, base: Any = None) -> None:
        """Called before every render.

        Args:
            mark: the generation-block markers in use, or ``None``.
            messages: the ``messages`` list the template gets.
            base: a list that ``messages`` is ``base[:n]`` of, made by the renderer from one list
                that no render of the conversation mutates (else ``None``): two such renders' lists
                then hold the same objects up to the shorter length, which :meth:`_skip` uses
                instead of comparing them.
        """
        self.emitted = 0
        self.mark = mark
        self.render_lists = (base, messages)
        self.current = None
        _ACTIVE.journal = None

    def finish_render(self) -> None:
        """Called after every render (also a failed one): judge each loop's hit rate."""
        self.current = None
        _ACTIVE.journal = None
        for loop_id, lm in self.loops.items():
            lm.commit()
            # a loop that does not skip: over 8 renders that looked up more than one iteration
            # (after the loop's first render, which has no trace to skip along), fewer than half
            # replayed at least half of their iterations in one run. Its hits still evaluate their
            # keys and observations one by one, which can cost more than running the body (before
            # positional observations, Qwen3's template with tool calls: bench/prepare.py --long 1k
            # --qwen3-real --long-variants tau, 9.1 CPU-s through the memo, 4.8 plain). Counted in
            # renders, not iterations, so that one long render with nothing to skip along (the
            # training rendering, after a failed first attempt) does not outweigh the rest.
            ran, skipped = lm.lookups - lm.seen_lookups, lm.skipped - lm.seen_skipped
            first = lm.seen_lookups == 0
            lm.seen_lookups, lm.seen_skipped = lm.lookups, lm.skipped
            if ran > 1 and not first:
                lm.skip_renders += 1
                lm.window_skipped += int(skipped * 2 >= ran)  # renders that replayed at least half their iterations
            no_skips = lm.skip_renders >= 8 and lm.window_skipped * 2 < lm.skip_renders
            if lm.skip_renders >= 8:
                lm.skip_renders = lm.window_skipped = 0
            # judged over windows of renders: a loop missing more than a quarter of its lookups costs
            # more than it saves (a miss records; a hit still evaluates its key)
            lm.bad += 1
            if no_skips or (lm.bad >= 4 and lm.render_lookups >= _MISS_WINDOW):
                if no_skips or lm.render_misses * 4 > lm.render_lookups:
                    lm.disabled = True
                    self.off[loop_id] = True
                    lm.cache.clear()
                    lm.t_out = None
                lm.render_lookups = lm.render_misses = lm.bad = 0

    def count(self, pieces: Any) -> Any:
        """Pass the render's output pieces through, counting their characters."""
        for p in pieces:
            self.emitted += len(p)
            yield p

    def buffer(self) -> list:
        """A buffer for one iteration's output."""
        if self.max_chars is None:
            return []
        b = _Buffer()
        b.limit = self.max_chars
        b.room = self.max_chars - self.emitted
        return b

    # -- keys ---------------------------------------------------------------------------------
    def _is_plain(self, x: Any) -> bool:
        hit = self._plain.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        ok = True
        stack = [x]
        while stack and ok:
            y = stack.pop()
            t = type(y)
            if t in _PRIMITIVES:
                continue
            if t is dict:
                stack.extend(y.keys())
                stack.extend(y.values())
            elif t is list or t is tuple:
                stack.extend(y)
            else:
                ok = False
        self._plain[id(x)] = (x, ok)
        return ok

    def _norm(self, v: Any, out: list) -> None:
        t = type(v)
        if t in _PRIMITIVES:
            out.append(t)
            out.append(v)
        elif t in _CONTAINERS:
            if not self._is_plain(v):
                raise _Uncacheable
            out.append(t)
            out.append(id(v))
        elif isinstance(v, Undefined):
            out.append(t)
            obj = v._undefined_obj
            out.append((v._undefined_hint, v._undefined_name, type(obj), v._undefined_exception))
        elif isinstance(v, _FUNCTIONS) or t.__name__ == "_TemplateDict":
            if isinstance(v, (Namespace, LoopContext)):
                raise _Uncacheable
            out.append(t)
            out.append(id(v))
        else:
            raise _Uncacheable

    # -- one iteration ------------------------------------------------------------------------
    def configure(self, plans: list[LoopPlan]) -> None:
        """Give the memo the observation kinds of each memoised loop (from :func:`plan`)."""
        self._kinds = {i: (p.kinds, p.cmps) for i, p in enumerate(plans)}
        self.off = [not self.enabled] * len(plans)

    def begin(
        self, loop_id: int, key_values: tuple | None, observations: tuple[Callable[[], Any], ...], bases: tuple | None,
        loop: LoopContext, ns_reads: Callable[[], tuple],
    ) -> _Iteration:
        """Look the iteration up: a hit carries ``out`` (and its writes are applied); a miss
        records (unless uncacheable) until :meth:`end`. At the loop's first iteration, skip as
        many leading iterations as the last render's trace proves unchanged (:meth:`_skip`)."""
        lm = self.loops.get(loop_id)
        if lm is None:
            lm = self.loops[loop_id] = _LoopMemo(*self._kinds.get(loop_id, ((), ())))
        first = loop.index0 == 0
        if first:
            lm.new_trace(loop._iterable, self.render_lists)
        it = _Iteration(lm)
        _ACTIVE.journal = None
        self.current = None
        self.reach = -1
        if not self.enabled or lm.disabled or key_values is None or any(not isinstance(b, Namespace) for b in bases) or len({id(b) for b in bases}) != len(bases):
            lm.n_ok = False
            return it
        flat: list = [self.mark]
        try:
            for v in key_values:
                self._norm(v, flat)
        except _Uncacheable:
            lm.n_ok = False
            return it
        key = tuple(flat)
        if first and lm.n_ok:
            try:
                ns_flat: list = []
                ns_raw = ns_reads()
                for v in ns_raw:
                    self._norm(v, ns_flat)
                ns_values: Any = tuple(ns_flat)
            except Exception:
                ns_values = ns_raw = None
            lm.n_key0, lm.n_ns, lm.n_ns_raw = key, ns_values, ns_raw
            skipped = self._skip(lm, key, ns_values, loop, bases)
            if skipped is not None:
                it.out = skipped
                return it
        lm.lookups += 1
        lm.render_lookups += 1
        for entry in lm.cache.get(key, ()):
            if self._valid(entry[0], observations):
                for base_index, attr, value in entry[1]:
                    bases[base_index][attr] = value
                lm.hits += 1
                it.out = entry[2]
                lm.add(entry[2], entry[4], entry[1], entry[0], self.reach)
                return it
        # a miss on an item this loop has already run on counts against the loop (a first sight
        # of a message is a miss every memo has to take)
        item = loop._current
        if lm.seen_items.get(id(item)) is item:
            lm.render_misses += 1
        else:
            lm.seen_items[id(item)] = item
        it.record = True
        it.key = key
        it.obs = []
        it.seen = set()
        it.bases = bases
        it.writes = []
        it.keep = [key_values]
        _ACTIVE.journal = it.writes
        self.current = it
        return it

    def _skip(self, lm: _LoopMemo, key: tuple, ns_values: Any, loop: LoopContext, bases: tuple) -> str | None:
        """Replay the leading iterations of the last render's trace that are unchanged, or return ``None``.

        Iteration ``i`` of the trace replays exactly when: the first iteration's key is equal (so
        every outer value and the namespace state at the loop's start that the body reads are
        equal), the items ``0..i`` are the same objects, and each observation the trace's
        iterations made still has its value: none of kind OTHER; kind NS only when the namespace
        attributes the body reads are equal; kind NEXT (``loop.last``, ``loop.nextitem``) only
        when item ``i+1`` is the same object in both lists (then neither iteration is the last).
        """
        t_out = lm.t_out
        if t_out is None or key != lm.t_key0:
            return None
        items, old = lm.n_items, lm.t_items
        (base, msgs), (t_base, t_msgs) = lm.n_render, lm.t_render
        same_base = base is not None and base is t_base  # both base[:n]: the same objects up to the shorter
        if same_base and items is msgs and old is t_msgs:
            common = min(len(items), len(old))
        else:
            common = _common_prefix(items, old)
        j = min(common, len(t_out))
        if lm.t_first_other >= 0:
            j = min(j, lm.t_first_other)
        if ns_values is None or ns_values != lm.t_ns:
            if lm.t_first_ns >= 0:
                j = min(j, lm.t_first_ns)
            if lm.t_first_cmp >= 0 and j > lm.t_first_cmp:
                j = _interval_prefix(lm.t_ivs, lm.n_ns_raw, j, lm.t_first_cmp)
        if j > 0 and lm.t_reach[j - 1] >= 0:  # iterations read messages[i]: only where both renders' lists hold the same item
            if same_base:
                shared = min(len(msgs), len(t_msgs))
            else:
                shared = _common_prefix(msgs, t_msgs) if type(msgs) is list and type(t_msgs) is list else 0
            j = bisect.bisect_left(lm.t_reach, shared, 0, j)
        if j > 0 and lm.t_flags[j - 1] & NEXT and not j < common:
            j -= 1
        if j <= 0:
            return None
        for (base_index, attr), value in lm.t_snap[j - 1].items():
            bases[base_index][attr] = value
        loop._iterator = iter(items[j:])
        loop.index0 = j - 1
        loop._current = items[j - 1]
        loop._after = missing
        # the new trace continues the old one's first j iterations: cut the old lists in place (O(what
        # is dropped), not O(j)); the old trace is not read again (commit replaces it by this one)
        for trace in (t_out, lm.t_flags, lm.t_snap, lm.t_ivs, lm.t_reach):
            del trace[j:]
        lm.n_out, lm.n_flags, lm.n_snap, lm.n_cum = t_out, lm.t_flags, lm.t_snap, lm.t_snap[j - 1]
        lm.n_ivs, lm.n_iv = lm.t_ivs, lm.t_ivs[j - 1]
        lm.n_reach = lm.t_reach
        # what the replayed prefix holds (it has no OTHER observation: j <= t_first_other)
        lm.n_first_cmp = lm.t_first_cmp if lm.t_first_cmp < j else -1
        lm.n_first_ns = lm.t_first_ns if lm.t_first_ns < j else -1
        lm.lookups += j
        lm.hits += j
        lm.skipped += j
        lm.render_lookups += j
        return "".join(t_out)

    def _valid(self, recorded: tuple, observations: tuple) -> bool:
        for index, expected in recorded:
            try:
                now: list = []
                self._norm(observations[index](), now)
            except Exception:
                return False
            if tuple(now) != expected:
                return False
        return True

    def pos(self, index: Any) -> Any:
        """Note the index of a positional read ``messages[index]`` (:class:`PosRead`); return it."""
        if type(index) is int and index >= 0:
            if index > self.reach:
                self.reach = index
        else:
            self.reach = _FAR
        return index

    def obs(self, index: int, value: Any) -> Any:
        """Record observation ``index`` of the iteration being recorded; return ``value``."""
        it = self.current
        if it is not None and it.record and index not in it.seen:
            it.seen.add(index)
            norm: list = []
            try:
                self._norm(value, norm)
            except _Uncacheable:
                it.record = False
            else:
                it.obs.append((index, tuple(norm)))
                it.keep.append(value)
        return value

    def end(self, it: _Iteration, buf: list) -> str:
        """Store the iteration just run (when recordable) and return its output."""
        out = "".join(buf)
        if it.record and self.current is it:
            self._store(it, out)
        else:
            it.loop.n_ok = False
        self.current = None
        _ACTIVE.journal = None
        return out

    def _store(self, it: _Iteration, out: str) -> None:
        writes = []
        lm = it.loop
        for ns, attr, value in it.writes:
            index = next((i for i, b in enumerate(it.bases) if b is ns), None)
            if index is None:
                lm.n_ok = False
                return
            try:
                self._norm(value, [])
            except _Uncacheable:
                lm.n_ok = False
                return
            writes.append((index, attr, value))
        flag = 0
        for index, _ in it.obs:
            flag |= lm.kinds[index] if index < len(lm.kinds) else OTHER
        entries = lm.cache.setdefault(it.key, [])
        entries.insert(0, (tuple(it.obs), tuple(writes), out, it.keep, flag))
        del entries[4:]
        lm.add(out, flag, tuple(writes), tuple(it.obs), self.reach)
