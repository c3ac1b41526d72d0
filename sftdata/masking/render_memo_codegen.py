"""Compiling the render memo's nodes (:mod:`sftdata.masking.render_memo_nodes`): a memoised loop body
is compiled twice, as jinja compiles it (for a loop the memo has turned off) and as a lookup in
``environment.render_memo`` (:class:`~sftdata.masking.render_memo_runtime.RenderMemo`) that replays a hit
or records a miss (:mod:`sftdata.masking.render_memo` describes the mechanism).
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from .render_limits import LimitedCodeGenerator
from .render_memo_nodes import MemoIteration, Observe
from .render_scan import compile_scan_exit, compile_scan_verdict

__all__ = ["MemoCodeGenerator"]


class MemoCodeGenerator(LimitedCodeGenerator):
    """Compiles :class:`MemoIteration` and :class:`Observe` (other nodes as jinja does)."""

    _plain_copy = False

    def visit_ScanExit(self, node: Any, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Compile a guarded scan's exit (:mod:`sftdata.masking.render_scan`)."""
        compile_scan_exit(self, node, frame)

    def visit_ScanVerdict(self, node: Any, frame: Any) -> None:  # noqa: N802 - jinja's visitor name
        """Compile the rest of a memoised scan's test (:mod:`sftdata.masking.render_scan_memo`)."""
        compile_scan_verdict(self, node, frame)

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

    def _items(self, exprs: list, frame: Any, before: str = "") -> None:
        """Write ``exprs`` as the items of a tuple display (each followed by ``", "``, after ``before``)."""
        for e in exprs:
            self.write(before)
            self.visit(e, frame)
            self.write(", ")

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
        for e in node.stable:  # a variable as it is bound: ``missing`` rather than a new Undefined per iteration
            if isinstance(e, nodes.Name) and e.ctx == "load":
                self.write(f"{frame.symbols.ref(e.name)}, ")
            else:
                self._items([e], frame)
        self.write(")")
        self.writeline(f"{bases} = (")
        self._items(node.bases, frame)
        self.write(")")
        self.outdent()
        self.writeline("except Exception:")
        self.indent()
        self.writeline(f"{key} = {bases} = None")
        self.outdent()
        self.writeline(f"{state} = environment.render_memo.begin({node.loop_id}, {key}, (")
        self._items(node.observed, frame, "lambda: ")
        self.write(f"), {bases}, {frame.symbols.ref('loop')}, lambda: (")
        self._items(node.ns_reads, frame)
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
