#!/usr/bin/env python
"""sftdata's masks on real chat templates the test suite has never seen, checked by the oracle.

The templates in ``bench/unseen_templates/`` (provenance in its README.md) are NOT vendored in
``sftdata/testing/templates/real``: nothing in the test suite was tuned to them. For each one an
offline tokenizer is built like :func:`sftdata.testing.real_templates.real_template_tokenizer`
does it (the shared small test BPE + the template's control tokens as added tokens, see
:data:`SPECS`; stop tokens guessed from the template's end-of-turn markers, their source in
``stop_source``), and sftdata's :class:`~sftdata.Encoder` (policies ``exact`` and ``last``) runs
over

* ``gen``: conversations drawn from :func:`sftdata.testing.strategies.conversations_for` with the
  template's :class:`~sftdata.testing.tokenizers.TemplateCaps` (seeded, ``--examples`` per template);
* ``tau``: tau-bench airline trajectories (``../shared/data/tau-bench``) with the derived tool schemas;
* ``rtu``: LLaMA-Factory's ``reason_tool_use_demo_50.jsonl`` (reasoning parts, parallel calls).

Every written row is checked with :func:`sftdata.testing.oracle.check_rows` (transformers'
``apply_chat_template`` alone), every refusal with :func:`sftdata.testing.oracle.justified_refusal`.
Printed per template x data x policy: rows, written, rejected by reason, unjustified refusals,
oracle failures, other exceptions, two checks the oracle does not make (``>stop``: a trained run
holds a stop token before its end; ``dup``: a trained run starts with the control token its
prompt ends with, e.g. '</think>' trained after a prompt ending '<think></think>'), how the oracle
matched the trained turns (``prefix`` = the path is exactly tokens(P_k) + the turn; ``mism`` =
prompt_mismatch and ``rewr`` = history_rewritten, both accepted by the oracle with weaker checks),
and the first failure's message.

Usage::

    python bench/unseen_templates.py                      # every template, gen + real traces
    python bench/unseen_templates.py --only Qwen3.5 --examples 50 --data gen
    python bench/unseen_templates.py --show-failures 3    # print failing conversations

Read-only on ../shared/data (skipped when absent). No network. Not a test: it prints a table.
The template table is in ``bench/_unseen_specs.py``, the conversations in ``bench/_unseen_data.py``,
the checks in ``bench/_unseen_checks.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# siblings in bench/ (sys.path[0] when this file runs as a script)
from _unseen_checks import Tally, run_one  # noqa: E402
from _unseen_data import SHARED, generated, real_traces, served  # noqa: E402
from _unseen_specs import HERE, SPECS, Spec, template_text, tokenizer_for  # noqa: E402

__all__ = ["HERE", "SHARED", "SPECS", "Spec", "Tally", "generated", "main", "real_traces", "run_one", "served",
           "template_text", "tokenizer_for"]


def main(argv=None) -> int:
    """Run the checks (command-line ``argv``, default ``sys.argv[1:]``) and print the table; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="substrings of template names to run")
    ap.add_argument("--examples", type=int, default=200, help="generated conversations per template (default 200)")
    ap.add_argument("--rows", type=int, default=None, help="first N rows of each real dataset (default: all)")
    ap.add_argument("--data", nargs="*", default=["gen", "tau", "rtu"], help="gen, tau, rtu")
    ap.add_argument("--policies", nargs="*", default=["exact", "last"])
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--show-failures", type=int, default=0, help="print the first N failing conversations per run")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from sftdata import Encoder

    names = [n for n in SPECS if not args.only or any(o.lower() in n.lower() for o in args.only)]
    real = real_traces(args.rows) if any(d in args.data for d in ("tau", "rtu")) and SHARED.is_dir() else {}
    hdr = (f"{'template':<42} {'data':<4} {'policy':<5} {'rows':>5} {'written':>7} {'unjust':>6} {'oracle':>6} {'crash':>5} "
           f"{'>stop':>5} {'dup':>4} {'prefix':>6} {'mism':>5} {'rewr':>5} {'nostop':>6} {'sec':>5}  rejected by reason | first failure")
    print(hdr)
    print("-" * len(hdr))
    totals = Counter()
    for name in names:
        s = SPECS[name]
        tok = tokenizer_for(name)
        encoders = {p: Encoder(tok, turn_policy=p, stop_tokens=s.stop_tokens, template_kwargs=dict(s.template_kwargs))
                    for p in args.policies}
        for data in args.data:
            if data == "gen":
                convs = [served(c, s.caps) for c in generated(s.caps, args.examples, args.seed, **s.draw)]
            elif data in real:
                convs = [c if not hasattr(c, "messages") else served(c, s.caps) for c in real[data]]
            else:
                continue
            tallies = {p: Tally() for p in args.policies}
            t0 = time.process_time()
            run_one(name, tok, encoders, convs, tallies, args.show_failures)
            sec = time.process_time() - t0
            for p, t in tallies.items():
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(t.rejected.items())) or "-"
                print(f"{name:<42} {data:<4} {p:<5} {t.rows:>5} {t.written:>7} {t.unjustified:>6} {t.oracle_fail:>6} {t.crashed:>5} "
                      f"{t.past_stop:>5} {t.repeats:>4} {t.modes['prefix']:>6} {t.modes['prompt_mismatch']:>5} {t.modes['history_rewritten']:>5} "
                      f"{t.modes['no_stop']:>6} {sec:>5.0f}  {reasons}" + (f" | {t.first[:300]}" if t.first else ""), flush=True)
                totals.update(rows=t.rows, written=t.written, unjustified=t.unjustified, oracle=t.oracle_fail, crash=t.crashed, past_stop=t.past_stop, dup=t.repeats,
                              mism=t.modes["prompt_mismatch"], rewr=t.modes["history_rewritten"])
                for msg, conv in t.failures:
                    print(f"    FAIL {msg}\n    CONV {json.dumps(conv.to_dict() if hasattr(conv, 'to_dict') else str(conv), ensure_ascii=False)[:3000]}")
    print(f"\ntotal: {dict(totals)}")
    print("unjust: refusals transformers' rendering does not justify (oracle.justified_refusal); oracle: written rows failing")
    print("oracle.check_rows; crash: other exceptions from Encoder.encode; >stop: rows with a trained run that holds a stop token")
    print("before its end (trained past the turn's first stop); dup: rows with a trained run that starts with the control token")
    print("its context ends with (the prompt's last token trained again). prefix/mism/rewr: trained turns matched by the oracle")
    print("as P_k + turn / prompt_mismatch / history_rewritten; nostop: turns trained without a stop token. sec: CPU seconds.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
