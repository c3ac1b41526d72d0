#!/usr/bin/env python
"""Generated chat templates (issue 15): per behaviour, templates drawn, rows, rejects, oracle failures.

For every behaviour of :data:`sftdata.testing.template_gen.BEHAVIOURS`, hypothesis draws
``--templates`` chat templates that have it (other behaviours combined at random), and
``--convs`` conversations per template; each conversation is encoded by ``sftdata.Encoder``
(policy ``exact``, tree layout, the template's stop tokens) and checked by
``check_against_spec`` against the ground truth the generator knows. Printed per behaviour:

* ``templates``: templates drawn; ``rows``: conversations encoded; ``written``: rows sftdata wrote;
* ``rejects``: rows rejected, by reason (``expected``: the generator expected that reject);
* ``oracle fail``: rows where sftdata's output disagrees with the ground truth (a wrong or
  missing trained turn, a trained token outside every turn, an unexpected reject, or a crash),
  and the first failure's message.

Usage::

    python bench/template_gen.py                       # 20 templates x 3 conversations per behaviour
    python bench/template_gen.py --templates 100 --only clock reasoning_opener
    python bench/template_gen.py --avoid reasoning_opener,clock   # other behaviours forced off
    python bench/template_gen.py --show 1              # print one failing template source + conversation per behaviour

``--seed`` seeds hypothesis; two runs with one seed draw the same number of templates and rows,
but the drawn values were seen to differ between runs, so compare tables by their failures,
not cell by cell. No network, no data files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sftdata import Encoder, RowError  # noqa: E402
from sftdata.testing.template_gen import (  # noqa: E402
    BEHAVIOURS,
    check_against_spec,
    spec_conversations,
    spec_tokenizer,
    template_specs,
)


def run_behaviour(name: str, templates: int, convs: int, avoid: tuple[str, ...], rng_seed: int):
    tally: Counter = Counter()
    rejects: Counter = Counter()
    failures: list[tuple] = []

    @seed(rng_seed)
    @settings(max_examples=templates, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data):
        spec = data.draw(template_specs(name, avoid=[a for a in avoid if a != name]))
        tok = spec_tokenizer(spec)
        enc = Encoder(tok, stop_tokens=spec.stop_tokens())
        tally["templates"] += 1
        for _ in range(convs):
            conv = data.draw(spec_conversations(spec))
            tally["rows"] += 1
            try:
                out = enc.encode(conv)
            except RowError as e:
                out = e
            except Exception as e:  # noqa: BLE001 - a crash is a failure to report, not to stop on
                tally["fail"] += 1
                failures.append((spec, conv, f"crash: {type(e).__name__}: {e}"))
                continue
            expected = {t.reject for t in spec.expected(conv) if t.reject}
            if isinstance(out, RowError):
                r = out.reason.value
                rejects[r + (" (expected)" if r in expected else "")] += 1
            else:
                tally["written"] += 1
            try:
                check_against_spec(tok, spec, conv, out, now=enc.now)
            except AssertionError as e:
                tally["fail"] += 1
                failures.append((spec, conv, str(e)))

    draw()
    return tally, rejects, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--templates", type=int, default=20, help="templates drawn per behaviour (default 20)")
    ap.add_argument("--convs", type=int, default=3, help="conversations per template (default 3)")
    ap.add_argument("--only", nargs="*", default=None, help="behaviours to run (default: all)")
    ap.add_argument("--avoid", default="", help="comma-separated behaviours forced off in every template")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=0, help="failing examples to print per behaviour (the shortest)")
    a = ap.parse_args(argv)
    names = a.only or list(BEHAVIOURS)
    unknown = [n for n in names + [x for x in a.avoid.split(",") if x] if n not in BEHAVIOURS]
    if unknown:
        print(f"unknown behaviour(s): {unknown}; expected: {', '.join(BEHAVIOURS)}", file=sys.stderr)
        return 2
    avoid = tuple(x for x in a.avoid.split(",") if x)
    print(f"# generated templates: {a.templates} per behaviour x {a.convs} conversations, seed {a.seed}"
          + (f", avoiding {','.join(avoid)}" if avoid else "") + "; policy exact, tree layout")
    head = f"| {'behaviour':<40} | templates | rows | written | rejects by reason | oracle fail | first failure |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    shown = []
    t0 = time.process_time()
    totals: Counter = Counter()
    for name in names:
        tally, rejects, failures = run_behaviour(name, a.templates, a.convs, avoid, a.seed)
        totals.update(tally)
        rj = ", ".join(f"{k} {v}" for k, v in sorted(rejects.items())) or "-"
        first = failures[0][2].replace("|", "/").replace("\n", " ")[:90] if failures else "-"
        print(f"| {name:<40} | {tally['templates']:>9} | {tally['rows']:>4} | {tally['written']:>7} | {rj} | "
              f"{tally['fail']:>11} | {first} |")
        if a.show and failures:
            failures.sort(key=lambda f: (len(f[1].messages), len(f[0].source())))
            shown.extend((name, f) for f in failures[: a.show])
    print(f"\ntotal: {totals['templates']} templates, {totals['rows']} rows, {totals['written']} written, "
          f"{totals['fail']} oracle failures; {time.process_time() - t0:.1f} s CPU")
    for name, (spec, conv, msg) in shown:
        print(f"\n## {name}: {msg[:600]}\n{spec}\n--- template ---\n{spec.source()}\n--- conversation ---")
        print(json.dumps(conv.to_row(), ensure_ascii=False)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
