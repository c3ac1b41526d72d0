"""The oracle: sftdata's rows for a conversation against a generated template's ground truth.

:func:`check_against_spec` rebuilds every root-to-leaf path of sftdata's rows from ``parent``
alone and compares every trained run with ``tokens(P_k)`` (``P_k`` from transformers'
``apply_chat_template(m[:k], add_generation_prompt=True)``, :func:`prompt_text`) followed by
``tokens(expected text)`` (:meth:`~.spec.TemplateSpec.expected`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping
from unittest import mock

from ...errors import RowError
from ...masking.tree import IGNORE_INDEX
from ...schema import Conversation
from .spec import TemplateSpec

__all__ = ["SpecReport", "check_against_spec", "prompt_text"]


@dataclass
class SpecReport:
    """What :func:`check_against_spec` checked: turns matched, or the expected reject."""

    turns: int = 0
    rejected: str | None = None


def _paths(row) -> list[list[int]]:
    """Every root-to-leaf path of a row as token indices, from ``parent`` alone (``[]``: one path)."""
    n = len(row.input_ids)
    parent = list(row.parent) if row.parent else list(range(-1, n - 1))
    assert len(parent) == n, "parent and input_ids differ in length"
    has_child = [False] * n
    for i, p in enumerate(parent):
        assert -1 <= p < i, f"parent[{i}] = {p} is not -1 or an earlier index"
        if p >= 0:
            has_child[p] = True
    out = []
    for leaf in (i for i in range(n) if not has_child[i]):
        path, j = [], leaf
        while j >= 0:
            path.append(j)
            j = parent[j]
        out.append(path[::-1])
    return out


def _runs(rows) -> list[tuple[list[int], list[int]]]:
    """``(context ids, run ids)`` of every maximal trained run of every path. Paths share the
    tree's nodes: a run that another path's run from the same start continues (its tokens a
    prefix of that run's) is that run, counted once; two runs from one start that part ways
    (a token with two trained children) are both kept."""
    found: dict[tuple, tuple] = {}
    for key, ctx_run in _path_runs(rows):
        found[key] = ctx_run
    keys = sorted(found, key=lambda k: (k[0], k[1], len(k[2])))
    out = []
    for n, key in enumerate(keys):
        longer = any(o[:2] == key[:2] and len(o[2]) > len(key[2]) and o[2][: len(key[2])] == key[2] for o in keys[n + 1:])
        if not longer:
            out.append(found[key])
    return out


def _path_runs(rows):
    seen, out = set(), []
    for rn, r in enumerate(rows):
        ids, labels = list(r.input_ids), list(r.labels)
        assert len(ids) == len(labels), "labels and input_ids differ in length"
        for i, (t, y) in enumerate(zip(ids, labels)):
            assert y == IGNORE_INDEX or y == t, f"labels[{i}] = {y} is neither -100 nor input_ids[{i}] = {t}"
        for path in _paths(r):
            start = None
            for pos, i in enumerate(path + [None]):
                trained = i is not None and labels[i] != IGNORE_INDEX
                if trained and start is None:
                    start = pos
                elif not trained and start is not None:
                    key = (rn, path[start], tuple(path[start:pos]))
                    if key not in seen:
                        seen.add(key)
                        out.append((key, ([ids[j] for j in path[:start]], [ids[j] for j in path[start:pos]])))
                    start = None
    return out


def prompt_text(tok, spec: TemplateSpec, conversation: Conversation, k: int, *, now: datetime | None = None,
                template_kwargs: Mapping[str, Any] | None = None) -> str:
    """``P_k``: transformers' ``apply_chat_template(m[:k], add_generation_prompt=True,
    tokenize=False)``, with the messages as served to ``spec``'s template and the clock fixed
    at ``now`` (sftdata's reading) when given."""
    msgs = [{k2: v for k2, v in m.items() if v is not None} for m in conversation.template_messages(spec.served_arguments())]
    with _clock(now):
        return tok.apply_chat_template(msgs[:k], tools=conversation.template_tools(), add_generation_prompt=True,
                                       tokenize=False, **dict(template_kwargs or {}))


@contextlib.contextmanager
def _clock(now: datetime | None):
    """transformers' ``strftime_now`` reading ``now`` (it reads ``datetime.now()`` of its
    chat-template module; template kwargs cannot carry a function, transformers turns them into
    plain data). Without ``now``, the real clock."""
    if now is None:
        yield
        return
    from transformers.utils import chat_template_utils as ctu

    class _Fixed(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ARG003 - the fixed reading
            return now

    with mock.patch.object(ctu, "datetime", _Fixed):
        yield


def check_against_spec(tok, spec: TemplateSpec, conversation: Conversation, rows_or_error, *,
                       now: datetime | None = None, template_kwargs: Mapping[str, Any] | None = None) -> SpecReport:
    """Check sftdata's output for ``conversation`` (policy ``exact``, every assistant turn
    trained) against ``spec``'s ground truth.

    ``rows_or_error``: the rows (tree or linear ``EncodedExample`` s, anything with
    ``input_ids``, ``labels``, ``parent``) or the :class:`~sftdata.errors.RowError` raised.
    ``now``: the clock reading sftdata gave the template (``Encoder.now``).

    Checks: a reject only when the spec expects one, with an expected reason; otherwise every
    expected turn ``k`` is exactly one trained run whose context is ``tokens(P_k)`` and whose
    tokens are ``tokens(expected text)``, and no trained token lies outside those runs.

    Raises:
        AssertionError: naming the turn, the expected text and what the rows hold.
    """
    expected = spec.expected(conversation)
    rejects = {t.reject for t in expected if t.reject}
    if isinstance(rows_or_error, RowError):
        reason = rows_or_error.reason.value
        assert reason in rejects, (
            f"unexpected reject {reason} ({rows_or_error}); expected "
            + (f"one of {sorted(rejects)}" if rejects else "rows for every turn")
        )
        return SpecReport(rejected=reason)
    rows = list(rows_or_error)
    runs = _runs(rows)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    dec = lambda x: tok.backend_tokenizer.decode(list(x), skip_special_tokens=False)  # noqa: E731
    assert not rejects, (
        f"rows written, but expected a reject: {[(t.k, t.reject, t.why) for t in expected if t.reject]}; "
        f"trained (context tail, run): {[(dec(c)[-40:], dec(r)) for c, r in runs]}"
    )
    unmatched = list(range(len(runs)))
    for t in expected:
        p_text = prompt_text(tok, spec, conversation, t.k, now=now, template_kwargs=template_kwargs)
        ctx, want = ids(p_text), ids(t.text)
        hit = next((n for n in unmatched if runs[n][0] == ctx and runs[n][1] == want), None)
        if hit is None:
            same_ctx = [dec(runs[n][1]) for n in unmatched if runs[n][0] == ctx]
            others = [(dec(runs[n][0])[-40:], dec(runs[n][1])) for n in unmatched if runs[n][0] != ctx]
            raise AssertionError(
                f"turn {t.k}: no trained run is tokens(P_k) + tokens({t.text!r}); "
                f"runs after P_k: {same_ctx}; other runs (context tail, run): {others}; P_k tail: {p_text[-60:]!r}"
            )
        unmatched.remove(hit)
    assert not unmatched, (
        "trained tokens outside every expected turn: "
        + str([(dec(runs[n][0])[-40:], dec(runs[n][1])) for n in unmatched])
    )
    return SpecReport(turns=len(expected))
