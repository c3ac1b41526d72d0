"""LoRA and QLoRA adapters through ``peft``, trained by the same loss path as full fine-tuning.

With ``lora_r > 0`` the run's Hugging Face model is handed to ``peft.get_peft_model`` with a
``LoraConfig`` built from the config keys (Hu et al., *LoRA: Low-Rank Adaptation of Large
Language Models*, 2021: ``W x + (alpha / r) B A x``, ``B`` initialised to zero so step 0 is the
base model). peft replaces the targeted ``nn.Linear`` modules in place and freezes every other
parameter, so the model object the trainer already holds (and :class:`~sftdata_train.loss.SFTLossModel`
wraps) is the adapted one: hidden states from the decoder, trained rows selected before the
(frozen) LM head, the chunked cross-entropy; the ``attn_implementation`` the trainer set is
kept (checked). Only the trainable parameters reach AdamW (:func:`sftdata_train.loop.optim.param_groups`
skips frozen ones), the gradient norm and the clipping.

DoRA (``use_dora``, Liu et al., *DoRA: Weight-Decomposed Low-Rank Adaptation*, 2024): peft's
``use_dora``; each adapted weight becomes ``m · (W + s B A) / ||W + s B A||`` with the norm taken
per output feature and the magnitude ``m`` (initialised to the norm of ``W``, so step 0 is still
the base model) trained with the adapters. It costs one extra pass over each adapted weight per
forward (the norm), which the MFU count leaves out.

Defaults: ``lora_alpha`` = 2 × ``lora_r``; target modules = every ``nn.Linear`` inside the
decoder layers (leaf names, e.g. ``q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj``),
never the LM head; ``lora_modules_to_save: lm_head`` trains the head in full (peft's
``modules_to_save``; with tied embeddings peft's ``ensure_weight_tying`` keeps the input
embedding tied to the trained copy). The adapters are initialised under their own RNG seeded by
``seed`` (the global RNG streams are left as they were).

Precision: the frozen model is stored in the precision's parameter dtype (``bf16-true``: bf16;
``fp32``/``bf16-mixed``: fp32) and peft keeps the adapters in fp32 (``autocast_adapter_dtype``),
so AdamW's state is fp32. ``precision: auto`` is ``bf16-true`` on CUDA under LoRA.

QLoRA (``load_in_4bit``, Dettmers et al., *QLoRA*, 2023): the model is loaded through
``transformers.BitsAndBytesConfig`` (4-bit ``nf4``/``fp4`` weights, bf16/fp32 compute) on one
CUDA device; it needs ``bitsandbytes`` and CUDA (a :class:`ConfigError` otherwise, raised when
the config is validated) and one process (FSDP2 does not shard bitsandbytes' packed weights).

Starting from a trained adapter (``lora_init_adapter``): :mod:`sftdata_train.lora.init_adapter`.

Checkpoints: :class:`Adapter` (peft's adapter files; the trainable parameters in DCP, see
:mod:`sftdata_train.checkpoint`). ``final/`` and merging: :mod:`sftdata_train.lora.merge`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sftdata.errors import ConfigError

from .qlora import check_qlora, check_runtime, load_quantized  # noqa: F401 (re-exported: lora.load_quantized ...)

PEFT_PIP = "pip install 'sftdata[lora]' (or pip install peft)"
ADAPTER_NAME = "default"
#: LoRA keys and their values when LoRA is off; setting one without ``lora_r`` is an error.
OFF_DEFAULTS: dict[str, Any] = {
    "lora_alpha": None, "lora_dropout": 0.0, "lora_target_modules": None, "lora_modules_to_save": None,
    "use_rslora": False, "use_dora": False, "lora_init_adapter": None, "load_in_4bit": False,
    "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": False, "merge_lora": False,
}
#: Every LoRA key's default (``lora_r`` 0: LoRA off), as in :class:`~sftdata_train.config.TrainConfig`.
DEFAULTS: dict[str, Any] = {"lora_r": 0, **OFF_DEFAULTS}
#: Keys that define the adapter (or its frozen base): a resumed run must have the same values.
ADAPTER_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save", "use_rslora",
                "use_dora", "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "model")


def enabled(cfg) -> bool:
    """True when the run trains LoRA adapters (``lora_r > 0``)."""
    return bool(getattr(cfg, "lora_r", 0))


def names(value: Any) -> list[str] | None:
    """A comma-separated string or a list of module names as a list (None for None / empty)."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = [str(v).strip() for v in items if str(v).strip()]
    return out or None


def alpha(cfg) -> float:
    """``lora_alpha``, or 2 × ``lora_r`` when unset."""
    return cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_r


def validate_config(cfg) -> None:
    """Check the LoRA/QLoRA keys of a :class:`~sftdata_train.config.TrainConfig`; normalise module lists.

    Raises:
        ConfigError: a LoRA key set while ``lora_r`` is 0, a value out of range, ``peft`` not
            installed, or QLoRA without CUDA/``bitsandbytes``, on ``device: cpu``, or with
            ``precision: bf16-mixed``.
    """
    for key in ("lora_target_modules", "lora_modules_to_save"):
        value = names(getattr(cfg, key))
        setattr(cfg, key, ",".join(value) if value else None)
    if cfg.lora_init_adapter:
        from .init_adapter import adopt_adapter_config

        adopt_adapter_config(cfg)
    if not isinstance(cfg.lora_r, int) or isinstance(cfg.lora_r, bool) or cfg.lora_r < 0:
        raise ConfigError(f"`lora_r` must be an integer >= 0 (0 = full fine-tuning), got {cfg.lora_r!r}")
    if not enabled(cfg):
        stray = [k for k, off in OFF_DEFAULTS.items() if getattr(cfg, k) != off]
        if stray:
            raise ConfigError(
                f"{', '.join(stray)} set but `lora_r` is 0 (full fine-tuning): set lora_r (e.g. 16) to train "
                "LoRA adapters, or remove " + ("it" if len(stray) == 1 else "them")
            )
        return
    if cfg.lora_alpha is not None and not cfg.lora_alpha > 0:
        raise ConfigError(f"`lora_alpha` must be > 0, got {cfg.lora_alpha!r}")
    if not 0.0 <= cfg.lora_dropout < 1.0:
        raise ConfigError(f"`lora_dropout` must be in [0, 1), got {cfg.lora_dropout!r}")
    targets = names(cfg.lora_target_modules) or []
    if "all-linear" in targets and len(targets) > 1:
        raise ConfigError("`lora_target_modules`: all-linear stands alone (it already means every linear layer)")
    if importlib.util.find_spec("peft") is None:
        raise ConfigError(f"LoRA (lora_r={cfg.lora_r}) needs the `peft` package, which is not installed: {PEFT_PIP}")
    if cfg.load_in_4bit:
        check_qlora(cfg)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` under LoRA: ``bf16-true`` on CUDA (frozen bf16 weights, fp32 adapters), ``fp32`` elsewhere."""
    if precision == "auto":
        return "bf16-true" if device.type == "cuda" else "fp32"
    return precision


def target_modules(hf: nn.Module, cfg) -> list[str] | str:
    """``lora_target_modules`` as peft takes it, or by default the leaf names of every ``nn.Linear``
    inside the decoder layers (so never the LM head or a vision tower outside them)."""
    given = names(cfg.lora_target_modules)
    if given == ["all-linear"]:
        return "all-linear"
    if given:
        return given
    from ..distributed import decoder_layers

    found = sorted({n.rsplit(".", 1)[-1] for layer in decoder_layers(hf) for n, m in layer.named_modules()
                    if isinstance(m, nn.Linear)})
    if not found:
        raise ConfigError(f"LoRA: no nn.Linear inside the decoder layers of {type(hf).__name__}; "
                          "set lora_target_modules")
    return found


def _tied(hf: nn.Module) -> bool:
    emb, head = hf.get_input_embeddings(), hf.get_output_embeddings()
    return head is not None and getattr(emb, "weight", None) is getattr(head, "weight", 0)


def config_kwargs(hf: nn.Module, cfg) -> dict[str, Any]:
    """Keyword arguments of the run's ``peft.LoraConfig`` (also used to rebuild it for merging).

    Raises:
        ConfigError: ``lora_modules_to_save`` on a model with tied embeddings and a peft without
            ``ensure_weight_tying``.
    """
    import peft

    kwargs: dict[str, Any] = dict(
        r=cfg.lora_r, lora_alpha=alpha(cfg), lora_dropout=cfg.lora_dropout, target_modules=target_modules(hf, cfg),
        modules_to_save=names(cfg.lora_modules_to_save), use_rslora=cfg.use_rslora, bias="none",
        task_type="CAUSAL_LM", base_model_name_or_path=cfg.model,
    )
    if cfg.use_dora:
        if "use_dora" not in peft.LoraConfig.__dataclass_fields__:
            raise ConfigError(f"use_dora needs a peft with DoRA (0.10 or later; peft {peft.__version__} is installed): upgrade peft")
        kwargs["use_dora"] = True
    if kwargs["modules_to_save"] and _tied(hf):
        if "ensure_weight_tying" not in peft.LoraConfig.__dataclass_fields__:
            raise ConfigError(
                f"lora_modules_to_save on a model with tied input/output embeddings needs peft's ensure_weight_tying "
                f"(peft {peft.__version__} has none): upgrade peft"
            )
        kwargs["ensure_weight_tying"] = True
    return kwargs


@contextlib.contextmanager
def quiet_peft():
    """Silence peft's FutureWarning about transformers' ``is_gradient_checkpointing`` (not ours to fix)."""
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def peft_model(hf: nn.Module, kwargs: dict[str, Any]):
    """``peft.get_peft_model(hf, LoraConfig(**kwargs))`` under the adapter name :data:`ADAPTER_NAME`.

    Raises:
        ConfigError: peft refuses the config (e.g. target modules not found in ``hf``).
    """
    import peft

    try:
        with quiet_peft():
            return peft.get_peft_model(hf, peft.LoraConfig(**copy.deepcopy(kwargs)), adapter_name=ADAPTER_NAME)
    except ValueError as e:  # e.g. "Target modules {...} not found in the base model"
        raise ConfigError(f"LoRA: {e}") from e


@dataclass
class Adapter:
    """The run's LoRA adapter.

    ``peft_model`` is the ``peft.PeftModel`` around the trained HF model (which peft modified in
    place: the trainer keeps training that same object); ``config_kwargs`` rebuild its
    ``LoraConfig`` on another copy of the model (merging).
    """

    peft_model: Any
    config_kwargs: dict[str, Any]

    @staticmethod
    def trainable_state(wrapper: nn.Module, info) -> dict[str, torch.Tensor]:
        """The trainable tensors (adapters, ``modules_to_save`` copies), full and on CPU, keyed as in
        ``PeftModel.state_dict()`` (``base_model.model.<HF name>``; tied aliases each under their name).

        Collective under FSDP2 (every rank must call; one all-gather per trainable parameter,
        never the frozen ones); only rank 0 keeps the tensors (others get ``{}``).
        """
        out: dict[str, torch.Tensor] = {}
        done: dict[int, torch.Tensor | None] = {}
        prefix = "model."  # SFTLossModel.model
        for name, p in wrapper.named_parameters(remove_duplicate=False):
            if not p.requires_grad:
                continue
            if id(p) not in done:
                full = p.full_tensor() if hasattr(p, "full_tensor") else p  # all-gather of this parameter only
                done[id(p)] = full.detach().to("cpu", copy=True) if info.is_main else None
            if info.is_main:
                out["base_model.model." + name.removeprefix(prefix)] = done[id(p)]
        return out

    def save(self, path: Path, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
        """``peft_model.save_pretrained(path, state_dict=state)``: ``adapter_config.json`` and
        ``adapter_model.safetensors`` (plus peft's ``README.md`` card), in ``dtype`` if given."""
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        with quiet_peft():
            self.peft_model.save_pretrained(str(path), state_dict=state, safe_serialization=True)


def apply(hf: nn.Module, cfg, *, seed: int) -> Adapter:
    """Add the configured LoRA adapters to ``hf`` in place (meta parameters allowed) and freeze the rest.

    The adapters are initialised under a private RNG seeded by ``seed`` (every rank and every
    restart draws the same values; the global RNG streams are untouched).

    Raises:
        ConfigError: a target module that the model does not have.
    """
    kwargs = config_kwargs(hf, cfg)
    attn = getattr(hf.config, "_attn_implementation", None)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        pm = peft_model(hf, kwargs)
    if cfg.lora_init_adapter and not any(p.is_meta for p in pm.parameters()):  # a meta skeleton gets them by broadcast
        from .init_adapter import load_init_weights

        load_init_weights(pm, cfg.lora_init_adapter)
    from peft.tuners.lora import LoraLayer

    if isinstance(hf.get_output_embeddings(), LoraLayer):  # the chunked loss applies the head's weight itself
        raise ConfigError(
            "LoRA on the LM head is not supported (the loss applies the head's weight to the trained rows "
            "directly, which would skip the adapter): drop it from lora_target_modules, or train the head in "
            "full with lora_modules_to_save: lm_head"
        )
    if getattr(hf.config, "_attn_implementation", None) != attn:  # the trainer's attention routing must survive
        raise RuntimeError(f"peft changed attn_implementation from {attn!r} to {hf.config._attn_implementation!r}")
    return Adapter(pm, kwargs)


def check_resume(path: Path, cfg) -> None:
    """Refuse to resume ``path`` with another adapter definition (or LoRA vs full fine-tuning).

    The frozen base is rebuilt from ``model`` (the embedded default from ``seed``), so the keys
    that define it and the adapter must equal those recorded in the checkpoint's ``state.json``.

    Raises:
        ConfigError: naming every differing key with both values.
    """
    from ..checkpoint.directories import load_training_state

    saved = load_training_state(path).get("config", {})
    keys = list(ADAPTER_KEYS) + (["seed"] if cfg.model is None else [])
    if not enabled(cfg) and not saved.get("lora_r"):
        return
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {getattr(cfg, k)!r}" for k in keys
            if saved.get(k, DEFAULTS.get(k)) != getattr(cfg, k)]
    if diff:
        kind = "a LoRA adapter" if saved.get("lora_r") else "a full fine-tuning run"
        raise ConfigError(f"--resume {path}: the checkpoint holds {kind} defined otherwise ({'; '.join(diff)}); "
                          "resume with the same LoRA keys and model")


def flops_params(hf: nn.Module) -> float:
    """Parameters for the ``6 · P · tokens`` FLOPs count under LoRA: a frozen weight costs 4 FLOPs per
    token (forward and input gradient, no weight gradient), a trained one 6, so it is
    ``P_trained + (2/3) · P_frozen`` over the matmul weights (the input embedding is a lookup;
    peft's inactive ``original_module`` copies do not run)."""
    try:
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError:  # pragma: no cover
        ModulesToSaveWrapper = ()  # type: ignore[assignment]
    idle = {id(p) for m in hf.modules() if isinstance(m, ModulesToSaveWrapper) for p in m.original_module.parameters()}
    emb = hf.get_input_embeddings().weight
    head = hf.get_output_embeddings().weight
    seen: set[int] = set()
    total = 0.0
    for p in hf.parameters():
        if id(p) in seen or id(p) in idle:
            continue
        seen.add(id(p))
        total += p.numel() * (1.0 if p.requires_grad else 2.0 / 3.0)
    if head is not emb:  # an untied embedding is a lookup, not a matmul
        total -= emb.numel() * (1.0 if emb.requires_grad else 2.0 / 3.0)
    return total


def describe(adapter: Adapter, wrapper: nn.Module) -> str:
    """``LoRA r=16 alpha=32 on q_proj,…: 1,234 trainable parameters (0.5%)`` (global counts)."""
    kw = adapter.config_kwargs
    seen: set[int] = set()
    trained = total = 0
    for p in wrapper.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            trained += p.numel() if p.requires_grad else 0
    targets = kw["target_modules"] if isinstance(kw["target_modules"], str) else ",".join(kw["target_modules"])
    save = f", full {','.join(kw['modules_to_save'])}" if kw.get("modules_to_save") else ""
    kind = "DoRA" if kw.get("use_dora") else "LoRA"
    return (f"{kind} r={kw['r']} alpha={kw['lora_alpha']:g}{' rslora' if kw['use_rslora'] else ''} on {targets}{save}: "
            f"{trained:,} trainable parameters ({100 * trained / max(total, 1):.2f}%)")


__all__ = [
    "Adapter", "apply", "check_qlora", "check_resume", "check_runtime", "config_kwargs", "describe", "enabled",
    "flops_params", "load_quantized", "peft_model", "quiet_peft", "resolve_precision", "target_modules", "validate_config",
]
