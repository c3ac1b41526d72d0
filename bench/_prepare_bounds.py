"""The bounds of ``bench/prepare.py``: render each conversation once and tokenize it, with
transformers (a1) or with sftdata's own renderer and the Rust backend (a2, a3)."""

from __future__ import annotations

from _prepare_stages import cpu, perf

CHUNK = 64  # texts per encode_batch call in (a2); same as sftdata.prepare._CHUNK


def _filled(messages: list[dict]) -> list[dict]:
    """``content: ""`` where it is None: templates that read ``message.content`` on a tool-call
    message fail without it (transformers drops None keys); sftdata renders it so too."""
    return [{**m, "content": ""} if m.get("content") is None else m for m in messages]


def bound_hf(tok, convs) -> dict:
    """apply_chat_template(tokenize=False) once + tokenizer(text) per conversation
    (``content: ""`` instead of None, as sftdata renders it, so that every template renders)."""
    tokens, fails, first_err = 0, 0, None
    counts: list[int | None] = []
    c0, t0 = cpu(), perf()
    for c in convs:
        try:
            text = tok.apply_chat_template(_filled(c.template_messages()), tools=c.template_tools(), tokenize=False)
        except Exception as e:  # noqa: BLE001
            fails += 1
            first_err = first_err or f"{type(e).__name__}: {e}"
            counts.append(None)
            continue
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        tokens += n
        counts.append(n)
    return {"seconds": perf() - t0, "cpu": cpu() - c0, "tokens": tokens, "fails": fails, "error": first_err, "counts": counts}


def bound_sftdata(tok, convs, fast: bool = False) -> dict:
    """sftdata.masking.template.ChatTemplate.render + backend encode_batch (64 texts per call); with
    ``fast`` encode_batch_fast (ids only, no offsets: the cheapest exact tokenization)."""
    from sftdata.masking.template import ChatTemplate
    from sftdata.masking.tokenizer import special_tokens_map, template_source

    specials = special_tokens_map(tok)
    templates = {}
    backend = tok.backend_tokenizer
    tokens, fails, first_err = 0, 0, None
    c0, t0 = cpu(), perf()
    for i in range(0, len(convs), CHUNK):
        texts = []
        for c in convs[i : i + CHUNK]:
            tools = c.template_tools()
            key = bool(tools)
            if key not in templates:
                templates[key] = ChatTemplate(template_source(tok, [{}] if key else None), specials)
            try:
                texts.append(templates[key].render(_filled(c.template_messages()), tools))
            except Exception as e:  # noqa: BLE001
                fails += 1
                first_err = first_err or f"{type(e).__name__}: {e}"
        if texts:
            encode = backend.encode_batch_fast if fast else backend.encode_batch
            tokens += sum(len(e.ids) for e in encode(texts, add_special_tokens=False))
    return {"seconds": perf() - t0, "cpu": cpu() - c0, "tokens": tokens, "fails": fails, "error": first_err}
