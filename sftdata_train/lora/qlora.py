"""QLoRA (Dettmers et al., *QLoRA*, 2023): the frozen model in 4 bits through bitsandbytes.

``load_in_4bit`` loads the model with ``transformers.BitsAndBytesConfig`` (4-bit ``nf4``/``fp4``
weights, bf16/fp32 compute) on one CUDA device; the LoRA adapters (:mod:`sftdata_train.lora`)
train on top in fp32. It needs ``bitsandbytes`` and CUDA, and one process (FSDP2 does not shard
bitsandbytes' packed weights): :func:`check_qlora` (when the config is validated) and
:func:`check_runtime` (when the process knows where it runs) refuse anything else.
"""

from __future__ import annotations

import contextlib
import importlib.util

import torch

from sftdata.errors import ConfigError


def check_qlora(cfg) -> None:
    """QLoRA's requirements: bitsandbytes, CUDA, not ``device: cpu``, not ``bf16-mixed``.

    Raises:
        ConfigError: naming what is missing and what to do.
    """
    if cfg.device == "cpu" or not torch.cuda.is_available():
        where = "device is cpu" if cfg.device == "cpu" else "CUDA is not available"
        raise ConfigError(
            f"load_in_4bit (QLoRA) needs a CUDA GPU ({where}): bitsandbytes' 4-bit kernels run on CUDA; "
            "drop load_in_4bit to train LoRA on the unquantized model"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "load_in_4bit (QLoRA) needs the `bitsandbytes` package, which is not installed: pip install bitsandbytes"
        )
    if cfg.precision == "bf16-mixed":
        raise ConfigError(
            "load_in_4bit (QLoRA) with precision bf16-mixed: bf16-mixed shards fp32 master weights with FSDP2, "
            "which a 4-bit model does not have; use precision bf16-true (the default under LoRA) or fp32"
        )


def check_runtime(cfg, info) -> None:
    """What only the process knows: QLoRA runs on one CUDA process.

    Raises:
        ConfigError: QLoRA on several processes or off CUDA.
    """
    if not cfg.load_in_4bit:
        return
    if info.distributed:
        raise ConfigError(
            f"load_in_4bit (QLoRA) on {info.world_size} processes: FSDP2 cannot shard bitsandbytes' packed 4-bit "
            "weights; run QLoRA on one GPU, or LoRA without load_in_4bit under torchrun"
        )
    if info.device.type != "cuda":
        raise ConfigError(f"load_in_4bit (QLoRA) needs a CUDA device, the run is on {info.device}")


def load_quantized(cfg, *, tokenizer, device: torch.device, dtype: torch.dtype, attn_implementation: str):
    """QLoRA's frozen model: ``from_pretrained(..., quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))``
    on ``device`` (the embedded default is written to a temporary dir first: quantization happens on load).

    ``dtype`` is that of the layers left unquantized (embeddings, norms, LM head) and of the 4-bit
    matmuls' compute (``bnb_4bit_compute_dtype``).
    """
    import tempfile

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from ..model import attention
    from ..model.loading import load_model

    attention.register()
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant, bnb_4bit_compute_dtype=dtype,
    )
    with contextlib.ExitStack() as stack:
        source = cfg.model
        if source is None:
            source = stack.enter_context(tempfile.TemporaryDirectory(prefix="sftdata-embedded-"))
            load_model(None, tokenizer=tokenizer, dtype=dtype, seed=cfg.seed).save_pretrained(source)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(source), quantization_config=quant, dtype=dtype, attn_implementation=attn_implementation,
                device_map={"": device.index or 0},
            )
        except OSError as e:
            raise ConfigError(f"cannot load model {cfg.model!r} in 4 bits: {e}") from e
    model.config.use_cache = False
    model.train()
    return model


__all__ = ["check_qlora", "check_runtime", "load_quantized"]
