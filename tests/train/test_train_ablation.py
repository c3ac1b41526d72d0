"""Mask ablation, reproduced: masking the prompt is what lets a small model learn the task.

Task: reverse four-letter words, ``<abcd>dcba#``, with a char-level tokenizer
(``<pad> < > # a..z``); 2,000 random training words, 200 disjoint held-out words.

Model: Qwen3 architecture, hidden 16, 2 layers, 2 query + 2 KV heads of 8, MLP 16, tied
embeddings (4,208 parameters), random init from the seed.

Training: the sftdata_train loop (``train(config)``), identical in both arms (same initial
weights, data order, steps and seed): fp32, AdamW lr 1e-2 (50 warm-up steps, cosine to 1e-3),
beta2 0.95, no weight decay, micro-batches of 32 sequences, 300 steps (~5 epochs). The only
difference: the labels of ``<abcd>`` are ``-100`` (masked) or the tokens themselves (unmasked).

Metric: exact match of the 4 reversed characters by greedy decoding after ``<word>``, on the
held-out words.

Measured while designing the test (this set-up, seeds 0-15, held-out exact match):

  masked   1.00 1.00 1.00 1.00 1.00 0.16 1.00 1.00 0.99 1.00 1.00 1.00 1.00 1.00 1.00 1.00  (median 1.00)
  unmasked 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.06 0.99 0.00 0.00 0.00 0.00 0.10 0.00  (median 0.00)

14 of 16 seeds have masked >= 0.99 and unmasked <= 0.10; seed 5 (masked still on its plateau)
and seed 9 (unmasked learns too) are the exceptions, so the test runs seeds 0, 1, 2 and asserts
on the medians.

Why: the unmasked arm must also predict the 4 prompt letters, which are random (an irreducible
ln 26 nats each: 4 of its 10 trained tokens), so its "copy the mirrored letter" behaviour must
stay switched off inside the prompt, where it would be confidently wrong. A model this small has
no room for that gating, and the prompt noise keeps pushing it back to "any letter"; with the
prompt masked, the whole gradient and the whole capacity go to the answer. The effect is one of
small capacity and a fixed budget: at hidden 64 both arms learn the task in the same number of
steps (the unmasked one is sometimes faster, the prompt loss also training the letter
embeddings).
"""

from __future__ import annotations

from sftdata_train.loop.trainer import train
from sftdata_train.testing import char_tokenizer, four_letter_words, reversal_exact_match, reversal_rows, tiny_qwen3_dir

STEPS = 300
SEEDS = (0, 1, 2)
MODEL_SIZE = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=8)



def _run(tmp_path, tok, test_words, *, seed: int, mask_prompt: bool) -> float:
    from transformers import AutoModelForCausalLM

    name = "masked" if mask_prompt else "unmasked"
    result = train(dict(
        data=str(tmp_path / f"data_{name}"), output_dir=str(tmp_path / f"out_{name}_{seed}"),
        model=str(tmp_path / f"init_{seed}"), precision="fp32", lr=1e-2, lr_scheduler="cosine", min_lr_ratio=0.1,
        warmup_steps=50, adam_beta2=0.95, weight_decay=0.0, max_tokens_per_batch=32 * 11, max_steps=STEPS,
        seed=seed, progress_bar=False,
    ))
    assert result.completed
    model = AutoModelForCausalLM.from_pretrained(str(result.final_model_dir))
    return reversal_exact_match(model, tok, test_words)


def test_masking_the_prompt_wins_by_a_wide_margin(tmp_path):
    import datasets

    tok = char_tokenizer()
    train_words, test_words = four_letter_words(2000, 200, seed=0)
    assert not set(train_words) & set(test_words)
    for mask_prompt in (True, False):
        rows = reversal_rows(train_words, tok, mask_prompt=mask_prompt)
        if mask_prompt:
            assert rows["labels"][0][:6] == [-100] * 6 and rows["labels"][0][6:] == rows["input_ids"][0][6:]
        else:
            assert rows["labels"][0] == rows["input_ids"][0]
        datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / f"data_{'masked' if mask_prompt else 'unmasked'}"))
    masked, unmasked = [], []
    for seed in SEEDS:
        tiny_qwen3_dir(tmp_path / f"init_{seed}", tok, seed=seed, **MODEL_SIZE)  # same initial weights for both arms
        masked.append(_run(tmp_path, tok, test_words, seed=seed, mask_prompt=True))
        unmasked.append(_run(tmp_path, tok, test_words, seed=seed, mask_prompt=False))
    print(f"held-out exact match after {STEPS} steps, seeds {SEEDS}: masked {masked}, unmasked {unmasked}")
    med_masked = sorted(masked)[len(SEEDS) // 2]
    med_gap = sorted(m - u for m, u in zip(masked, unmasked))[len(SEEDS) // 2]
    assert med_masked >= 0.9
    assert med_gap >= 0.5
