"""Offline test tokenizers for chat-template families (no Hub access needed).

Every tokenizer here is a small byte-level BPE (~2k entries), trained lazily on first use
(not at import; well under a second) on a deterministic built-in corpus
(:func:`training_corpus`) and cached per process, then given a
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
* :func:`trl_template_families` — the real templates bundled in the installed ``trl``
  wheel (``trl/chat_templates/*.jinja``), each on a tokenizer with the special tokens it
  emits; :func:`trl_skipped_templates` says which ones are left out and why.

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

import dataclasses
import functools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

    from ..schema import Conversation

__all__ = [
    "FAMILIES",
    "TEMPLATES_DIR",
    "TEST_VOCAB_SIZE",
    "TemplateCaps",
    "TokenizerSpec",
    "TrlTemplate",
    "base_tokenizer_json",
    "build_tokenizer",
    "end_of_turn_tokens",
    "family_caps",
    "family_spec",
    "family_template",
    "is_prefix_preserving",
    "make_tokenizer",
    "probe_conversation",
    "train_bpe_json",
    "training_corpus",
    "trl_skipped_templates",
    "trl_template_families",
    "trl_template_names",
    "trl_templates_dir",
]

#: Folder of the project's own family templates (``<family>.jinja``).
TEMPLATES_DIR = Path(__file__).with_name("templates")

#: Names of the project's template families, in a stable order.
FAMILIES: tuple[str, ...] = ("chatml", "qwen3", "llama3", "mistral", "gemma")

#: Pre-tokenizer split pattern (the one Qwen2/Qwen3 use: digits one by one, punctuation
#: runs keep trailing newlines, whitespace runs before a word stay separate).
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Vocabulary size (byte alphabet included) of the shared test BPE: 256 bytes + ~1.7k merges.
TEST_VOCAB_SIZE = 2000


# --------------------------------------------------------------------------------------
# Corpus and the shared BPE
# --------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about "
    "out many then them these so some her would make like him into time has look two more write go see number no "
    "way could people my than first water been call who its now find long down day did get come made may part "
    "over new sound take only little work know place year live me back give most very after thing our just name "
    "good sentence man think say great where help through much before line right too mean old any same tell boy "
    "follow came want show also around form three small set put end does another well large must big even such "
    "because turn here why ask went men read need land different home us move try kind hand picture again change "
    "off play spell air away animal house point page letter mother answer found study still learn should world"
).split()

_TECH_WORDS = (
    "function return value error file path query result weather city temperature search user assistant system "
    "tool model response call arguments name parameters type object string integer number boolean array "
    "properties required description content message think reasoning step answer question python data list "
    "config request status code output input token template chat conversation json schema id args kwargs "
    "import class def self none true false null async await lambda yield print range len dict str int float"
).split()

_UNICODE = (
    "你好", "世界", "天气", "北京", "上海", "谢谢", "今天", "温度", "こんにちは", "東京", "ありがとう", "日本語",
    "안녕하세요", "서울", "Привет", "мир", "погода", "café", "naïve", "über", "señor", "façade", "Ελληνικά",
    "مرحبا", "שלום", "नमस्ते", "😀", "🚀", "👍🏽", "🇫🇷", "👩‍💻", "e\u0301", "n\u0303", "°C", "€", "…", "—",
    "“quoted”", "«guillemets»", "½", "→", "✓",
)

_CHAT_LINES = (
    "You are a helpful assistant.",
    "Cutting Knowledge Date: December 2023",
    "Environment: ipython",
    "Today Date: 26 Jul 2024",
    "These functions are available.",
    "To call one, reply with a JSON object carrying the function name and its arguments.",
    "# Tools",
    "system\n", "user\n", "assistant\n", "model\n", "tool\n",
)


def _sentence(rng: random.Random) -> str:
    n = rng.randint(4, 16)
    words = []
    for _ in range(n):
        r = rng.random()
        if r < 0.70:
            words.append(rng.choice(_WORDS))
        elif r < 0.88:
            words.append(rng.choice(_TECH_WORDS))
        elif r < 0.95:
            words.append(str(rng.randint(0, 10 ** rng.randint(1, 5))))
        else:
            words.append(rng.choice(_UNICODE))
    words[0] = words[0].capitalize()
    text = " ".join(words)
    return text + rng.choice([".", ".", ".", "?", "!", ":", ";", ","])


def _json_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 2 and r < 0.2:
        return {rng.choice(_TECH_WORDS): _json_value(rng, depth + 1) for _ in range(rng.randint(1, 4))}
    if depth < 2 and r < 0.3:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.55:
        return " ".join(rng.choice(_WORDS + _TECH_WORDS) for _ in range(rng.randint(1, 4)))
    if r < 0.7:
        return rng.randint(-1000, 100000)
    if r < 0.8:
        return round(rng.uniform(-100, 100), rng.randint(1, 4))
    if r < 0.9:
        return rng.choice([True, False, None])
    return rng.choice(_UNICODE)


def _json_doc(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        obj = {"name": rng.choice(_TECH_WORDS) + "_" + rng.choice(_WORDS), "arguments": _json_value(rng, 1)}
    elif r < 0.6:
        obj = {
            "type": "function",
            "function": {
                "name": rng.choice(_TECH_WORDS),
                "description": _sentence(rng),
                "parameters": {
                    "type": "object",
                    "properties": {
                        rng.choice(_TECH_WORDS): {"type": rng.choice(["string", "integer", "number", "boolean"])}
                        for _ in range(rng.randint(1, 3))
                    },
                    "required": [rng.choice(_TECH_WORDS)],
                },
            },
        }
    else:
        obj = {rng.choice(_TECH_WORDS): _json_value(rng) for _ in range(rng.randint(1, 5))}
    indent = rng.choice([None, None, 2, 4])
    return json.dumps(obj, ensure_ascii=rng.random() < 0.3, indent=indent)


def _code(rng: random.Random) -> str:
    name = rng.choice(_TECH_WORDS) + "_" + rng.choice(_WORDS)
    args = ", ".join(rng.sample(_TECH_WORDS, rng.randint(0, 3)))
    body = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.random()
        var = rng.choice(_TECH_WORDS)
        if kind < 0.3:
            body.append(f"    {var} = {rng.choice(_TECH_WORDS)}({rng.randint(0, 99)})")
        elif kind < 0.5:
            body.append(f"    if {var} is None:\n        raise ValueError(\"{_sentence(rng)}\")")
        elif kind < 0.7:
            body.append(f"    for i in range(len({var})):\n        print(i, {var}[i])")
        elif kind < 0.85:
            body.append(f"    # {_sentence(rng)}")
        else:
            body.append(f"    {var}.append({{'{rng.choice(_TECH_WORDS)}': {rng.randint(0, 9)}}})")
    body.append(f"    return {rng.choice(_TECH_WORDS)}")
    if rng.random() < 0.25:
        return f"function {name}({args}) {{\n  const x = await fetch('/api/{name}');\n  return x.json();\n}}"
    if rng.random() < 0.15:
        return f"$ python -m {name} --{rng.choice(_TECH_WORDS)} {rng.randint(1, 9)} > out.txt && echo done"
    return f"def {name}({args}):\n" + "\n".join(body)


def training_corpus(n_docs: int = 2500, seed: int = 0) -> list[str]:
    """A deterministic synthetic corpus: English-ish prose, JSON, code, unicode and chat boilerplate.

    Args:
        n_docs: number of documents (each a few hundred characters at most).
        seed: the random seed; the same (n_docs, seed) always gives the same list.

    Returns:
        A list of strings, suitable for ``Tokenizer.train_from_iterator``.
    """
    rng = random.Random(seed)
    docs: list[str] = []
    for _ in range(n_docs):
        r = rng.random()
        if r < 0.45:
            sep = rng.choice([" ", " ", "\n", "\n\n"])
            docs.append(sep.join(_sentence(rng) for _ in range(rng.randint(1, 5))))
        elif r < 0.7:
            docs.append(_json_doc(rng))
        elif r < 0.85:
            docs.append(_code(rng))
        elif r < 0.93:
            docs.append(" ".join(rng.choice(_UNICODE) for _ in range(rng.randint(2, 10))))
        else:
            docs.append(rng.choice(_CHAT_LINES) + "\n" + _sentence(rng))
    return docs


def _new_bpe_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe_json(corpus: list[str], vocab_size: int) -> str:
    """Train a byte-level BPE (no added tokens) on ``corpus`` and return its ``tokenizer.json`` text.

    The 256 byte symbols are always in the vocabulary, so any text encodes (no unknown tokens).
    Training is deterministic for a given corpus and ``vocab_size``.
    """
    from tokenizers import pre_tokenizers, trainers

    tok = _new_bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


@functools.lru_cache(maxsize=None)
def base_tokenizer_json() -> str:
    """The shared test BPE (``TEST_VOCAB_SIZE`` entries, no added tokens) as ``tokenizer.json`` text.

    Trained once per process on :func:`training_corpus` (well under a second) and cached.
    """
    return train_bpe_json(training_corpus(), TEST_VOCAB_SIZE)


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
_TOOL_TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_THINK_TAGS = ("<think>", "</think>")

_QWEN25_SPEC = TokenizerSpec(  # like Qwen2.5: <tool_call> is an added token, <tool_response> is plain text
    special_tokens=_QWEN_CONTROL + _QWEN_VISION,
    added_tokens=("<tool_call>", "</tool_call>"),
    eos_token="<|im_end|>",
    pad_token="<|endoftext|>",
)
_QWEN3_SPEC = TokenizerSpec(
    special_tokens=_QWEN_CONTROL + _QWEN_VISION,
    added_tokens=_TOOL_TAGS + _THINK_TAGS,
    eos_token="<|im_end|>",
    pad_token="<|endoftext|>",
)
_LLAMA3_SPEC = TokenizerSpec(
    special_tokens=(
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
        "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>",
    ),
    bos_token="<|begin_of_text|>",
    eos_token="<|eot_id|>",
    add_bos=True,
)
_MISTRAL_SPEC = TokenizerSpec(
    special_tokens=(
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    ),
    bos_token="<s>",
    eos_token="</s>",
    unk_token="<unk>",
    add_bos=True,
)
_GEMMA_SPEC = TokenizerSpec(
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)

_FAMILY_SPECS: dict[str, TokenizerSpec] = {
    # the chatml family's template emits <tool_response>, so (unlike real Qwen2.5) it is an added token here
    "chatml": TokenizerSpec(
        special_tokens=_QWEN_CONTROL, added_tokens=_TOOL_TAGS, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    ),
    "qwen3": TokenizerSpec(
        special_tokens=_QWEN_CONTROL,
        added_tokens=_TOOL_TAGS + _THINK_TAGS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    ),
    "llama3": _LLAMA3_SPEC,
    "mistral": _MISTRAL_SPEC,
    "gemma": _GEMMA_SPEC,
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


# --------------------------------------------------------------------------------------
# Templates bundled with trl
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrlTemplate:
    """One real chat template from the ``trl`` wheel with a tokenizer that can encode it.

    Attributes:
        name: the file stem, e.g. ``"qwen3"`` or ``"qwen3_training"``.
        path: the ``.jinja`` file.
        tokenizer: a fresh tokenizer whose ``chat_template`` is the file's text.
        spec: the tokens/bos/eos given to that tokenizer.
        caps: what the template renders faithfully.
        notes: quirks worth knowing (e.g. what it silently drops).
    """

    name: str
    path: Path
    tokenizer: "PreTrainedTokenizerFast" = field(repr=False)
    spec: TokenizerSpec = field(repr=False)
    caps: TemplateCaps
    notes: str = ""


    @functools.cached_property
    def prefix_preserving(self) -> bool:
        """Whether appending a message never changes the text of earlier ones (see :func:`is_prefix_preserving`)."""
        return is_prefix_preserving(self.tokenizer, self.caps)


def probe_conversation(caps: TemplateCaps) -> "Conversation":
    """A small conversation using what ``caps`` allows: system, one tool round (parallel calls
    if allowed), reasoning, two user turns; content without leading/trailing whitespace."""
    from ..schema import Conversation, Message, ToolCall

    msgs = [Message("system", "Be brief.")] if caps.system else []
    msgs.append(Message("user", "Weather in Paris?"))
    reasoning = "Think first." if caps.reasoning else None
    if caps.tools:
        calls = (ToolCall("get_weather", {"city": "Paris"}, id="call_1"),)
        if caps.parallel_calls:
            calls += (ToolCall("get_weather", {"city": "Lyon"}, id="call_2"),)
        msgs.append(Message("assistant", None if caps.none_content else "", reasoning=reasoning, tool_calls=calls))
        msgs += [Message("tool", "18C", tool_call_id=c.id, name=c.name) for c in calls]
    msgs.append(Message("assistant", "It is 18C.", reasoning=reasoning))
    msgs.append(Message("user", "Thanks."))
    msgs.append(Message("assistant", "You are welcome.", reasoning=reasoning))
    tools = (
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        },
    )
    return Conversation(tuple(msgs), tools if caps.tools else None)


def is_prefix_preserving(tokenizer, caps: TemplateCaps, conv: "Conversation | None" = None) -> bool:
    """Whether rendering ``messages[:k]`` is always a prefix of rendering ``messages[:k+1]``.

    Checked on ``conv`` (default :func:`probe_conversation` of ``caps``), without generation
    prompt, for every ``k``; prefixes the template refuses to render are skipped. ``False``
    means the template rewrites earlier text when a message is appended, e.g. ChatML/Qwen
    grouping consecutive tool results into one user turn (the closing ``<|im_end|>`` moves),
    Qwen3 dropping old reasoning after a new user turn, gpt-oss ending the last turn with
    ``<|return|>`` instead of ``<|end|>``, Mistral moving the system prompt to the last user turn.
    This is a strict, message-level notion: a masking strategy may well cope with some of these.
    """
    conv = conv if conv is not None else probe_conversation(caps)
    msgs, tools = conv.template_messages(), conv.template_tools()
    previous = None
    for k in range(1, len(msgs) + 1):
        try:
            text = tokenizer.apply_chat_template(msgs[:k], tools=tools, tokenize=False, date_string="26 Jul 2024")
        except Exception:  # noqa: BLE001 - a refused prefix says nothing about rewriting
            previous = None
            continue
        if previous is not None and not text.startswith(previous):
            return False
        previous = text
    return True


_PHI3_ROLE_TOKENS = ("<|assistant|>", "<|end|>", "<|system|>", "<|user|>")
_PHI3_SPEC = TokenizerSpec(
    special_tokens=("<unk>", "<s>", "</s>", "<|endoftext|>") + _PHI3_ROLE_TOKENS,
    bos_token="<s>",
    eos_token="<|endoftext|>",
    pad_token="<|endoftext|>",
    unk_token="<unk>",
    rstrip=_PHI3_ROLE_TOKENS,
)
_COHERE_SPEC = TokenizerSpec(
    special_tokens=(
        "<PAD>", "<UNK>", "<BOS_TOKEN>", "<EOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
        "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>",
    ),
    bos_token="<BOS_TOKEN>",
    eos_token="<|END_OF_TURN_TOKEN|>",
    pad_token="<PAD>",
    unk_token="<UNK>",
    add_bos=True,
)
_DEEPSEEK_SPEC = TokenizerSpec(
    special_tokens=(
        "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
        "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
        "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
        "<｜tool▁sep｜>",
    ),
    added_tokens=_THINK_TAGS,
    bos_token="<｜begin▁of▁sentence｜>",
    eos_token="<｜end▁of▁sentence｜>",
    pad_token="<｜end▁of▁sentence｜>",
    add_bos=True,
)
_GLM_SPEC = TokenizerSpec(
    special_tokens=(
        "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
        "<|assistant|>", "<|observation|>",
    ),
    added_tokens=_TOOL_TAGS + _THINK_TAGS + ("<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"),
    eos_token="<|endoftext|>",
    pad_token="<|endoftext|>",
)
_GPTOSS_SPEC = TokenizerSpec(
    special_tokens=(
        "<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
        "<|constrain|>", "<|return|>", "<|call|>",
    ),
    bos_token="<|startoftext|>",
    eos_token="<|return|>",
    pad_token="<|endoftext|>",
)
_GEMMA3_SPEC = TokenizerSpec(
    special_tokens=_GEMMA_SPEC.special_tokens + ("<start_of_image>", "<end_of_image>"),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)
_GEMMA4_SPEC = TokenizerSpec(
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
    + (
        "<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",
        "<|tool_response>", "<tool_response|>", '<|"|>', "<|think|>", "<|image|>", "<|audio|>", "<|video|>",
    ),
    bos_token="<bos>",
    eos_token="<eos>",
    pad_token="<pad>",
    unk_token="<unk>",
    add_bos=True,
)
_LFM2_SPEC = TokenizerSpec(
    special_tokens=(
        "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tool_list_start|>",
        "<|tool_list_end|>", "<|tool_call_start|>", "<|tool_call_end|>", "<|tool_response_start|>",
        "<|tool_response_end|>", "<image>",
    ),
    added_tokens=_THINK_TAGS,
    bos_token="<|startoftext|>",
    eos_token="<|im_end|>",
    pad_token="<|pad|>",
)
_NEMOTRON_SPEC = TokenizerSpec(
    special_tokens=("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"),
    added_tokens=_TOOL_TAGS + _THINK_TAGS,
    bos_token="<s>",
    eos_token="<|im_end|>",
    unk_token="<unk>",
)
_MUSE_SPEC = TokenizerSpec(
    special_tokens=(
        "<|begin_of_text|>", "<|end_of_text|>", "<|start|>", "<|message|>", "<|eot|>", "<|eom|>", "<|patch|>",
        "<|video|>",
    ),
    bos_token="<|begin_of_text|>",
    eos_token="<|eot|>",
)

_RAW_NOTES = {
    "qwen2_5": "Default system prompt; reasoning dropped. As in real Qwen2.5, <tool_response> is plain text "
    "(not an added token).",
    "qwen3": "Reasoning shown only after the last real user query; a final assistant turn always gets a think block.",
    "qwen3_5_think": "Raises on a system message that is not first; <function=...>/<parameter=...> tool calls.",
    "qwen3_5_nothink": "As qwen3_5_think, but the generation prompt defaults to an empty think block.",
    "qwen3_6": "As qwen3_5_think, plus a preserve_thinking flag.",
    "qwen3_8": "As qwen3_6, plus reasoning_effort (prepends an instruction to the system prompt).",
    "qwen3_instruct_2507": "No reasoning support.",
    "qwen3_vl": "No reasoning support; a system message that is not first is silently dropped.",
    "qwen2_5_vl": "No tools: tool_calls are silently dropped and tool messages render as a `tool` ChatML turn.",
    "llama3": "Llama 3.0: no tools (tool_calls silently dropped); every content trimmed.",
    "llama3_1": "Single tool call per message (raises otherwise); content beside tool calls is dropped; a "
    "tool-result string is rendered with tojson (strings are 'iterable' in Jinja), so it appears quoted; "
    "tools go in the first user turn by default (tools_in_user_message).",
    "llama3_2": "Like llama3_1 (single tool call; tools in the first user turn); today's date via strftime_now.",
    "phi3": "No tools (tool messages and calls silently dropped); eos_token appended when "
    "add_generation_prompt is false; role tokens rstrip whitespace like the real Phi-3 tokenizer "
    "(the newline after <|end|> is swallowed into the token), so decode(encode(text)) != text.",
    "phi3_5": "As phi3; an empty system message is skipped.",
    "gemma": "No system role (raises), strict user/model alternation, no tools, content trimmed.",
    "gemma3": "System folded into the first user turn; strict alternation; no tools; content trimmed.",
    "cohere": "Strict alternation, no tools, content stripped.",
    "cohere2": "Long built-in preamble; strict alternation; no tools.",
    "deepseekv3": "Tool-call arguments are concatenated as strings, so dict arguments raise: no tool calls. "
    "All system messages are moved to the top. Content up to </think> is cut.",
    "deepseekv3_training": "Arguments rendered with tojson, so one tool-calling message renders; caps still "
    "say tools=False because (1) `ns.is_first` never resets, so every later tool-calling message loses its "
    "<｜Assistant｜><｜tool▁calls▁begin｜> opener, (2) the <｜tool▁outputs▁end｜> written after trailing tool "
    "results is not written when a tool-calling message follows (earlier text changes: not prefix-stable), "
    "and (3) content=None beside calls fails (transformers drops None-valued keys; `content is none` is "
    "false for an undefined value). All system messages are moved to the top.",
    "deepseek_r1_distill": "Drops tool calls when content is set; no tool support; reasoning not rendered.",
    "glm4moe": "Reasoning only after the last user turn; tool calls as <arg_key>/<arg_value> XML.",
    "gptoss": "Harmony format; today's date via strftime_now (renders change from day to day); a system "
    "message that is not first is dropped; only one tool call per message is rendered; content and "
    "thinking together on a tool-call message raise; the final assistant turn ends with <|return|>.",
    "lfm2": "Assistant tool_calls silently dropped (the model writes them as text); no reasoning.",
    "lfm2_v2": "Python-style calls inside <|tool_call_start|>[...]<|tool_call_end|>; no reasoning.",
    "lfm2_2_5": "Has {% generation %} markers natively; <think> read from `thinking`.",
    "lfm2_2_5_v2": "Has {% generation %} markers natively; <think> read from thinking/reasoning/reasoning_content.",
    "lfm2_2_5_vl": "Has {% generation %} markers natively.",
    "nemotron_3_nano": "Hermes/XML-style <function=...> tool calls; reasoning handling like Qwen3.5.",
    "nemotron_3_super": "As nemotron_3_nano, plus a low_effort flag.",
    "nemotron_3_ultra": "As nemotron_3_nano, plus a medium_effort flag.",
    "nemotron_3_5_lightning": "As nemotron_3_ultra without medium_effort.",
    "muse_glimmer": "ATEM protocol; today's date via strftime_now; content beside tool calls is not rendered "
    "verbatim; arguments must be a dict.",
    "gemma4": "Gemma 4 <|turn>ROLE ... <turn|> format; reasoning of a final assistant turn is not rendered.",
    "gemma4_v2": "As gemma4; no reasoning in tool-calling turns either.",
    "gemma4_v3": "As gemma4.",
    "gemma4_v4": "As gemma4.",
    "gemma4_v5": "Gemma 4 format; renders the reasoning of a final assistant turn.",
    "diffusion_gemma": "Gemma 4-style format with reasoning.",
}

# stem -> (spec, caps). Training variants ("<stem>_training") reuse their base entry, with generation markers.
_TRL_SPECS: dict[str, tuple[TokenizerSpec, TemplateCaps]] = {}


def _register(stems: tuple[str, ...], spec: TokenizerSpec, caps: TemplateCaps) -> None:
    for stem in stems:
        _TRL_SPECS[stem] = (spec, caps)


_register(("qwen2_5",), _QWEN25_SPEC, TemplateCaps(multi_system=True))
_register(("qwen2_5_vl",), _QWEN25_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("qwen3",), _QWEN3_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(("qwen3_5_think", "qwen3_5_nothink", "qwen3_6", "qwen3_8"), _QWEN3_SPEC, TemplateCaps(reasoning=True))
_register(("qwen3_instruct_2507",), _QWEN3_SPEC, TemplateCaps(multi_system=True))
_register(("qwen3_vl",), _QWEN3_SPEC, TemplateCaps())
_register(("llama3",), _LLAMA3_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(
    ("llama3_1", "llama3_2"),
    _LLAMA3_SPEC,
    TemplateCaps(parallel_calls=False, call_content=False, multi_system=True),
)
_register(("phi3", "phi3_5"), _PHI3_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("gemma",), _GEMMA_SPEC, TemplateCaps(system=False, tools=False, parallel_calls=False, alternating=True))
_register(("gemma3",), _GEMMA3_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True))
_register(("cohere",), _COHERE_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True))
_register(
    ("cohere2",), _COHERE_SPEC, TemplateCaps(tools=False, parallel_calls=False, alternating=True, multi_system=True)
)
_register(
    ("deepseekv3", "deepseek_r1_distill"),
    _DEEPSEEK_SPEC,
    TemplateCaps(tools=False, parallel_calls=False, none_content=False),
)
_register(("glm4moe",), _GLM_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(("gptoss",), _GPTOSS_SPEC, TemplateCaps(reasoning=True, parallel_calls=False, call_content=False))
_register(("lfm2",), _LFM2_SPEC, TemplateCaps(tools=False, parallel_calls=False, multi_system=True))
_register(("lfm2_v2",), _LFM2_SPEC, TemplateCaps(multi_system=True))
_register(("lfm2_2_5", "lfm2_2_5_v2", "lfm2_2_5_vl"), _LFM2_SPEC, TemplateCaps(reasoning=True, multi_system=True))
_register(
    ("nemotron_3_nano", "nemotron_3_super", "nemotron_3_ultra", "nemotron_3_5_lightning"),
    _NEMOTRON_SPEC,
    TemplateCaps(reasoning=True, multi_system=True),
)
_register(("muse_glimmer",), _MUSE_SPEC, TemplateCaps(reasoning=True, call_content=False, multi_system=True))
_register(("gemma4", "gemma4_v2", "gemma4_v3", "gemma4_v4"), _GEMMA4_SPEC, TemplateCaps(multi_system=True))
_register(("gemma4_v5", "diffusion_gemma"), _GEMMA4_SPEC, TemplateCaps(reasoning=True, multi_system=True))

#: Training variants whose capabilities differ from their base template's (none at present:
#: deepseekv3_training renders dict arguments, but its tool rendering is still unusable for
#: traces with more than one tool-calling message, see its notes).
_TRAINING_CAPS: dict[str, dict] = {}

#: Templates deliberately left out, with the reason.
_TRL_SKIPPED: dict[str, str] = {
    "idefics3": "multimodal only: expects content as a list of {type: text|image} blocks; a string content "
    "renders as nothing (each character is a 'block' without a type), so text would silently vanish",
    "smolvlm": "multimodal only: same as idefics3 (string content silently renders as nothing)",
    "llava_next": "multimodal only: reads message['content'][0]['text']; string content raises",
}


_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def trl_templates_dir() -> Path | None:
    """The ``chat_templates`` folder of the installed ``trl`` wheel, or ``None`` when trl is absent."""
    try:
        import trl
    except ImportError:  # pragma: no cover - trl is a test dependency
        return None
    path = Path(trl.__file__).with_name("chat_templates")
    return path if path.is_dir() else None


def _trl_entry(stem: str) -> tuple[str, bool]:
    """(base stem, is_training) for a template file stem."""
    if stem.endswith("_training"):
        return stem[: -len("_training")], True
    return stem, False


def trl_skipped_templates() -> dict[str, str]:
    """Bundled trl templates that :func:`trl_template_families` leaves out, name -> reason.

    Includes the known multimodal-only ones (and their ``_training`` variants) and any file
    whose family is not known to this module (a newer trl); empty when trl is absent.
    """
    root = trl_templates_dir()
    if root is None:
        return {}
    out: dict[str, str] = {}
    for path in sorted(root.glob("*.jinja")):
        base, _ = _trl_entry(path.stem)
        if base in _TRL_SKIPPED:
            out[path.stem] = _TRL_SKIPPED[base]
        elif base not in _TRL_SPECS:
            out[path.stem] = "unknown to sftdata.testing.tokenizers (added in a newer trl?): no token spec"
    return out


def trl_template_names() -> list[str]:
    """Sorted stems of the bundled trl templates that :func:`trl_template_families` supports (cheap)."""
    root = trl_templates_dir()
    if root is None:
        return []
    skipped = trl_skipped_templates()
    return sorted(p.stem for p in root.glob("*.jinja") if p.stem not in skipped)


def trl_template_families(names: tuple[str, ...] | None = None) -> dict[str, TrlTemplate]:
    """Tokenizers for the real chat templates bundled in the installed ``trl`` wheel.

    Args:
        names: file stems to load (default: every supported ``*.jinja`` file, ``_training``
            variants included). Unknown or skipped names raise ``KeyError``.

    Returns:
        ``{stem: TrlTemplate}`` in sorted order; empty when trl is not installed. Each
        tokenizer is fresh. See :func:`trl_skipped_templates` for what is left out and why.
    """
    root = trl_templates_dir()
    if root is None:
        return {}
    skipped = trl_skipped_templates()
    stems = sorted(p.stem for p in root.glob("*.jinja"))
    if names is not None:
        for n in names:
            if n not in stems or n in skipped:
                raise KeyError(f"trl template {n!r} is not available: {skipped.get(n, 'no such file')}")
        stems = [s for s in stems if s in names]
    out: dict[str, TrlTemplate] = {}
    for stem in stems:
        if stem in skipped:
            continue
        base, training = _trl_entry(stem)
        spec, caps = _TRL_SPECS[base]
        path = root / f"{stem}.jinja"
        text = path.read_text(encoding="utf-8")
        caps = dataclasses.replace(
            caps, generation_markers=bool(_GENERATION_TAG.search(text)), **_TRAINING_CAPS.get(stem, {})
        )
        out[stem] = TrlTemplate(
            name=stem,
            path=path,
            tokenizer=make_tokenizer(spec, text, name_or_path=f"trl-template/{stem}"),
            spec=spec,
            caps=caps,
            notes=_RAW_NOTES.get(stem, _RAW_NOTES.get(base, "")) + (" (training variant)" if training else ""),
        )
    return out
