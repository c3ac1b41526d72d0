"""Real chat templates of current agent models, vendored unmodified, each with an offline test tokenizer.

The ``templates/real/*.jinja`` files are the models' own chat templates as ggml-org/llama.cpp keeps
them in ``models/templates/`` (source repository, path, commit and git blob of each file in
``templates/real/README.md``). Where llama.cpp later edited a file away from the model's template,
the copy from before the edit is vendored.

For each template :data:`REAL_TEMPLATES` holds a :class:`RealTemplate`: the Hub model it belongs
to, a :class:`~sftdata.testing.tokenizers.TokenizerSpec` giving every control token the template
writes (and the real tokenizer's bos/eos/special flags and BOS behaviour), the
:class:`~sftdata.testing.tokenizers.TemplateCaps` saying what it renders faithfully, and the tokens
generation stops on, with their source. :func:`real_template_tokenizer` wraps the shared test BPE
with that spec and the template (no Hub access)::

    tok = real_template_tokenizer("Qwen-Qwen3-0.6B")
    rt = REAL_TEMPLATES["Qwen-Qwen3-0.6B"]
    messages, tools = template_inputs(conv, rt.caps)
    text = tok.apply_chat_template(messages, tools=tools, tokenize=False, **rt.template_kwargs)

Facts that could not be confirmed from a public copy of the model's configuration say
``unverified`` in ``notes`` / ``stop_source``; never guessed silently.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._real_specs import ENTRIES
from .tokenizers import TEMPLATES_DIR, TemplateCaps, TokenizerSpec, make_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

    from ..schema import Conversation

__all__ = [
    "REAL_TEMPLATES",
    "REAL_TEMPLATES_DIR",
    "RealTemplate",
    "read_real_template",
    "real_template_names",
    "real_template_tokenizer",
    "template_inputs",
]

#: Folder of the vendored templates (``<name>.jinja``, plus ``README.md`` with their sources).
REAL_TEMPLATES_DIR: Path = TEMPLATES_DIR / "real"


@dataclass(frozen=True)
class RealTemplate:
    """One vendored real chat template and what a test tokenizer for it needs.

    Attributes:
        name: the file stem (llama.cpp's file name), e.g. ``"Qwen-Qwen3-0.6B"``.
        model: the Hugging Face repo id of the model the template belongs to.
        spec: tokens given to the test tokenizer: every control token the template writes or
            takes from ``bos_token``/``eos_token``, plus the model's role and stop tokens, with the
            real tokenizer's special/non-special flags and BOS behaviour. Markup the real
            vocabulary does not hold as a token stays ordinary text.
        caps: what the template renders faithfully (see :class:`TemplateCaps`).
        stop_tokens: token strings of the model's ``generation_config.json`` ``eos_token_id``
            (the tokens generation stops on), first the usual end of turn where known.
        stop_source: where ``stop_tokens`` come from, or ``"unverified: <reason>"``.
        template_kwargs: extra ``apply_chat_template`` keywords to render with (e.g. a pinned
            ``date_string``); ``{}`` for the template's defaults.
        notes: quirks (history rewriting, split or merged messages, dropped content, ...) and
            every fact about the tokenizer that is unverified.
        commit: the ggml-org/llama.cpp commit whose ``models/templates/<name>.jinja`` this is.
        plain_markers: markup the template writes that is *not* a token of the real tokenizer.
    """

    name: str
    model: str
    spec: TokenizerSpec = field(repr=False)
    caps: TemplateCaps
    stop_tokens: tuple[str, ...]
    stop_source: str
    template_kwargs: dict = field(default_factory=dict)
    notes: str = ""
    commit: str = ""
    plain_markers: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The vendored ``.jinja`` file."""
        return REAL_TEMPLATES_DIR / f"{self.name}.jinja"

    @property
    def control_tokens(self) -> tuple[str, ...]:
        """Every added token of :attr:`spec` (special and non-special), in spec order."""
        return self.spec.special_tokens + self.spec.added_tokens


def _build() -> dict[str, RealTemplate]:
    out = {}
    for name in sorted(ENTRIES):
        e = ENTRIES[name]
        out[name] = RealTemplate(
            name=name,
            model=e.model,
            spec=e.spec,
            caps=e.caps,
            stop_tokens=e.stop_tokens,
            stop_source=e.stop_source,
            template_kwargs=dict(e.template_kwargs),
            notes=e.notes,
            commit=e.commit,
            plain_markers=e.plain_markers,
        )
    return out


#: Every vendored template by name (file stem), in sorted order.
REAL_TEMPLATES: dict[str, RealTemplate] = _build()


def real_template_names() -> list[str]:
    """Sorted names (file stems) of the vendored templates."""
    return list(REAL_TEMPLATES)


def _check_name(name: str) -> None:
    if name not in REAL_TEMPLATES:
        raise ValueError(f"unknown real template {name!r}; expected one of {real_template_names()}")


@functools.lru_cache(maxsize=None)
def read_real_template(name: str) -> str:
    """The text of ``templates/real/<name>.jinja``, exactly as vendored.

    Raises:
        ValueError: ``name`` is not a vendored template (the message lists the valid names).
    """
    _check_name(name)
    return (REAL_TEMPLATES_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def real_template_tokenizer(name: str) -> "PreTrainedTokenizerFast":
    """A fresh offline tokenizer for the real template ``name``: the shared test BPE, ``spec``'s tokens and the template.

    Built with :func:`sftdata.testing.tokenizers.make_tokenizer` (the BPE is trained once per
    process); each call returns a new object that callers may change.

    Raises:
        ValueError: ``name`` is not a vendored template.
    """
    _check_name(name)
    rt = REAL_TEMPLATES[name]
    return make_tokenizer(rt.spec, read_real_template(name), name_or_path=f"real-template/{name}")


def _json_arguments(message: dict) -> dict:
    calls = []
    for call in message["tool_calls"]:
        fn = dict(call["function"])
        if not isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.dumps(fn.get("arguments"), ensure_ascii=False)
        calls.append({**call, "function": fn})
    return {**message, "tool_calls": calls}


def template_inputs(conv: "Conversation", caps: TemplateCaps) -> tuple[list[dict], list[dict] | None]:
    """``(messages, tools)`` of ``conv`` in the form a template with ``caps`` is served with.

    ``conv.template_messages()`` / ``conv.template_tools()``, except that with
    ``caps.string_arguments`` each call's ``arguments`` become JSON text (``json.dumps``,
    ``ensure_ascii=False``), and with ``caps.flat_tool_schemas`` each OpenAI-shaped tool schema
    ``{"type": "function", "function": f}`` is passed as ``f``.
    """
    messages: list[dict[str, Any]] = conv.template_messages()
    tools = conv.template_tools()
    if caps.string_arguments:
        messages = [_json_arguments(m) if m.get("tool_calls") else m for m in messages]
    if caps.flat_tool_schemas and tools:
        tools = [t["function"] if isinstance(t.get("function"), dict) else t for t in tools]
    return messages, tools
