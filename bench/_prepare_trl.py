"""Row (c) of ``bench/prepare.py``: TRL's ``SFTTrainer._prepare_dataset`` on the same conversations."""

from __future__ import annotations

import copy
import gc
import json
import tempfile
import time
from pathlib import Path

#: Test-tokenizer family -> TRL training template (trl/chat_templates/*_training.jinja).
TRL_TEMPLATE_FOR_FAMILY = {
    "chatml": "qwen2_5_training.jinja",
    "qwen3": "qwen3_training.jinja",
    "llama3": "llama3_training.jinja",
    "gemma": "gemma_training.jinja",
    "mistral": None,  # TRL ships no Mistral training template
}

perf = time.perf_counter
cpu = time.process_time  # CPU time of this process, all threads (the machine may be shared)


# ----------------------------------------------------------------------------------
# (c) TRL
# ----------------------------------------------------------------------------------


def trl_template(tok, family: str | None) -> tuple[str | None, str]:
    """(template text or None, how it was chosen / why none)."""
    from trl.chat_template_utils import (
        get_training_chat_template,
        has_generation_markers,
    )

    if has_generation_markers(tok.chat_template):
        return tok.chat_template, "tokenizer's own template (has {% generation %})"
    try:
        t = get_training_chat_template(tok)
        if t is not None:
            return t, "trl.get_training_chat_template(tokenizer)"
    except Exception:  # noqa: BLE001 - unknown template: fall back to the family mapping
        pass
    import trl

    tdir = Path(trl.__file__).parent / "chat_templates"
    how = "family"
    if family is None:  # guess from the template's markers
        src = tok.chat_template if isinstance(tok.chat_template, str) else str(tok.chat_template)
        if "<|im_start|>" in src:
            family = "qwen3" if "<think>" in src else "chatml"
        elif "<|start_header_id|>" in src:
            family = "llama3"
        elif "<start_of_turn>" in src:
            family = "gemma"
        how = "guessed from template markers"
    name = TRL_TEMPLATE_FOR_FAMILY.get(family or "")
    if name is None:
        return None, f"template lacks {{% generation %}} and TRL has no training template for family {family!r}"
    return (tdir / name).read_text(encoding="utf-8"), f"trl/chat_templates/{name} ({how})"


def run_trl(tok, convs, family: str | None, num_proc: int) -> dict:
    """Time SFTTrainer._prepare_dataset on the whole dataset; {'error': reason} if TRL refuses."""
    try:
        import datasets
        import trl
        from transformers import Qwen3Config, Qwen3ForCausalLM
    except Exception as e:  # noqa: BLE001
        return {"error": f"import failed: {type(e).__name__}: {e}"}
    template, how = trl_template(tok, family)
    if template is None:
        return {"error": how}
    ttok = copy.deepcopy(tok)
    ttok.chat_template = template
    # tool-call arguments: JSON text where the template accepts strings (no Arrow struct
    # unification), else dicts (Arrow fills other tools' argument keys with null).
    args_as_string = "arguments is string" in template
    note = "" if args_as_string else "; Arrow-unified tool-call arguments"

    def trl_messages(c):
        out = []
        for m in c.template_messages():
            m = dict(m)
            if "tool_calls" in m:
                m["tool_calls"] = [
                    {**tc, "function": {**tc["function"], "arguments": json.dumps(tc["function"]["arguments"], ensure_ascii=False)}}
                    if args_as_string
                    else tc
                    for tc in m["tool_calls"]
                ]
            out.append(m)
        return out

    t0 = perf()
    rows = [{"messages": trl_messages(c), "tools": json.dumps(c.template_tools(), ensure_ascii=False)} for c in convs]
    ds = datasets.Dataset.from_list(rows)
    build_s = perf() - t0
    try:
        cfg = Qwen3Config(
            vocab_size=len(ttok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=1 << 17,
        )
        model = Qwen3ForCausalLM(cfg)
        with tempfile.TemporaryDirectory() as out_dir:
            sft_args = trl.SFTConfig(
                output_dir=out_dir,
                assistant_only_loss=True,
                max_length=None,
                report_to=[],
                dataset_num_proc=None if num_proc <= 1 else num_proc,
                packing=False,
                use_cpu=True,
                bf16=False,
            )
            trainer = trl.SFTTrainer(model=model, args=sft_args, train_dataset=ds.select([0]), processing_class=ttok)
            gc.collect()
            c0, t0 = cpu(), perf()
            out = trainer._prepare_dataset(ds, trainer.processing_class, sft_args, False, None, "train")
            seconds, cpu_s = perf() - t0, cpu() - c0
    except Exception as e:  # noqa: BLE001 - report TRL's reason in the row
        return {"error": f"TRL refused: {type(e).__name__}: {str(e).splitlines()[0][:160]}", "how": how}
    ids = out["input_ids"]
    labels = out["labels"]
    return {
        "seconds": seconds,
        "cpu": cpu_s,
        "examples": len(ids),
        "tokens": sum(len(x) for x in ids),
        "trained": sum(sum(1 for v in lab if v != -100) for lab in labels),
        "how": how + note,
        "build_s": build_s,
    }
