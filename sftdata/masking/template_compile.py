"""Chat templates compiled once per process and source.

Parsing a chat template, planning its memoised loops and generating its Python code costs more
than rendering a short conversation (Qwen3's template: about 0.1 s), and one run builds several
:class:`~sftdata.masking.template.ChatTemplate` objects of the same source (one per tools variant,
one per ``prepare`` call, the plain twin of a memoised template). The generated code depends only
on the source, on whether the render memo rewrites it, and on jinja's version (fixed in a
process); what it runs against (filters, globals, the render memo, the size limit) is read from the
environment it is instantiated in, as jinja's ``Environment.from_string`` does it
(``Template.from_code``). So the code objects are cached here, keyed by the source, and every
``ChatTemplate`` instantiates its own template in its own environment.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import CodeType
from typing import Any

import jinja2

from .render_memo import LoopPlan, plan
from .render_scan import ScanExit
from .template_env import make_environment

__all__ = ["Compiled", "compiled", "instantiate", "syntax_error"]


@dataclass(frozen=True)
class Compiled:
    """One template source compiled for rendering.

    Attributes:
        code: the module code of the template as it renders (with the render memo's rewrites
            when ``memoised``, with guarded scans when ``plans`` has one).
        plans: what the render memo decided for each top-level loop (empty without the memo).
        memoised: some loop is memoised, or some guarded scan notes its items
            (:mod:`sftdata.masking.render_scan_memo`): renders go through a :class:`~sftdata.masking.render_memo.RenderMemo`.
    """

    code: CodeType
    plans: tuple[LoopPlan, ...]
    memoised: bool


@functools.lru_cache(maxsize=64)
def compiled(source: str, memo: bool) -> Compiled:
    """The code of ``source`` (memoised loops and guarded scans when ``memo``).

    Raises:
        jinja2.TemplateSyntaxError: the template does not compile (not cached).
    """
    env = make_environment()
    if not memo:
        return Compiled(env.compile(source), (), False)
    tree = env.parse(source)
    plans = tuple(plan(tree, env))
    scans = list(tree.find_all(ScanExit))
    memoised = any(p.memoised for p in plans) or any(x.scan_id is not None for x in scans)  # renders use a RenderMemo
    if memoised or scans:  # the rewritten tree (memoised loops, guarded scans)
        return Compiled(env.compile(tree), plans, memoised)
    return Compiled(compiled(source, False).code, plans, False)  # nothing rewritten: jinja's own code


@functools.lru_cache(maxsize=64)
def syntax_error(source: str) -> tuple[int, str] | None:
    """``(line, message)`` of the syntax error that stops ``source`` from parsing, or ``None``."""
    try:
        make_environment().parse(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        return e.lineno, e.message or ""
    return None


def instantiate(env: jinja2.Environment, code: CodeType) -> Any:
    """A ``jinja2.Template`` of ``code`` bound to ``env`` (what ``env.from_string`` builds)."""
    return env.template_class.from_code(env, code, env.make_globals(None), None)
