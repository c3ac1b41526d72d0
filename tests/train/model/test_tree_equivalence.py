"""Tree rows train exactly like their linear examples: loss and every parameter gradient, fp32.

Reference: each root-to-leaf path of the tree (``sftdata.masking.tree.unroll``, the linear layout) run
on its own through transformers' ``sdpa`` attention, loss = summed CE over trained positions /
their count. Tree side: the same examples as tree rows through ``PaddingFreeCollator`` and the
registered tree attention (``sftdata_tree``), alone, packed, and through the padded collator's
dense mask. Tiny Qwen3/Llama models from configs. Agreement within 1e-5 relative (max over
parameters of ``max|g_tree - g_lin| / max|g_lin|``). Negative controls: a mask letting a branch
see its sibling, positions not reset to depth, ``shift_labels`` ignored.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftdata.collate.collators import PaddingCollator, PaddingFreeCollator
from sftdata.packing import pack_dataset
from sftdata.testing.tree_strategies import linear_rows, tree_rows
from sftdata.masking.tree import IGNORE_INDEX, unroll
from sftdata_train.model import tree_attention  # noqa: F401  (registers sftdata_tree)
from sftdata_train.loss import SFTLossModel
from sftdata_train.testing import shared_data_dir, tree_dataset, tree_rows_from_examples

REL = 1e-5


def make_model(arch: str = "qwen3", vocab: int = 96, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=8192, initializer_range=0.1,
                  pad_token_id=0, tie_word_embeddings=False)
    cfg = Qwen3Config(**common) if arch == "qwen3" else LlamaConfig(**common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)
    return model.train()


def _grads(model):
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def linear_step(model, rows):
    """Loss and gradients of the linear layout: every path alone, HF sdpa, sum / count."""
    model.set_attn_implementation("sdpa")
    model.zero_grad(set_to_none=True)
    total, n = 0.0, 0
    for r in rows:
        for ids, labels in unroll({**r, "parent": r.get("parent", [])}):
            if len(ids) < 2:
                continue
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1]
            tgt = torch.tensor(labels[1:], dtype=torch.int64)
            total = total + F.cross_entropy(logits, tgt, ignore_index=IGNORE_INDEX, reduction="sum")
            n += int((tgt != IGNORE_INDEX).sum())
    if n == 0:
        return 0.0, {}, 0
    loss = total / n
    loss.backward()
    return float(loss.detach()), _grads(model), n


def tree_step(model, batch, *, attn: str = "sftdata_tree"):
    """Loss and gradients of one collated batch through sftdata_train's loss (shift_labels)."""
    model.set_attn_implementation(attn)
    model.zero_grad(set_to_none=True)
    loss_sum, n = SFTLossModel(model)(**batch)
    loss = loss_sum / n
    loss.backward()
    return float(loss.detach()), _grads(model), int(n)


def rel_diff(a, b) -> tuple[float, float]:
    """(relative loss difference, max over parameters of max|ga - gb| / max|gb|).

    A parameter whose reference gradient is exactly 0 (e.g. q/k projections when every trained
    token attends to one key: a softmax over one key is constant) is compared against 1e-6 of
    the largest gradient instead of 0.
    """
    (la, ga, _), (lb, gb, _) = a, b
    floor = 1e-6 * max(float(g.abs().max()) for g in gb.values())
    worst = max(float((ga[k] - gb[k]).abs().max()) / max(float(gb[k].abs().max()), floor) for k in gb)
    return abs(la - lb) / abs(lb), worst


def assert_equivalent(tree, linear, what: str):
    assert tree[2] == linear[2], f"{what}: {tree[2]} trained tokens vs {linear[2]}"
    dl, dg = rel_diff(tree, linear)
    print(f"{what}: loss {tree[0]:.6f} vs {linear[0]:.6f}, rel loss diff {dl:.2e}, max rel grad diff {dg:.2e}")
    assert dl < REL and dg < REL, f"{what}: loss rel diff {dl:.2e}, grad rel diff {dg:.2e}"
    return dl, dg


def _with_trees(rows):
    return [r for r in rows if r.get("parent")] and rows


# ----------------------------------------------------------------------------- generated trees
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(tree_rows(vocab=96), linear_rows(vocab=96)), min_size=2, max_size=5))
@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_generated_trees_equal_linear(arch, rows):
    if not _with_trees(rows):
        return
    model = make_model(arch)
    lin = linear_step(model, rows)
    if lin[2] == 0:
        return
    assert_equivalent(tree_step(model, PaddingFreeCollator()(rows)), lin, f"{arch} generated trees")


def _qwen3_examples(conversations):
    from sftdata import Encoder, RowError
    from sftdata.testing.tokenizers import build_tokenizer

    enc = Encoder(build_tokenizer("qwen3"), turn_policy="exact")
    out = []
    for i, conv in enumerate(conversations):
        try:
            out += [{"input_ids": e.input_ids, "labels": e.labels, "parent": getattr(e, "parent", []), "source_index": i}
                    for e in enc.encode(conv)]
        except RowError:
            continue
    return out


@pytest.fixture(scope="module")
def qwen3_model():
    from sftdata.testing.tokenizers import build_tokenizer

    return make_model("qwen3", vocab=-(-len(build_tokenizer("qwen3")) // 64) * 64)


def test_generated_qwen3_conversations_equal_linear(qwen3_model):
    """Conversations drawn by sftdata.testing.strategies, rendered by a Qwen3-like template under
    today's exact policy, merged into tree rows."""
    from sftdata.testing.strategies import conversations_for
    from sftdata.testing.tokenizers import family_caps

    convs = []

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(conversations_for(family_caps("qwen3"), ends_with="assistant", reasoning=True, max_turns=3, unicode=False))
    def draw(conv):
        convs.append(conv)

    draw()
    rows = tree_rows_from_examples(_qwen3_examples(convs))
    assert any(r["parent"] for r in rows), "the draw should give at least one rewritten turn"
    assert_equivalent(tree_step(qwen3_model, PaddingFreeCollator()(rows)), linear_step(qwen3_model, rows),
                      "qwen3 generated conversations")


# ----------------------------------------------------------------------------- real traces
def tau_bench_tree_rows(n: int = 2):
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("../shared/data is absent")
    from sftdata import prepare
    from sftdata.testing.tokenizers import build_tokenizer

    raw = json.loads((shared / "tau-bench" / "gpt-4o-airline.json").read_text())
    rows = []
    for r in raw[:n]:  # real traces, shortened so that a CPU test stays fast
        msgs = [dict(m) for m in r["traj"][:12]]
        msgs[0]["content"] = msgs[0]["content"][:300]
        rows.append({"messages": msgs})
    ds = prepare(rows, build_tokenizer("qwen3"), turn_policy="exact")
    return tree_rows_from_examples(ds)


@pytest.mark.shared_data
def test_tau_bench_traces_alone_and_packed_equal_linear(qwen3_model):
    rows = tau_bench_tree_rows()
    assert all(r["parent"] for r in rows) and sum(r["linear_length"] for r in rows) > 1.5 * sum(r["length"] for r in rows)
    lin = linear_step(qwen3_model, rows)
    assert_equivalent(tree_step(qwen3_model, PaddingFreeCollator()(rows)), lin, "tau-bench trees")
    packed, _ = pack_dataset(tree_dataset(rows), sum(r["length"] for r in rows) + 16)
    assert len(packed) == 1 and len(packed[0]["seq_lengths"]) == len(rows)
    assert_equivalent(tree_step(qwen3_model, PaddingFreeCollator()([packed[0]])), lin, "tau-bench packed trees")


# ----------------------------------------------------------------------------- layouts and paths
def small_rows():
    rng = np.random.default_rng(0)
    ex = []
    for s in range(3):
        base = rng.integers(1, 96, 40).tolist()
        ex.append({"input_ids": base, "labels": [IGNORE_INDEX] * 40, "source_index": s})
        for _ in range(3):
            cut = int(rng.integers(5, 35))
            tail = rng.integers(1, 96, int(rng.integers(3, 12))).tolist()
            ex.append({"input_ids": base[:cut] + tail, "labels": [IGNORE_INDEX] * cut + tail, "source_index": s})
    ex.append({"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9], "source_index": 9})
    return tree_rows_from_examples(ex)


@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_packed_padded_and_hf_loss_equal_linear(arch, monkeypatch):
    model = make_model(arch)
    rows = small_rows()
    lin = linear_step(model, rows)
    packed, _ = pack_dataset(tree_dataset(rows), 128, seed=0)
    assert len(packed) < len(rows)
    assert_equivalent(tree_step(model, PaddingFreeCollator()([packed[i] for i in range(len(packed))])), lin,
                      f"{arch} packed trees")
    # the per-run SDPA path of long rows
    from sftdata_train.model import attention

    monkeypatch.setattr(attention, "DENSE_MASK_MAX_TOKENS", 16)
    assert_equivalent(tree_step(model, PaddingFreeCollator()(rows)), lin, f"{arch} trees, per-run sdpa")
    # the padded collator's dense (B, 1, T, T) mask through transformers' own sdpa
    pad = PaddingCollator(0, pad_to_multiple_of=8, dense_tree_mask=True)(rows)
    assert_equivalent(tree_step(model, pad, attn="sdpa"), lin, f"{arch} padded dense tree mask")
    # transformers' own loss reads shift_labels
    model.set_attn_implementation("sftdata_tree")
    with torch.no_grad():
        hf = float(model(**PaddingFreeCollator()(rows)).loss)
    assert abs(hf - lin[0]) / lin[0] < REL


# ----------------------------------------------------------------------------- negative controls
def test_negative_controls_change_the_loss():
    model = make_model("qwen3")
    rows = small_rows()
    good = tree_step(model, PaddingFreeCollator()(rows))
    assert_equivalent(good, linear_step(model, rows), "control baseline")
    batch = PaddingFreeCollator()(rows)
    par = np.asarray(rows[0]["parent"])
    # 1. a branch sees its sibling: extend the subtree of the first branch start over the next branch
    starts = [i for i in range(1, par.size) if par[i] != i - 1]
    leak = dict(batch, subtree_end=batch["subtree_end"].clone())
    leak["subtree_end"][0, starts[0] : starts[1]] = int(batch["subtree_end"][0, starts[1]])
    # 2. positions not reset to depth
    flat_pos = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).view(1, -1))
    # 3. shift_labels ignored: the plain label shift predicts a branch's first token from the
    #    previous position (the end of its sibling)
    no_shift = {k: v for k, v in batch.items() if k != "shift_labels"}
    for name, bad in (("sibling visible", leak), ("positions not depths", flat_pos), ("shift_labels ignored", no_shift)):
        loss = tree_step(model, bad)[0]
        print(f"negative control {name}: loss {loss:.6f} vs {good[0]:.6f}")
        assert abs(loss - good[0]) > 1e-3, name


def test_sft_loss_sum_takes_shift_labels():
    """shift_labels = the shifted labels gives the same loss and count; other targets change it."""
    from sftdata_train.loss import sft_loss_sum, shift_labels

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    h = torch.randn(1, 6, 8)
    labels = torch.tensor([[-100, 3, 4, -100, 5, 6]])
    a = sft_loss_sum(h, labels, head)
    b = sft_loss_sum(h, labels, head, shift_labels=shift_labels(labels))
    assert torch.equal(a[0], b[0]) and int(a[1]) == int(b[1]) == 4
    tree = torch.tensor([[3, -100, -100, 5, -100, -100]])  # position 0 predicts 3, position 3 predicts 5
    c = sft_loss_sum(h, labels, head, shift_labels=tree)
    assert int(c[1]) == 2 and not torch.allclose(c[0], a[0])
