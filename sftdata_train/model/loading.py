"""Loading the model and tokenizer, and the embedded default model.

* A local dir or a Hub id: ``AutoModelForCausalLM.from_pretrained(path, dtype=...)``; the
  tokenizer from ``--tokenizer`` or the same path.
* The **embedded default** (``model`` empty or ``embedded``): a tiny Qwen3-architecture model
  built from :func:`default_model_config` with random weights (seeded), whose vocabulary
  matches the embedded tokenizer (``sftdata.assets.default_tokenizer_path()``). It makes the
  README command train end to end offline on a CPU; it learns format, not language.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from sftdata.errors import ConfigError

from . import attention

#: Size of the embedded default: ~1M non-embedding parameters, trains at a few steps/s on a CPU.
DEFAULT_MODEL_SIZE: dict[str, Any] = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def load_tokenizer(name_or_path: str | None):
    """The tokenizer at ``name_or_path`` (dir or Hub id), or the embedded one for ``None``:
    :func:`sftdata.masking.tokenizer.load_tokenizer` (the one loader), without its chat-template and
    fast-tokenizer requirements (training reads prepared rows); the EOS token pads when the
    tokenizer has no pad token.

    Raises:
        ConfigError: the tokenizer cannot be loaded (the message names the path or Hub id).
    """
    from sftdata.masking.tokenizer import load_tokenizer as load

    tok = load(name_or_path, require_chat_template=False, require_fast=False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def default_model_config(tokenizer, **overrides: Any):
    """``Qwen3Config`` of the embedded default model, sized to ``tokenizer``.

    ``vocab_size`` is ``len(tokenizer)`` rounded up to a multiple of 64; pad/eos/bos ids come
    from the tokenizer. ``overrides`` replace any :data:`DEFAULT_MODEL_SIZE` value.
    """
    from transformers import Qwen3Config

    vocab = int(math.ceil(len(tokenizer) / 64) * 64)
    size = {**DEFAULT_MODEL_SIZE, **overrides}
    return Qwen3Config(
        vocab_size=vocab,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **size,
    )


def attn_for(padding_free: bool, requested: str) -> tuple[str, str | None]:
    """(transformers ``attn_implementation``, varlen backend) for a run.

    Padding-free batches use :data:`attention.ATTN_NAME` with ``requested`` as its backend
    (``eager`` is not a varlen backend: it maps to ``sdpa``); padded batches use transformers'
    own ``sdpa`` (or ``eager``), which applies the padding mask.
    """
    if padding_free:
        backend = "sdpa" if requested == "eager" else requested
        return attention.ATTN_NAME, backend
    if requested not in ("auto", "sdpa", "eager"):
        raise ConfigError(f"attn_implementation={requested!r} needs padding-free batches (drop --no-padding-free)")
    return ("eager" if requested == "eager" else "sdpa"), None


def load_model(
    name_or_path: str | None,
    *,
    tokenizer=None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    seed: int = 0,
):
    """A causal LM ready to train.

    Args:
        name_or_path: a local HF model dir, a Hub id, or ``None`` for the embedded default
            (then ``tokenizer`` is required to size its vocabulary).
        dtype: parameter dtype (fp32 master weights for ``bf16-mixed``/``fp32``, bf16 for
            ``bf16-true``).
        attn_implementation: a transformers name (``sdpa``, ``eager``, ...) or
            :data:`attention.ATTN_NAME`.
        seed: seeds the random init of the embedded default.

    Returns:
        ``transformers.PreTrainedModel`` (causal LM) on CPU, in train mode.
    """
    from transformers import AutoModelForCausalLM

    attention.register()
    if name_or_path is None:
        if tokenizer is None:
            raise ConfigError("the embedded default model needs the tokenizer to size its vocabulary")
        cfg = default_model_config(tokenizer)
        fork = torch.random.fork_rng(devices=[])
        with fork:
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn_implementation)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    else:
        from sftdata.hub_access import hub_kwargs

        hub = hub_kwargs(name_or_path, what="model")  # Hub unreachable: the cache or one error, in seconds
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(name_or_path), dtype=dtype, attn_implementation=attn_implementation, **hub
            )
        except OSError as e:
            raise ConfigError(f"cannot load model {name_or_path!r}: {e}") from e
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise ConfigError(
            f"tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.get_input_embeddings().weight.shape[0]} rows"
        )
    model.config.use_cache = False
    model.train()
    return model


def model_config(name_or_path: str | None, tokenizer=None):
    """The HF config of ``name_or_path`` (a dir or Hub id), or of the embedded default for None."""
    if name_or_path is None:
        if tokenizer is None:
            raise ConfigError("the embedded default model needs the tokenizer to size its vocabulary")
        return default_model_config(tokenizer)
    from transformers import AutoConfig

    from sftdata.hub_access import hub_kwargs

    hub = hub_kwargs(name_or_path, what="model")
    try:
        return AutoConfig.from_pretrained(str(name_or_path), **hub)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the config of model {name_or_path!r}: {e}") from e


@contextlib.contextmanager
def params_on_meta():
    """Create parameters on the meta device (no memory) while buffers are created for real.

    Non-persistent buffers such as the rotary ``inv_freq`` are computed in ``__init__`` and
    are not in any state dict, so they must exist for real in a model whose weights come
    later (FSDP2's broadcast from rank 0, a sharded checkpoint).
    """
    import torch.nn as nn

    original = nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        p = module._parameters.get(name)
        if p is not None and p.device.type != "meta":  # already-meta params (ties) keep their identity
            module._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def build_skeleton(config, *, dtype: torch.dtype, attn_implementation: str):
    """A causal LM of ``config`` with parameters on the meta device and real buffers, in train mode.

    Fill it with :func:`sftdata_train.distributed.materialize` and a state dict.
    """
    from transformers import AutoModelForCausalLM

    attention.register()
    with params_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False
    model.train()
    return model


def count_matmul_params(model) -> int:
    """Parameters that take part in a matmul per token: all, minus the input embedding table,
    plus the LM head (counted once even when tied). Used for the ``6 * params * tokens`` FLOPs."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total -= emb.numel()
    if head is emb:
        total += head.numel()
    return total
