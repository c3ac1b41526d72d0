"""Stage timers and the cProfile summary of ``bench/prepare.py`` (rows (b) and ``--profile``)."""

from __future__ import annotations

import contextlib
import cProfile
import functools
import gc
import importlib
import pstats
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

perf = time.perf_counter
cpu = time.process_time  # CPU time of this process, all threads (the machine may be shared)


# ----------------------------------------------------------------------------------
# (b) sftdata.prepare, with stage timers
# ----------------------------------------------------------------------------------


class StageTimers:
    """Exclusive wall time per wrapped function (time in wrapped callees is subtracted)."""

    def __init__(self) -> None:
        self.excl: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._stack: list[float] = []

    def wrap(self, name: str, fn: Callable) -> Callable:
        timers = self

        @functools.wraps(fn)
        def timed(*a, **k):
            timers._stack.append(0.0)
            t0 = perf()
            try:
                return fn(*a, **k)
            finally:
                el = perf() - t0
                child = timers._stack.pop()
                timers.excl[name] += el - child
                timers.calls[name] += 1
                if timers._stack:
                    timers._stack[-1] += el

        return timed


class _TimedModule:
    """Proxy for a module global (``pa`` in sftdata.prepare) timing selected attributes."""

    def __init__(self, module, timers: StageTimers, name: str, attrs: tuple[str, ...]) -> None:
        self._m, self._t, self._name, self._attrs = module, timers, name, attrs

    def __getattr__(self, attr):
        v = getattr(self._m, attr)
        if attr in self._attrs:
            if attr == "Table":
                return _TimedModule(v, self._t, self._name, ("from_arrays",))
            return self._t.wrap(self._name, v)
        return v


# (label, description) in display order; names are the keys used by instrument()
STAGES = [
    ("read", "read input lazily + chunking (parent: sftdata.runner.chunked)"),
    ("rowprep", "strict JSON parse, row checks (ChunkEncoder._text)"),
    ("parse", "output lists of the written rows (chunks.output_columns)"),
    ("normalize", "normalize -> Conversation (sftdata.formats.normalize)"),
    ("control", "control-token check (check_no_control_tokens)"),
    ("render", "render: jinja sandbox (ChatTemplate.render)"),
    ("turns", "turns: prompts, stops, isolation (Renderer.render excl. jinja)"),
    ("tokenize", "tokenize: pieces, cache, Rust encode (SegmentEncoder.encode/layouts/encode_prefixes/encode_branches)"),
    ("sequence", "turn sequences, token cut, decode check (ConversationEncoder._sequence)"),
    ("tree", "prefix tree (TrieBuilder.add + build)"),
    ("check", "the definition checked on every row (turn_check.check_turn_paths)"),
    ("fit", "fit max_length, layout (ConversationEncoder._fit)"),
    ("collect", "chunk -> Arrow record batch + accumulators (ChunkEncoder)"),
    ("fingerprint", "content fingerprint (ContentHasher.update)"),
    ("driver", "prepare driver: setup, stats, Dataset() (run_prepare/prepare)"),
]


def _timed_generator(timers: "StageTimers", name: str, fn: Callable) -> Callable:
    """Wrap a generator function so that each ``next()`` is timed as one call of ``name``."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        gen = fn(*a, **k)
        step = timers.wrap(name, lambda: next(gen))
        while True:
            try:
                yield step()
            except StopIteration:
                return

    return wrapper


@contextlib.contextmanager
def instrument(timers: StageTimers):
    """Wrap sftdata functions with timers for the duration of the block (restored after)."""
    from sftdata import chunks as chunks_mod
    from sftdata.masking import encode as encode_mod
    from sftdata import encoder as encoder_mod
    from sftdata import formats as formats_mod
    from sftdata.masking import render as render_mod
    from sftdata import runner as runner_mod
    from sftdata.masking import segments as segments_mod
    from sftdata.output import stats as stats_mod
    from sftdata.masking import template as template_mod
    from sftdata.masking import tree as tree_mod

    prep_mod = importlib.import_module("sftdata.prepare")  # the module, not the function
    patches: list[tuple[Any, str, Any]] = []

    def patch(obj, attr, stage, value=None):
        orig = obj.__dict__[attr] if isinstance(obj, type) else getattr(obj, attr)
        patches.append((obj, attr, orig))
        setattr(obj, attr, value if value is not None else timers.wrap(stage, orig))

    patch(prep_mod, "chunked", "read", _timed_generator(timers, "read", runner_mod.chunked))
    patch(chunks_mod.ChunkEncoder, "_text", "rowprep")
    patch(chunks_mod, "output_columns", "parse")
    patch(formats_mod, "normalize", "normalize")
    patch(encoder_mod, "check_no_control_tokens", "control")
    patch(template_mod.ChatTemplate, "render", "render")
    patch(render_mod.Renderer, "render", "turns")
    patch(segments_mod.SegmentEncoder, "encode", "tokenize")
    patch(segments_mod.SegmentEncoder, "layouts", "tokenize")
    patch(segments_mod.SegmentEncoder, "encode_prefixes", "tokenize")
    patch(segments_mod.SegmentEncoder, "encode_branches", "tokenize")
    patch(encode_mod.ConversationEncoder, "_sequence", "sequence")
    patch(tree_mod.TrieBuilder, "add", "tree")
    patch(tree_mod.TrieBuilder, "build", "tree")
    if hasattr(encode_mod, "check_turn_paths"):  # the prepare-time check of the definition (Masks v3)
        patch(encode_mod, "check_turn_paths", "check")
    patch(encode_mod.ConversationEncoder, "_fit", "fit")
    patch(chunks_mod.ChunkEncoder, "__call__", "collect")
    patch(stats_mod.ContentHasher, "update", "fingerprint")
    patch(prep_mod, "run_prepare", "driver")
    try:
        yield
    finally:
        for obj, attr, orig in reversed(patches):
            setattr(obj, attr, orig)


def run_prepare(path: Path, tok, policy: str, num_proc: int, timers: StageTimers | None = None, layout: str = "tree") -> dict:
    import sftdata

    gc.collect()
    ctx = instrument(timers) if timers is not None else contextlib.nullcontext()
    with ctx:
        c0, t0 = cpu(), perf()
        if timers is not None:
            ds = timers.wrap("driver", sftdata.prepare)(str(path), tok, turn_policy=policy, num_proc=num_proc, layout=layout)
        else:
            ds = sftdata.prepare(str(path), tok, turn_policy=policy, num_proc=num_proc, layout=layout)
        seconds, cpu_s = perf() - t0, cpu() - c0
    s = ds.sftdata_stats
    return {
        "seconds": seconds,
        "cpu": cpu_s,
        "stats_seconds": s.get("seconds"),
        "examples": s.get("examples_out"),
        "tokens": s.get("tokens_total"),
        "trained": s.get("tokens_trained"),
        "rows_out": s.get("rows_out"),
        "rejected": s.get("rows_rejected"),
        "rejected_by_reason": s.get("rejected_by_reason"),
        "expanded": s.get("turns_branched"),
        "one_rendering": s.get("tokens_one_rendering"),
        "linear_tokens": s.get("tokens_linear_layout"),
    }


# ----------------------------------------------------------------------------------
# --profile: cProfile of prepare, by module
# ----------------------------------------------------------------------------------


def _bucket(key) -> str | None:
    filename, _, name = key
    f = filename.replace("\\", "/")
    if filename == "~":
        if "tokenizers." in name:
            return "tokenizers (Rust calls)"
        if "pyarrow" in name:
            return "pyarrow"
        if "numpy" in name:
            return "numpy"
        if "_json" in name or "json." in name:
            return "json (stdlib)"
        return None  # other builtins: charged to their callers
    if "/sftdata/formats/" in f:
        return "sftdata.formats"
    if f == "<template>" or "/jinja2/" in f:
        return "jinja2 (template + sandbox)"
    for mod in ("render", "template", "encode", "encoder", "control_tokens", "prepare", "stats", "schema", "tokenizer"):
        if f.endswith(f"/sftdata/{mod}.py"):
            return f"sftdata.{mod}"
    if "/json/" in f:
        return "json (stdlib)"
    for lib in ("pyarrow", "datasets", "numpy", "transformers", "tokenizers", "multiprocessing", "hashlib"):
        if f"/{lib}/" in f:
            return lib
    return "other python"


def profile_prepare(path: Path, tok, policy: str) -> tuple[dict[str, float], float, float]:
    """(tottime per module, profiled seconds, un-profiled seconds) for prepare(path)."""
    import sftdata

    gc.collect()
    t0 = perf()
    sftdata.prepare(str(path), tok, turn_policy=policy)
    plain = perf() - t0
    gc.collect()
    pr = cProfile.Profile()
    t0 = perf()
    pr.enable()
    sftdata.prepare(str(path), tok, turn_policy=policy)
    pr.disable()
    profiled = perf() - t0
    st = pstats.Stats(pr).stats  # key -> (cc, nc, tt, ct, callers{caller: (cc, nc, tt, ct)})
    out: dict[str, float] = defaultdict(float)

    def charge(key, tt, depth=0):
        b = _bucket(key)
        if b is not None or depth > 8:
            out[b or "other builtins"] += tt
            return
        callers = st[key][4]
        total = sum(v[2] for v in callers.values())
        if not callers or total <= 0:
            out["other builtins"] += tt
            return
        for ck, v in callers.items():
            charge(ck, tt * v[2] / total, depth + 1) if ck in st else None

    for key, (_, _, tt, _, _) in st.items():
        charge(key, tt)
    return dict(out), profiled, plain
