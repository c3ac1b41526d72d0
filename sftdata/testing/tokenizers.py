"""Offline test tokenizers for chat-template families (no Hub access needed).

Every tokenizer here is a small byte-level BPE (~2k entries), trained lazily on first use
(not at import; well under a second) on a deterministic built-in corpus
(:func:`sftdata.testing.bpe_corpus.training_corpus`) and cached per process, then given a
model family's added tokens, its bos/eos/pad/unk and a chat template, and wrapped in a
:class:`transformers.PreTrainedTokenizerFast`. The vocabularies are not the real models'
ones, but everything that matters for masking is: control tokens are single ids, the
chat templates render like the real ones, BOS handling mirrors the real tokenizer, and
ordinary text is split by a BPE (so merges across turn boundaries do happen).

Two sets of templates:

* :data:`FAMILIES` — templates written for this project (``templates/*.jinja``) in the
  style of real models: ``chatml`` (Qwen2.5), ``qwen3`` (Qwen3 with reasoning),
  ``llama3`` (Llama 3.1), ``mistral`` (Mistral v0.3, with tools) and ``gemma`` (Gemma 2,
  no system and no tools). Build one with :func:`build_tokenizer`.
* the real templates bundled in the installed ``trl`` wheel (``trl/chat_templates/*.jinja``)
  live in :mod:`sftdata.testing.trl_templates`, each on a tokenizer built here.

Example::

    tok = build_tokenizer("qwen3")
    text = tok.apply_chat_template(conv.template_messages(), tools=conv.template_tools(), tokenize=False)

Notes on encoding: tokenizers whose real model adds BOS on ``encode`` (Llama 3, Mistral,
Gemma, Cohere, DeepSeek) do so here too, while their templates also write ``bos_token``;
encode rendered chat text with ``add_special_tokens=False`` (as ``apply_chat_template``
does) or you get two BOS tokens. ``decode(encode(text, add_special_tokens=False)) == text``
holds for every tokenizer except the ``phi3`` ones, whose role tokens strip whitespace on
their right like the real Phi-3 tokenizer (see :class:`TokenizerSpec`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .bpe_corpus import (  # re-exported
    TEST_VOCAB_SIZE,
    base_tokenizer_json,
    train_bpe_json,
    training_corpus,
)

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "FAMILIES",
    "TEMPLATES_DIR",
    "TEST_VOCAB_SIZE",
    "TemplateCaps",
    "TokenizerSpec",
    "base_tokenizer_json",
    "build_tokenizer",
    "end_of_turn_tokens",
    "family_caps",
    "family_spec",
    "family_template",
    "make_tokenizer",
    "train_bpe_json",
    "training_corpus",
]

#: Folder of the project's own family templates (``<family>.jinja``).
TEMPLATES_DIR = Path(__file__).with_name("templates")

#: Names of the project's template families, in a stable order.
FAMILIES: tuple[str, ...] = ("chatml", "qwen3", "llama3", "mistral", "gemma")

# --------------------------------------------------------------------------------------
# Specs and wrapping
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSpec:
    """What a model family adds on top of the shared BPE.

    Attributes:
        special_tokens: control tokens, added with ``special=True`` (skipped by
            ``decode(skip_special_tokens=True)``), in id order after the BPE vocabulary.
        added_tokens: non-special added tokens (like Qwen's ``<tool_call>`` or ``<think>``):
            always single ids, but kept by ``skip_special_tokens``.
        bos_token, eos_token, pad_token, unk_token: as the real tokenizer sets them (``None`` = unset).
            Each one that is set must be in ``special_tokens``.
        add_bos: the tokenizer prepends ``bos_token`` on ``encode(..., add_special_tokens=True)``
            (a ``TemplateProcessing`` post-processor), like the real Llama/Mistral/Gemma ones.
        rstrip: tokens of ``special_tokens``/``added_tokens`` that swallow the whitespace on
            their right when matched (``AddedToken(rstrip=True)``, as Phi-3's role tokens do).
            This makes decode(encode(text)) lossy.
    """

    special_tokens: tuple[str, ...]
    added_tokens: tuple[str, ...] = ()
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    add_bos: bool = False
    rstrip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = getattr(self, role)
            if value is not None and value not in self.special_tokens:
                raise ValueError(f"{role} {value!r} must be listed in special_tokens")
        if self.add_bos and self.bos_token is None:
            raise ValueError("add_bos needs a bos_token")

    @property
    def lossless(self) -> bool:
        """Whether ``decode(encode(text, add_special_tokens=False)) == text`` for every text."""
        return not self.rstrip


@dataclass(frozen=True)
class TemplateCaps:
    """What a chat template can render faithfully (used to pick matching test conversations).

    Attributes:
        system: accepts a system message (``False``: raises or drops it).
        tools: renders assistant tool calls and tool results (and accepts tool schemas).
        parallel_calls: renders several tool calls in one assistant message.
        reasoning: renders ``reasoning_content`` of (at least the latest) assistant turns.
        alternating: requires strict user/assistant alternation starting with user.
        call_content: renders assistant ``content`` that sits beside tool calls.
        none_content: accepts an assistant message with tool calls and no content at all
            (``content=None``; transformers drops None-valued keys before rendering).
        generation_markers: has ``{% generation %}`` blocks (``return_assistant_tokens_mask`` works).
        multi_system: accepts a system message that is not the first message.
        reasoning_field: the message key the template reads reasoning from when ``reasoning`` is
            set (``reasoning_content`` for Qwen3/GLM/DeepSeek style templates, ``thinking`` for
            gpt-oss). :meth:`sftdata.schema.Message.to_template` passes reasoning under both.
        call_id_length: tool-call ids must be exactly this many ASCII letters and digits
            (Mistral's templates raise otherwise, e.g. 9); ``conversations_for`` then draws such
            ids. ``None``: any id.
        string_arguments: the template concatenates a call's ``arguments`` as text and raises on
            a dict (DeepSeek-V3.1, Apertus): render arguments as JSON text, which is how those
            models are served (see :func:`sftdata.testing.real_templates.template_inputs`).
        flat_tool_schemas: the template reads each tool schema as a bare function object
            (``{"name", "description", "parameters"}``) and raises on the OpenAI shape
            ``{"type": "function", "function": {...}}`` (Apertus): pass the ``function`` objects.
    """

    system: bool = True
    tools: bool = True
    parallel_calls: bool = True
    reasoning: bool = False
    alternating: bool = False
    call_content: bool = True
    none_content: bool = True
    generation_markers: bool = False
    multi_system: bool = False
    reasoning_field: str = "reasoning_content"
    call_id_length: int | None = None
    string_arguments: bool = False
    flat_tool_schemas: bool = False


def make_tokenizer(
    spec: TokenizerSpec,
    chat_template: str | None = None,
    *,
    base_json: str | None = None,
    name_or_path: str = "sftdata-test",
) -> "PreTrainedTokenizerFast":
    """Wrap the shared BPE (or ``base_json``) with ``spec``'s tokens and ``chat_template``.

    Args:
        spec: the added tokens, bos/eos/pad/unk and BOS behaviour.
        chat_template: the Jinja chat template text, or ``None`` for none.
        base_json: a ``tokenizer.json`` text to start from (default: :func:`base_tokenizer_json`).
        name_or_path: the tokenizer's ``name_or_path`` (shows up in reprs and error messages).

    Returns:
        A fresh :class:`transformers.PreTrainedTokenizerFast` (callers may mutate it freely).
        ``clean_up_tokenization_spaces`` is off so that decoding is exact.
    """
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(base_json if base_json is not None else base_tokenizer_json())
    rstrip = set(spec.rstrip)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, rstrip=t in rstrip) for t in spec.special_tokens]
    )
    if spec.added_tokens:
        tok.add_tokens(
            [AddedToken(t, special=False, normalized=False, rstrip=t in rstrip) for t in spec.added_tokens]
        )
    byte_level = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if spec.add_bos:
        bos = spec.bos_token
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
                ),
            ]
        )
    else:
        tok.post_processor = byte_level
    kwargs = {
        k: getattr(spec, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if getattr(spec, k)
    }
    # the other control tokens are "additional"/"extra" special tokens, as in real tokenizer configs
    kwargs["additional_special_tokens"] = [t for t in spec.special_tokens if t not in kwargs.values()]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        clean_up_tokenization_spaces=False,
        name_or_path=name_or_path,
        **kwargs,
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


_QWEN_CONTROL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_QWEN_VISION = (
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
    "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
#: Tool-call / tool-result and reasoning tags, added (non-special) tokens in the Qwen families.
TOOL_TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
THINK_TAGS = ("<think>", "</think>")

#: Token layouts of real families (special/added tokens, BOS/EOS/pad, whether BOS is added),
#: shared by the template suites (:mod:`sftdata.testing.trl_templates`, ``real_templates``).
QWEN25_SPEC = TokenizerSpec(  # like Qwen2.5: <tool_call> is an added token, <tool_response> is plain text
    special_tokens=_QWEN_CONTROL + _QWEN_VISION,
    added_tokens=("<tool_call>", "</tool_call>"),
    eos_token="<|im_end|>",
    pad_token="<|endoftext|>",
)
QWEN3_SPEC = TokenizerSpec(
    special_tokens=_QWEN_CONTROL + _QWEN_VISION,
    added_tokens=TOOL_TAGS + THINK_TAGS,
    eos_token="<|im_end|>",
    pad_token="<|endoftext|>",
)
LLAMA3_SPEC = TokenizerSpec(
    special_tokens=(
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
        "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>",
    ),
    bos_token="<|begin_of_text|>",
    eos_token="<|eot_id|>",
    add_bos=True,
)
MISTRAL_SPEC = TokenizerSpec(
    special_tokens=(
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    ),
    bos_token="<s>",
    eos_token="</s>",
    unk_token="<unk>",
    add_bos=True,
)
GEMMA_SPEC = TokenizerSpec(
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)

# former private names, still imported by bench/unseen_templates.py
_QWEN3_SPEC, _LLAMA3_SPEC = QWEN3_SPEC, LLAMA3_SPEC

_FAMILY_SPECS: dict[str, TokenizerSpec] = {
    # the chatml family's template emits <tool_response>, so (unlike real Qwen2.5) it is an added token here
    "chatml": TokenizerSpec(
        special_tokens=_QWEN_CONTROL, added_tokens=TOOL_TAGS, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    ),
    "qwen3": TokenizerSpec(
        special_tokens=_QWEN_CONTROL,
        added_tokens=TOOL_TAGS + THINK_TAGS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    ),
    "llama3": LLAMA3_SPEC,
    "mistral": MISTRAL_SPEC,
    "gemma": GEMMA_SPEC,
}

_FAMILY_CAPS: dict[str, TemplateCaps] = {
    "chatml": TemplateCaps(multi_system=True),
    "qwen3": TemplateCaps(reasoning=True, multi_system=True),
    "llama3": TemplateCaps(multi_system=True),
    "mistral": TemplateCaps(call_content=False),
    "gemma": TemplateCaps(system=False, tools=False, parallel_calls=False, alternating=True),
}

_END_OF_TURN: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_end|>",),
    "qwen3": ("<|im_end|>",),
    "llama3": ("<|eot_id|>", "<|eom_id|>"),
    "mistral": ("</s>",),
    "gemma": ("<end_of_turn>",),
}


def _check_family(family: str) -> None:
    if family not in _FAMILY_SPECS:
        raise ValueError(f"unknown template family {family!r}; expected one of {FAMILIES}")


def family_spec(family: str) -> TokenizerSpec:
    """The :class:`TokenizerSpec` of one of :data:`FAMILIES`. Raises ``ValueError`` for an unknown name."""
    _check_family(family)
    return _FAMILY_SPECS[family]


def family_caps(family: str) -> TemplateCaps:
    """The :class:`TemplateCaps` of one of :data:`FAMILIES`. Raises ``ValueError`` for an unknown name."""
    _check_family(family)
    return _FAMILY_CAPS[family]


@functools.lru_cache(maxsize=None)
def family_template(family: str) -> str:
    """The chat template text of one of :data:`FAMILIES` (``templates/<family>.jinja``)."""
    _check_family(family)
    return (TEMPLATES_DIR / f"{family}.jinja").read_text(encoding="utf-8")


def build_tokenizer(family: str) -> "PreTrainedTokenizerFast":
    """A fresh offline tokenizer of one of :data:`FAMILIES`, with its chat template set.

    The BPE is trained once per process (cached); each call returns a new wrapper object,
    so callers may change it (e.g. its ``chat_template``) without affecting others.

    Raises:
        ValueError: unknown family.
    """
    _check_family(family)
    return make_tokenizer(_FAMILY_SPECS[family], family_template(family), name_or_path=f"sftdata-test/{family}")


def end_of_turn_tokens(family: str) -> tuple[str, ...]:
    """The token(s) that close an assistant turn in ``family`` (first = the usual one).

    E.g. ``("<|im_end|>",)`` for chatml/qwen3, ``("<|eot_id|>", "<|eom_id|>")`` for llama3,
    ``("</s>",)`` for mistral, ``("<end_of_turn>",)`` for gemma. Raises ``ValueError`` for an
    unknown family.
    """
    _check_family(family)
    return _END_OF_TURN[family]
