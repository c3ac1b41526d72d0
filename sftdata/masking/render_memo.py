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
    ``messages`` (a new list each render; read by position, ``messages[loop.index0 + c]``, it is a
    *positional* observation, see below) and the names assigned from it at top level, the
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
  runs), up to the first iteration that observed: ``messages`` (or a name assigned from it) other
  than by position, ``loop.length``/``loop.revindex``; a namespace attribute whose value changed
  (for the comparison form: whose new value leaves the interval, found by bisection);
  ``loop.last``/``loop.nextitem`` when the next item differs; ``messages[i]`` at an index ``i`` at
  or beyond the length both renders' message lists share (*positional* observations,
  ``messages[loop.index0 + c]``: :class:`PosRead` reports every index read, kept per iteration as
  a running maximum; a negative index counts as beyond). The trace then continues from there, the
  old trace's lists cut in place. When the renderer renders prefixes of one list
  (``ChatTemplate.render(messages, count=k)``), two renders' lists hold the same objects up to the
  shorter length and are not compared. Rendering ``m[:k+1]`` after ``m[:k]`` runs O(1) iterations
  of such a loop (plus the join of the replayed output).
* **Turning a loop off**: a loop that, over a window of at least 4 renders and 256 lookups, misses
  on more than a quarter of its lookups on items it already ran on (a reverse scan
  ``for m in messages[::-1]``, whose items move with the prefix length), or whose renders mostly
  do not replay at least half of their iterations (8 renders), runs its body as jinja compiles it
  (the body is compiled twice) for the rest of the conversation. (Reverse scans that only look for
  the last message of a kind are *guarded scans*, rewritten instead: :mod:`sftdata.masking.render_scan`.)

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
comparison result is the same for every value in its interval; ``messages[i]``, with ``i`` computed
from ``loop.index0`` and constants only, is the same object in both lists when ``0 <= i`` is below
the length they share, and an observation evaluates the same indices when the values it read are
the same). A render stopped by a render
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

Layout: the nodes :func:`plan` adds and the observation kinds (``render_memo_nodes``), the checks
and rewrite of one loop body (``render_memo_analysis``), :func:`plan` and :class:`LoopPlan`
(``render_memo_plan``), their compilation (``render_memo_codegen``: :class:`MemoCodeGenerator`), one
loop's recorded iterations, trace and skip (``render_memo_trace``), and :class:`RenderMemo` with
:func:`note_write` (``render_memo_runtime``), all under ``sftdata/masking/``. This module is their
public face: import from here.
"""

from __future__ import annotations

import os

from .render_memo_codegen import MemoCodeGenerator
from .render_memo_nodes import NEXT, NS, OTHER, POS, MemoIteration, Observe, PosRead
from .render_memo_plan import LoopPlan, plan
from .render_memo_runtime import RenderMemo, note_write

__all__ = [
    "LoopPlan", "MemoIteration", "Observe", "RenderMemo", "MemoCodeGenerator", "memo_enabled_by_default", "note_write", "plan",
    "PosRead", "NEXT", "NS", "OTHER", "POS",
]  # fmt: skip


def memo_enabled_by_default() -> bool:
    """``False`` when the environment variable ``SFTDATA_RENDER_MEMO`` is ``0``/``false``/``off``/``no``."""
    return os.environ.get("SFTDATA_RENDER_MEMO", "1").strip().lower() not in ("0", "false", "off", "no")

