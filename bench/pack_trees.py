"""Packing tree rows at several lengths (not a test): rows against the L2 bound, fill, and
trained tokens kept against the keepable ones.

    python bench/pack_trees.py --data /tmp/h3/tau-qwen3 [--lengths 4096 8192 16384 32768] [--repeat 5]

``--data`` is a ``sftdata prepare`` output (tree rows; e.g. tau-bench with the real Qwen3
vocabulary, see docs/packing.md). ``--repeat K`` packs K copies of it (more rows per plan).
Per L, one ``pack_dataset(..., truncation=--truncation)`` run prints: packed rows, the
Martello-Toth L2 lower bound on the same unit lengths and how far above it the plan is, fill,
rows split, trained tokens kept / keepable (trained tokens at a position < L of their own
sequence), and conversations kept / conversations with a turn that fits.

``--verify`` also checks, per L, that masks stay exact after the split: every trained token of
every packed sequence has, in its source row, a trained token with the same label and the same
root path (compared by a hash chained over the path's tokens), none is trained twice, every
tree sequence passes ``check_tree`` and holds a trained token.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sftdata.output.load import load_output  # noqa: E402
from sftdata.packing import pack_dataset  # noqa: E402
from sftdata.masking.tree import depths  # noqa: E402
from sftdata.masking.tree_fit import kept_trained  # noqa: E402


def conversations_with_a_fitting_turn(ds, L: int, rule: str) -> int:
    n = 0
    for row in ds:
        lab = np.asarray(row["labels"], dtype=np.int64)
        par = np.asarray(row["parent"], dtype=np.int64) if row["parent"] else np.arange(lab.size) - 1
        n += bool(kept_trained(lab, par, depths(par), L, rule).any())
    return n


def _path_hashes(ids, par) -> list[int]:
    h: list[int] = []
    for i, t in enumerate(ids):
        p = par[i] if par else i - 1
        h.append(hash((h[p] if p >= 0 else 0, t)))
    return h


def _trained_paths(ids, labels, par, source) -> Counter:
    h = _path_hashes(ids, par)
    out: Counter = Counter()
    for i, y in enumerate(labels):
        if y != -100 and (par[i] if par else i - 1) >= 0:
            out[(source, h[i], y)] += 1
    return out


def verify(ds, packed) -> str:
    from sftdata.packing import unpack_row
    from sftdata.masking.tree import check_tree

    want: Counter = Counter()
    for r in ds:
        want += _trained_paths(r["input_ids"], r["labels"], r["parent"], r["source_index"])
    got: Counter = Counter()
    for row in packed:
        for s in unpack_row(row):
            if s["parent"]:
                check_tree(s["input_ids"], s["labels"], s["parent"], s["position_ids"])
            c = _trained_paths(s["input_ids"], s["labels"], s["parent"], s["source_index"])
            assert c, "a packed sequence without a trained token"
            got += c
    bad = sum((got - want).values())
    return f"verify: {sum(got.values()):,} packed trained tokens, {bad} without the same path and label in the input"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--truncation", default="turns", choices=["drop", "truncate", "turns"])
    ap.add_argument("--strategy", default="mbs")
    ap.add_argument("--verify", action="store_true", help="check the packed masks against the input (slower)")
    args = ap.parse_args()

    ds = load_output(args.data)
    if args.repeat > 1:
        import datasets

        ds = datasets.concatenate_datasets([ds] * args.repeat)
    print(f"data: {args.data} x{args.repeat}: {len(ds)} rows, {sum(ds['length']):,} tokens; "
          f"truncation={args.truncation}, strategy={args.strategy}")
    head = (f"{'L':>6} | {'rows':>5} | {'L2':>5} | {'over L2':>7} | {'fill':>6} | {'split':>5} | "
            f"{'trained kept':>12} | {'keepable':>8} | {'kept/keepable':>13} | {'trained in':>10} | {'convs kept':>10}")
    print(head)
    print("-" * len(head))
    for L in args.lengths:
        packed, rep = pack_dataset(ds, L, truncation=args.truncation, strategy=args.strategy)
        convs = len({x for r in packed["source_index"] for x in r}) * 1
        fits = conversations_with_a_fitting_turn(ds, L, args.truncation) // args.repeat
        print(f"{L:>6} | {rep.bins:>5} | {rep.lower_bound_l2:>5} | {rep.bins / rep.lower_bound_l2 - 1:>+7.2%} | "
              f"{rep.fill:>6.1%} | {rep.split_rows:>5} | {rep.trained_tokens_out:>12,} | {rep.trained_tokens_keepable:>8,} | "
              f"{rep.trained_tokens_out / rep.trained_tokens_keepable:>13.2%} | {rep.trained_tokens_in:>10,} | "
              f"{convs:>4} of {fits:>3}")
        if args.verify:
            print("       " + verify(ds, packed))


if __name__ == "__main__":
    main()
