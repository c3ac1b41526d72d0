"""sftdata_train, HF Trainer and a plain loop on prefix-tree rows.

Data: synthetic conversations rendered with a Qwen3 template (it drops earlier reasoning and
rewrites turns) by today's exact policy, merged into tree rows per conversation
(``sftdata_train.testing.prepare_tree_dir``); the linear layout of the same examples is
``sftdata.masking.tree.unroll`` of every tree. One optimizer step over all of the data on each layout
must give the same loss and gradients (fp32, 1e-5 relative), however the step is split into
micro-batches (gradient accumulation) and ranks (2 processes, gloo, FSDP2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sftdata.collate.collators import PaddingFreeCollator
from sftdata.errors import ConfigError
from sftdata_train.loop.trainer import Trainer
from sftdata_train.testing import prepare_tree_dir, synthetic_conversations, torchrun, unrolled_dataset

QWEN3_TEMPLATE = str(Path(__file__).resolve().parents[2] / "sftdata" / "testing" / "templates" / "qwen3.jinja")
REL = 1e-5


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("trees")
    tree = prepare_tree_dir(synthetic_conversations(40, seed=4), base / "tree", chat_template=QWEN3_TEMPLATE)
    assert sum(1 for p in tree["parent"] if p) >= 10, "the Qwen3 template should rewrite some conversations"
    unrolled_dataset(tree).save_to_disk(str(base / "linear"))
    return base, tree


def _cfg(data, out, **kw):
    base = dict(data=str(data), output_dir=str(out), precision="fp32", lr=1e-3, warmup_steps=0, max_steps=1,
                max_tokens_per_batch=3000, progress_bar=False, seed=3, weight_decay=0.0, max_grad_norm=0.0,
                shuffle=False)
    base.update(kw)
    return base


def one_step(data, out, **kw):
    """Loss, gradients and micro-batch count of one optimizer step over a whole epoch."""
    trainer = Trainer(_cfg(data, out, **kw))
    grads = {}

    def capture(*a, **k):
        grads.update({n: p.grad.detach().clone() for n, p in trainer.wrapper.named_parameters() if p.grad is not None})

    trainer.optimizer.step = capture
    n = trainer.stream.batches_per_epoch
    out = trainer.train_step([next(trainer.stream) for _ in range(n)])
    return out, grads, n, trainer


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_training_step_on_trees_equals_linear_with_accumulation(dirs, tmp_path, capsys):
    base, tree = dirs
    t_out, t_grads, t_n, trainer = one_step(base / "tree", tmp_path / "t")
    assert "prefix trees, trained with tree attention" in capsys.readouterr().err
    assert "in the linear layout" in trainer.data_summary
    l_out, l_grads, l_n, _ = one_step(base / "linear", tmp_path / "l")
    assert t_n >= 2 and l_n > t_n, (t_n, l_n)  # several micro-batches, split differently
    assert t_out.trained_tokens == l_out.trained_tokens
    assert t_out.tokens == sum(tree["length"]) < l_out.tokens == sum(tree["linear_length"])
    assert t_out.flops < l_out.flops  # what tree attention computes: sum(2 depth + 1) per token
    rel_loss = abs(t_out.loss - l_out.loss) / l_out.loss
    floor = 1e-6 * max(float(g.abs().max()) for g in l_grads.values())
    rel_grad = max(float((t_grads[k] - l_grads[k]).abs().max()) / max(float(l_grads[k].abs().max()), floor)
                   for k in l_grads)
    print(f"sftdata_train step, trees in {t_n} micro-batches vs linear in {l_n}: loss {t_out.loss:.6f} vs "
          f"{l_out.loss:.6f}, rel loss diff {rel_loss:.2e}, max rel grad diff {rel_grad:.2e}")
    assert rel_loss < REL and rel_grad < REL


def test_tree_rows_refuse_padded_batches(dirs, tmp_path):
    base, _ = dirs
    with pytest.raises(ConfigError, match="prefix-tree rows need padding-free"):
        Trainer(_cfg(base / "tree", tmp_path / "p", padding_free=False))


STEP_SCRIPT = """
import json, sys, torch
from sftdata_train.loop import Trainer
cfg, n_micro, dump = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
trainer = Trainer(cfg)
grads = {}
def capture(*a, **k):
    for name, p in trainer.wrapper.named_parameters():
        if p.grad is not None:
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            grads[name] = g.detach().clone()
trainer.optimizer.step = capture
out = trainer.train_step([next(trainer.stream) for _ in range(n_micro)])
if trainer.info.is_main:
    torch.save({"loss": out.loss, "trained_tokens": out.trained_tokens, "grads": grads}, dump)
from sftdata_train.distributed import cleanup
cleanup()
"""


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_two_processes_on_trees_equal_one_process_linear(dirs, tmp_path):
    """torchrun, 2 ranks (gloo, FSDP2), one optimizer step over the whole epoch of tree rows (each
    rank a share of the micro-batches) vs one process on the linear layout: loss and every
    parameter gradient (gathered from the shards)."""
    import datasets
    from sftdata.collate.samplers import TokenBudgetBatchSampler

    base, _ = dirs
    budget = 2000
    n_tree = len(TokenBudgetBatchSampler(datasets.load_from_disk(str(base / "tree"))["length"], budget, seed=3))
    assert n_tree % 2 == 0, n_tree  # no batch repeated to even out the ranks
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    cfg = _cfg(base / "tree", tmp_path / "fsdp", max_tokens_per_batch=budget)
    proc = torchrun([str(script), json.dumps(cfg), str(n_tree // 2), str(tmp_path / "tree.pt")], tmp_path, timeout=400)
    assert "prefix trees, trained with tree attention" in proc.stderr
    tree = torch.load(tmp_path / "tree.pt")
    single, l_grads, n_lin, _ = one_step(base / "linear", tmp_path / "single", max_tokens_per_batch=budget)
    assert tree["trained_tokens"] == single.trained_tokens
    rel_loss = abs(tree["loss"] - single.loss) / single.loss
    floor = 1e-6 * max(float(g.abs().max()) for g in l_grads.values())
    assert tree["grads"].keys() == l_grads.keys()
    rel_grad = max(float((tree["grads"][k] - l_grads[k]).abs().max()) / max(float(l_grads[k].abs().max()), floor)
                   for k in l_grads)
    print(f"2 processes on trees ({n_tree} micro-batches) vs 1 process linear ({n_lin}): loss {tree['loss']:.6f} vs "
          f"{single.loss:.6f}, rel loss diff {rel_loss:.2e}, max rel grad diff {rel_grad:.2e}")
    assert rel_loss < REL and rel_grad < REL


# ----------------------------------------------------------------------------- interop
def _tiny_model(tokenizer, attn):
    from sftdata_train.model.loading import default_model_config
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = default_model_config(tokenizer, hidden_size=64, intermediate_size=128, head_dim=16)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)


def test_hf_trainer_on_tree_rows(dirs, tmp_path):
    """HF Trainer drops `parent` (not a forward argument); the collator recovers the tree from the
    depths, transformers forwards subtree_end to the registered attention and its loss reads
    shift_labels: the first step's loss equals the linear layout's loss of the same rows."""
    from sftdata_train.model import tree_attention
    from sftdata_train.model.loading import load_tokenizer
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    base, tree = dirs
    tok = load_tokenizer(None)
    rows = tree.select(range(12))
    assert sum(1 for p in rows["parent"] if p) >= 3
    seen = []

    def collate(features):
        assert all("parent" not in f for f in features)  # dropped by the Trainer
        batch = PaddingFreeCollator()(features)
        seen.append(batch)
        return batch

    model = _tiny_model(tok, tree_attention.register())
    ref = _tiny_model(tok, "sdpa")  # same init
    with torch.no_grad():
        lin = unrolled_dataset(rows)
        total, n = 0.0, 0
        for r in lin:
            logits = ref(input_ids=torch.tensor([r["input_ids"]]), use_cache=False).logits[0, :-1]
            tgt = torch.tensor(r["labels"][1:], dtype=torch.int64)
            total += float(torch.nn.functional.cross_entropy(logits, tgt, ignore_index=-100, reduction="sum"))
            n += int((tgt != -100).sum())
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=12, learning_rate=1e-3,
                             report_to=[], logging_steps=1, save_strategy="no", use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0)
    trainer = HFTrainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.train()
    assert trainer.state.global_step == 2 and all("subtree_end" in b for b in seen)
    first = [h for h in trainer.state.log_history if "loss" in h][0]["loss"]
    print(f"HF Trainer first-step loss on tree rows {first:.6f} vs linear layout {total / n:.6f}")
    assert math.isclose(first, total / n, rel_tol=REL)


def test_plain_pytorch_loop_on_tree_rows(dirs):
    from sftdata.collate.samplers import TokenBudgetBatchSampler
    from sftdata_train.model import tree_attention
    from sftdata_train.model.loading import load_tokenizer
    from torch.utils.data import DataLoader

    _, tree = dirs
    model = _tiny_model(load_tokenizer(None), tree_attention.TREE_ATTN_NAME)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = tree.select_columns(["input_ids", "labels", "parent", "position_ids"]).with_format("numpy")
    sampler = TokenBudgetBatchSampler(tree["length"], 2000, seed=0)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=PaddingFreeCollator())
    probe = PaddingFreeCollator()([data[i] for i in range(8)])
    assert "subtree_end" in probe

    def probe_loss():
        with torch.no_grad():
            return float(model(**probe).loss)

    before = probe_loss()
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in loader:
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
    assert probe_loss() < before


def test_prepare_pack_train_end_to_end_on_trees(dirs, tmp_path, capsys):
    """Tree rows -> `sftdata pack` -> `sftdata-train` (CLI, embedded model, CPU): packed trees train
    and the start-up line reports the tokens saved."""
    from sftdata.cli import main as sftdata_main
    from sftdata_train.cli import main as train_main

    base, tree = dirs
    assert sftdata_main(["pack", str(base / "tree"), "--max-length", "1024", "--output", str(tmp_path / "packed"),
                         "--truncation", "turns"]) == 0
    out = capsys.readouterr().out
    assert "prefix trees:" in out and "in the linear layout" in out
    assert train_main(["--data", str(tmp_path / "packed"), "--output-dir", str(tmp_path / "run"), "--max-steps", "2",
                       "--precision", "fp32", "--max-tokens-per-batch", "1024", "--no-progress-bar"]) == 0
    err = capsys.readouterr().err
    assert "packed rows" in err and "prefix trees, trained with tree attention" in err and "linear layout" in err
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(math.isfinite(r["loss"]) for r in recs)
