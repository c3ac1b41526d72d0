"""Checking one unseen template on a list of conversations (``bench/unseen_templates.py``): every
written row against :func:`sftdata.testing.oracle.check_rows`, every refusal against
:func:`sftdata.testing.oracle.justified_refusal`, and two checks the oracle does not make; the
counts in a :class:`Tally` per turn policy."""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field

from _unseen_specs import SPECS


@dataclass
class Tally:
    """The counts of one template x data x turn policy: rows, written, rejected by reason,
    unjustified refusals, oracle failures, crashes, the two extra checks (``past_stop``,
    ``repeats``), how the oracle matched the trained turns (``modes``), the first failure's message
    and up to ``keep`` failing ``(message, conversation)`` pairs."""

    rows: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)
    unjustified: int = 0
    oracle_fail: int = 0
    crashed: int = 0
    past_stop: int = 0
    repeats: int = 0
    modes: Counter = field(default_factory=Counter)
    first: str = ""
    failures: list = field(default_factory=list)

    def fail(self, msg: str, conv, keep: int) -> None:
        """Record a failure: its message (the first one kept in ``first``) and, while fewer than
        ``keep`` are kept, the conversation."""
        self.first = self.first or msg
        if len(self.failures) < keep:
            self.failures.append((msg, conv))


def _stop_inside(tok, rows, stops) -> str:
    """A trained run holding a stop token before its last token (the oracle's prefix mode does not
    look for one): issue 15 ends a turn at its *first* stop token. Returns the run's text or ''."""
    from sftdata.testing.oracle import trained_runs

    ids = {tok.convert_tokens_to_ids(s) for s in stops}
    for r in rows:
        for _, run in trained_runs(r):
            if any(i in ids for i in run[:-1]):
                return repr(tok.decode(run)[:200])
    return ""


def _repeats_prompt(tok, rows) -> str:
    """A trained run whose first token is the control token its context ends with, e.g. DeepSeek-V3.2's
    generation prompt '<｜Assistant｜><think></think>' followed by a trained '</think>' (its history writes
    '<｜Assistant｜></think>'): the model never generates a second '</think>' there. The oracle's
    history_rewritten mode accepts such a run (its text is in F_k). Returns the run's text or ''."""
    from sftdata.testing.oracle import trained_runs

    control = set(tok.added_tokens_decoder)
    for r in rows:
        for ctx, run in trained_runs(r):
            if ctx and run and run[0] == ctx[-1] and run[0] in control:
                return f"context ends {tok.decode(ctx[-3:])!r}, run {tok.decode(run)[:120]!r}"
    return ""


def _transformers_view(tok, conv, tk) -> str:
    """Whether transformers itself renders the whole conversation (said beside an unjustified refusal)."""
    try:
        tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=False, **tk)
    except Exception as x:  # noqa: BLE001 - the template's own error, any type
        return f" [transformers raises too: {type(x).__name__}]"
    return " [transformers renders it]"


def run_one(name: str, tok, encoders, convs, tally_by_policy, keep: int) -> None:
    """Encode every conversation of ``convs`` (or count the ``RowError`` its normalisation raised)
    with each turn policy's encoder of ``encoders`` and check the outcome, adding to
    ``tally_by_policy[policy]``; ``keep`` failing conversations are kept per policy."""
    from sftdata.errors import RowError
    from sftdata.testing.oracle import check_rows, justified_refusal
    from sftdata.masking.tokenizer import control_token_pattern, control_tokens

    s = SPECS[name]
    tk = dict(s.template_kwargs)
    pattern = control_token_pattern(control_tokens(tok, tok.chat_template))
    for conv in convs:
        for policy, enc in encoders.items():
            t = tally_by_policy[policy]
            t.rows += 1
            if isinstance(conv, RowError):
                t.rejected[f"normalize:{conv.reason.value}"] += 1
                continue
            assistants = [k for k, m in enumerate(conv.messages) if m.role == "assistant" and m.train is not False]
            trained = assistants[-1:] if policy == "last" else None
            try:
                rows = enc.encode(conv)
            except RowError as e:
                t.rejected[e.reason.value] += 1
                try:
                    ok = justified_refusal(tok, conv, e, enc.stop.tokens, lossless=s.spec.lossless, control_pattern=pattern,
                                           template_kwargs=tk, trained=trained)
                except Exception as x:  # noqa: BLE001 - the oracle itself failed: count as unjustified, say why
                    ok, e = False, f"{e} (oracle raised {type(x).__name__}: {x})"
                if not ok:
                    t.unjustified += 1
                    t.fail(f"unjustified refusal: {e}{_transformers_view(tok, conv, tk)}", conv, keep)
                continue
            except Exception as e:  # noqa: BLE001 - sftdata crashed on the row
                t.crashed += 1
                t.fail(f"crash: {type(e).__name__}: {e} @ {traceback.extract_tb(e.__traceback__)[-1].name}", conv, keep)
                continue
            t.written += 1
            inner = _stop_inside(tok, rows, enc.stop.tokens)
            if inner:
                t.past_stop += 1
                t.fail(f"trained past a stop token: {inner}", conv, keep)
            dup = _repeats_prompt(tok, rows)
            if dup:
                t.repeats += 1
                t.fail(f"trained run repeats the prompt's last control token: {dup}", conv, keep)
            try:
                rep = check_rows(tok, conv, rows, enc.stop.tokens, trained=trained, template_kwargs=tk)
                t.modes.update(rep.modes)
                t.modes["no_stop"] += rep.no_stop
                t.modes["not_rendered"] += rep.not_rendered
            except AssertionError as e:
                t.oracle_fail += 1
                t.fail(f"oracle: {e}", conv, keep)
            except Exception as e:  # noqa: BLE001
                t.oracle_fail += 1
                t.fail(f"oracle raised {type(e).__name__}: {e}", conv, keep)
