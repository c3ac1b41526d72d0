"""Packing and collation benchmark (not a test).

    python bench/pack.py [--data PREPARED_DIR] [--n 1000000] [--max-length 4096]

Prints, in one run:

1. packing on ``--n`` synthetic lengths drawn like agent traces (a system prompt from a few tool
   families plus a few turns; mean ~ L/3): time and fill of our default (``mbs``) and our ``bfd``
   (planning on lengths), then end-to-end ``pack_dataset`` against TRL's
   ``pack_dataset(strategy="bfd")`` on a token-materialised subset (``--trl-n``, TRL is too slow
   and 1M sequences of tokens too big for this machine);
2. the same on a prepared dataset dir (``--data``, e.g. ``sftdata prepare`` of tau-bench) at
   ``--data-max-length``;
3. collation time per batch: ours vs TRL's ``DataCollatorForLanguageModeling``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator  # noqa: E402
from sftdata.packing import lower_bound_l1, pack_dataset, plan_bins  # noqa: E402


def agent_like_lengths(n: int, L: int, seed: int = 0) -> np.ndarray:
    """Agent-trace lengths: a system prompt (3 tool families, ~0.55-0.75 of L/3) plus 1 + Poisson(2.5)
    lognormal turns; mean ~ L/3; clipped to [1, L]."""
    rng = np.random.default_rng(seed)
    base = rng.choice([0.55, 0.65, 0.75], n) * L / 3 + rng.normal(0, 15, n)
    turns = 1 + rng.poisson(2.5, n)
    per = L / 3 * 0.35 / 3.5
    owner = np.repeat(np.arange(n), turns)
    tt = np.bincount(owner, weights=rng.lognormal(np.log(per) - 0.5, 1.0, owner.size), minlength=n)
    return np.clip((base + tt).astype(np.int64), 1, L)


def token_dataset(lengths: np.ndarray, seed: int = 0):
    """A prepared-schema dataset with random tokens (built directly in Arrow)."""
    import datasets
    from datasets.table import InMemoryTable

    rng = np.random.default_rng(seed)
    offsets = np.zeros(lengths.size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    ids = rng.integers(0, 32000, int(offsets[-1]), dtype=np.int32)
    labels = ids.copy()
    labels[rng.random(ids.size) < 0.7] = -100
    off = pa.array(offsets)
    table = pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(off, pa.array(ids)),
            "labels": pa.ListArray.from_arrays(off, pa.array(labels)),
            "length": pa.array(lengths.astype(np.int32)),
            "source_index": pa.array(np.arange(lengths.size, dtype=np.int64)),
        }
    )
    return datasets.Dataset(InMemoryTable(table), fingerprint=f"bench-{lengths.size}-{seed}")


def row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


PACK_HEAD = ("data", "sequences", "what", "wall s", "cpu s", "seq/s", "rows", "lower bd", "fill", "over LB")
PACK_W = (22, 10, 34, 7, 6, 11, 9, 9, 7, 8)


def pack_line(data, n, what, seconds, cpu, rows, lb, tokens, L):
    fill = tokens / (rows * L) if rows else 0.0
    return row(
        (data, f"{n:,}", what, f"{seconds:.2f}", f"{cpu:.2f}", f"{n / seconds:,.0f}", f"{rows:,}", f"{lb:,}",
         f"{fill:.2%}", f"{rows / lb - 1:+.2%}"),
        PACK_W,
    )


REPEAT = 2


def best_of(fn):
    """Best (wall, cpu) times of ``REPEAT`` runs of ``fn`` (which returns a small summary).

    The machine is shared: the minimum is the least noisy; CPU time shows what contention hides.
    """
    best = None
    for _ in range(REPEAT):
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if best is None or dt < best[0]:
            best = (dt, dc, out)
    return best


def bench_plans(name, lengths, L):
    lb = lower_bound_l1(int(lengths.sum()), L)
    lines = []
    for strategy in ("mbs", "bfd"):
        dt, dc, bins = best_of(lambda s=strategy: plan_bins(lengths, L, strategy=s).num_bins)
        label = f"ours {strategy}{' (default)' if strategy == 'mbs' else ''}, plan"
        lines.append(pack_line(name, lengths.size, label, dt, dc, bins, lb, int(lengths.sum()), L))
    return lines


def trl_pack(ds, L):
    from trl.data_utils import pack_dataset as trl_pack_dataset

    ds = ds.select_columns(["input_ids", "labels"])
    kw = {"load_from_cache_file": False, "keep_in_memory": True}  # no cache hits, no disk writes

    def once():
        out = trl_pack_dataset(ds, L, strategy="bfd", map_kwargs=kw)
        return len(out), int(sum(sum(x) for x in out["seq_lengths"]))

    dt, dc, (rows, tokens) = best_of(once)
    return dt, dc, rows, tokens


def bench_end_to_end(name, ds, L, *, trl=True):
    lengths = np.asarray(ds["length"] if "length" in ds.column_names else [len(x) for x in ds["input_ids"]])
    lines = []
    fits = lengths <= L
    if not fits.all():
        ds = ds.select(np.flatnonzero(fits))
        lengths = lengths[fits]
        name = f"{name} (<=L)"
    lb = lower_bound_l1(int(lengths.sum()), L)
    for strategy in ("mbs", "bfd"):
        def once(strategy=strategy):
            _, report = pack_dataset(ds, L, strategy=strategy)
            return report.bins, report.tokens_out

        dt, dc, (bins, tokens) = best_of(once)
        lines.append(pack_line(name, len(ds), f"ours {strategy}, pack_dataset (tokens)", dt, dc, bins, lb, tokens, L))
    if trl:
        dt, dc, rows, tokens = trl_pack(ds, L)
        lines.append(pack_line(name, len(ds), "TRL bfd, pack_dataset (tokens)", dt, dc, rows, lb, tokens, L))
    return lines


def time_call(fn, features, reps):
    fn(features)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(features)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench_collators(packed_rows, reps):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rng = np.random.default_rng(0)

    def rows(n_rows, n_tok):
        out = []
        for _ in range(n_rows):
            ids = rng.integers(0, 32000, n_tok)
            lab = ids.copy()
            lab[: n_tok // 2] = -100
            out.append({"input_ids": ids.tolist(), "labels": lab.tolist()})
        return out

    cases = [
        ("2 x 8,192 (lists)", rows(2, 8192)),
        ("16 x 1,024 (lists)", rows(16, 1024)),
        ("2 x 16,384 (lists)", rows(2, 16384)),
    ]
    if packed_rows:
        cases.append((f"{len(packed_rows)} packed rows, {sum(len(r['input_ids']) for r in packed_rows):,} tok (lists)",
                      packed_rows))
    cases.append(("2 x 8,192 (numpy)", [{k: np.asarray(v) for k, v in r.items()} for r in cases[0][1]]))
    collators = [
        ("ours padding-free", PaddingFreeCollator()),
        ("TRL padding_free=True", DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)),
        ("ours padded", PaddingCollator(0)),
        ("TRL padded", DataCollatorForLanguageModeling(pad_token_id=0)),
    ]
    widths = (46, 19, 22, 12, 11)
    lines = [row(("batch", *[c[0] for c in collators]), widths), row(("-" * 5,) + ("-" * 10,) * 4, widths)]
    for name, feats in cases:
        cells = [name]
        for cname, col in collators:
            packed = "seq_lengths" in feats[0]
            if "padded" in cname and packed:
                cells.append("n/a (packed)")
                continue
            cells.append(f"{time_call(col, feats, reps):.2f} ms")
        lines.append(row(cells, widths))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a `sftdata prepare` output dir")
    ap.add_argument("--data-max-length", type=int, default=16384, help="L for --data")
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic sequences")
    ap.add_argument("--max-length", type=int, default=4096, help="L for the synthetic data")
    ap.add_argument("--trl-n", type=int, default=50_000, help="synthetic sequences materialised for TRL")
    ap.add_argument("--reps", type=int, default=50, help="collator repetitions")
    ap.add_argument("--repeat", type=int, default=2, help="packing runs per measurement (best is shown)")
    args = ap.parse_args(argv)
    global REPEAT
    REPEAT = max(1, args.repeat)
    L = args.max_length
    print(f"# sftdata packing benchmark  (numpy {np.__version__}, pyarrow {pa.__version__})\n")

    print(row(PACK_HEAD, PACK_W))
    print(row(("-" * 4,) + ("-" * 5,) * 9, PACK_W))
    lengths = agent_like_lengths(args.n, L)
    for line in bench_plans(f"synthetic L={L}", lengths, L):
        print(line, flush=True)
    sub = token_dataset(agent_like_lengths(args.trl_n, L, seed=1), seed=1)
    for line in bench_end_to_end(f"synthetic L={L}", sub, L):
        print(line, flush=True)

    packed_rows = None
    if args.data:
        import datasets

        ds = datasets.load_from_disk(args.data)
        DL = args.data_max_length
        name = f"{Path(args.data).name} L={DL}"
        lengths = np.asarray(ds["length"], dtype=np.int64)
        for line in bench_plans(name, lengths[lengths <= DL], DL):
            print(line, flush=True)
        for line in bench_end_to_end(name, ds, DL):
            print(line, flush=True)
    print(
        f"\nplan = bin assignment on the lengths (global); pack_dataset = scan labels + plan + build Arrow rows;\n"
        f"best of {REPEAT} runs each. TRL runs on a {args.trl_n:,}-sequence token subset, not on 1M (1M sequences of\n"
        f"tokens do not fit this machine's memory budget next to TRL's copies); its map batches of 1,000 rows are\n"
        f"packed one by one (keep_in_memory, no cache)."
    )

    packed, _ = pack_dataset(token_dataset(agent_like_lengths(64, 16384 // 4, seed=2), seed=2), 16384 // 4)
    packed_rows = [packed[i] for i in range(min(4, len(packed)))]
    print("\n# collation, median time per batch\n")
    for line in bench_collators(packed_rows, args.reps):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
