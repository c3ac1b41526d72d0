"""Small, offline builders for tests, examples and ``bench/train_gpu.py --dry-run``.

Nothing here downloads anything: conversations are synthetic, models are built from configs,
the char-level tokenizer is made in memory.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Sequence

import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the repository (real traces), or None when absent."""
    env = os.environ.get("SFTDATA_SHARED_DATA")
    path = Path(env) if env else SHARED_DATA
    return path if path.is_dir() else None


def synthetic_conversations(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` OpenAI-style chat rows (``{"messages": [...]}``) of varied lengths, some multi-turn."""
    rng = random.Random(seed)
    words = ("alpha beta gamma delta flight booking seat window aisle refund status weather city "
             "price hotel night train ticket change cancel confirm today tomorrow morning evening").split()
    rows = []
    for i in range(n):
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": "You are a concise assistant."})
        for _ in range(rng.choice([1, 1, 2, 3])):
            q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 25)))
            a = " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
            msgs.append({"role": "user", "content": f"Q{i}: {q}?"})
            msgs.append({"role": "assistant", "content": f"A{i}: {a}."})
        rows.append({"messages": msgs})
    return rows


def prepare_dir(rows_or_path: Any, output: str | os.PathLike, tokenizer: Any = None, **options: Any):
    """Run ``sftdata.prepare`` (embedded tokenizer by default) and write ``output``; returns the dataset."""
    from sftdata.prepare import prepare

    return prepare(rows_or_path, tokenizer=tokenizer, output=str(output), **options)


def pack_dir(prepared_dir: str | os.PathLike, output: str | os.PathLike, max_length: int, **kw: Any):
    """``sftdata pack`` of a prepared dir into ``output``; returns the packed dataset."""
    import datasets

    from sftdata.packing import pack_dataset, save_packed

    ds = datasets.load_from_disk(str(prepared_dir))
    packed, report = pack_dataset(ds, max_length, **kw)
    save_packed(packed, report, output)
    return packed


# ----------------------------------------------------------------------------- the reversal task
REVERSAL_CHARS = ["<pad>", "<", ">", "#"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def char_tokenizer():
    """A char-level ``PreTrainedTokenizerFast`` over :data:`REVERSAL_CHARS` (pad ``<pad>``, eos ``#``)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(REVERSAL_CHARS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="#")


def four_letter_words(n_train: int, n_test: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint random lowercase 4-letter strings for training and held-out evaluation."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < n_train + n_test:
        words.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4)))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered[:n_train], ordered[n_train:]


def reversal_rows(words: list[str], tokenizer, *, mask_prompt: bool) -> dict[str, list]:
    """``<abcd>dcba#`` rows in ``sftdata prepare`` columns; the prompt ``<abcd>`` masked or not."""
    ids, labels = [], []
    for w in words:
        x = tokenizer(f"<{w}>{w[::-1]}#")["input_ids"]
        y = list(x)
        if mask_prompt:
            y[:6] = [-100] * 6
        ids.append(x)
        labels.append(y)
    return {"input_ids": ids, "labels": labels, "length": [len(x) for x in ids], "source_index": list(range(len(ids)))}


@torch.no_grad()
def reversal_exact_match(model, tokenizer, words: list[str]) -> float:
    """Fraction of ``words`` whose 4 reversed chars the model produces by greedy decoding after ``<word>``."""
    model.eval()
    x = torch.tensor([tokenizer(f"<{w}>")["input_ids"] for w in words])
    target = torch.tensor([tokenizer(w[::-1])["input_ids"] for w in words])
    for _ in range(4):
        logits = model(input_ids=x, use_cache=False).logits[:, -1]
        x = torch.cat([x, logits.argmax(-1, keepdim=True)], dim=1)
    return float((x[:, 6:10] == target).all(dim=1).float().mean())


def tiny_qwen3_dir(path: str | os.PathLike, tokenizer, *, seed: int = 0, **size: Any) -> Path:
    """Save a random-init tiny Qwen3 (sized by ``size``) with ``tokenizer`` to ``path``."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    spec = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=True)
    spec.update(size)
    vocab = -(-len(tokenizer) // 8) * 8
    cfg = Qwen3Config(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return Path(path)


# ----------------------------------------------------------------------------- prefix trees
TREE_COLUMNS = ("input_ids", "labels", "parent", "position_ids", "length", "linear_length", "source_index")


def tree_rows_from_examples(examples) -> list[dict[str, Any]]:
    """Merge linear examples of the same conversation into prefix-tree rows (docs/trees.md).

    ``examples``: rows with ``input_ids``, ``labels`` and ``source_index`` (e.g. linear
    ``sftdata.prepare(..., turn_policy="exact")`` output: the conversation's rendering first,
    then one example per rewritten turn). Rows of one ``source_index`` are inserted in order
    into a :class:`sftdata.masking.tree.TrieBuilder` (a row that already is a tree, with a non-empty
    ``parent``, is inserted as its root-to-leaf paths); returns one row per source with the
    columns of :data:`TREE_COLUMNS` (``parent``/``position_ids`` empty for a single path), in
    order of first appearance. Tests and benchmarks use it to build tree rows from any layout.
    """
    from sftdata.masking.tree import TrieBuilder, unroll

    groups: dict[int, TrieBuilder] = {}
    for ex in examples:
        b = groups.setdefault(int(ex["source_index"]), TrieBuilder())
        parent = ex.get("parent")
        if parent is not None and len(parent):
            for ids, labels in unroll({"input_ids": list(ex["input_ids"]), "labels": list(ex["labels"]),
                                       "parent": list(parent)}):
                b.add(ids, labels)
        else:
            b.add(list(ex["input_ids"]), list(ex["labels"]))
    out = []
    for src, b in groups.items():
        t = b.build()
        out.append(dict(input_ids=t.input_ids, labels=t.labels, parent=t.parent, position_ids=t.position_ids,
                        length=len(t.input_ids), linear_length=t.linear_length, source_index=src))
    return out


def tree_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of tree rows with the column types ``sftdata prepare`` writes."""
    import datasets

    feats = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")), "labels": datasets.Sequence(datasets.Value("int32")),
        "parent": datasets.Sequence(datasets.Value("int32")), "position_ids": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"), "linear_length": datasets.Value("int32"),
        "source_index": datasets.Value("int64"),
    })
    return datasets.Dataset.from_list([{k: r[k] for k in TREE_COLUMNS} for r in rows], features=feats)


def prepare_tree_dir(rows_or_path: Any, output: str | os.PathLike, tokenizer: Any = None, **options: Any):
    """Tree rows of ``sftdata.prepare`` (``turn_policy="exact"``, ``layout="tree"``), saved to
    ``output``; returns the dataset."""
    from sftdata.prepare import prepare

    options.setdefault("turn_policy", "exact")
    return prepare(rows_or_path, tokenizer=tokenizer, output=str(output), layout="tree", **options)


def unrolled_dataset(tree_ds):
    """The linear layout of tree rows (``sftdata.masking.tree.unroll``): one row per root-to-leaf path."""
    import datasets

    from sftdata.masking.tree import unroll

    rows = []
    for r in tree_ds:
        for ids, labels in unroll(r):
            rows.append({"input_ids": ids, "labels": labels, "length": len(ids), "source_index": r["source_index"]})
    return datasets.Dataset.from_list(rows)


# ----------------------------------------------------------------------------- several processes
def cli_args(config: dict[str, Any]) -> list[str]:
    """``sftdata-train`` flags for a config dict: ``{"grad_accum": 2, "compile": False}`` ->
    ``["--grad-accum", "2", "--no-compile"]``."""
    out: list[str] = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


def torchrun(args: list[str], cwd: str | os.PathLike, *, nproc: int = 2, timeout: float = 300,
             fresh: Sequence[str | os.PathLike] = ()):
    """``python -m torch.distributed.run --standalone --nproc-per-node N *args`` (one torch thread
    per process); returns the ``subprocess.CompletedProcess``.

    Args:
        fresh: output directories the run creates from nothing. When given, a run in which a rank
            aborted with ``terminate called without an active exception`` (a rare gloo abort of
            the CPU test setup, seen once in CI: a rank's process dies with SIGABRT and no Python
            error) is run once more after removing them, with a warning naming the first
            attempt's tail. Any other failure, or a second abort, raises.

    Raises:
        AssertionError: the run exited non-zero (with the tails of its stdout and stderr).
    """
    import shutil
    import subprocess
    import sys
    import warnings

    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if proc.returncode != 0 and fresh and GLOO_ABORT in proc.stderr and "Traceback" not in proc.stderr.split(GLOO_ABORT)[0]:
        warnings.warn(f"torchrun: a rank aborted ({GLOO_ABORT!r}); running once more: {proc.stderr[-1500:]}", stacklevel=2)
        for d in fresh:
            shutil.rmtree(d, ignore_errors=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-6000:])
    return proc


#: What a process aborted by ``std::terminate`` without a C++ exception prints.
GLOO_ABORT = "terminate called without an active exception"
