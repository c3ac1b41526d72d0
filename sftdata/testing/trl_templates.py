"""The real chat templates bundled in the ``trl`` wheel, each with an offline tokenizer.

:func:`trl_template_families` pairs every usable ``trl/chat_templates/*.jinja`` file with a
tokenizer built by :func:`sftdata.testing.tokenizers.make_tokenizer` carrying the special
tokens, BOS and EOS that template's model uses, and with :class:`TemplateCaps` saying what
the template renders faithfully (so tests draw matching conversations). Multimodal-only
templates are listed, with the reason, by :func:`trl_skipped_templates`. The per-template
token specs, capabilities and notes are the catalogue in :mod:`sftdata.testing.trl_specs`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .tokenizers import TemplateCaps, TokenizerSpec, make_tokenizer
from .trl_specs import GLM_SPEC, GPTOSS_SPEC, PHI3_SPEC, TRAINING_CAPS, TRL_NOTES, TRL_SKIPPED, TRL_SPECS  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

    from ..schema import Conversation

__all__ = [
    "TrlTemplate",
    "is_prefix_preserving",
    "probe_conversation",
    "trl_skipped_templates",
    "trl_template_families",
    "trl_template_names",
    "trl_templates_dir",
]

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
    if allowed; ids of ``caps.call_id_length`` characters when set), reasoning, two user turns;
    content without leading/trailing whitespace."""
    from ..schema import Conversation, Message, ToolCall

    msgs = [Message("system", "Be brief.")] if caps.system else []
    msgs.append(Message("user", "Weather in Paris?"))
    reasoning = "Think first." if caps.reasoning else None
    n = getattr(caps, "call_id_length", None)

    def call_id(k: int) -> str:  # "call_1", or exactly n letters/digits when the template demands it
        return f"c{k:0{n - 1}d}" if n else f"call_{k}"

    if caps.tools:
        calls = (ToolCall("get_weather", {"city": "Paris"}, id=call_id(1)),)
        if caps.parallel_calls:
            calls += (ToolCall("get_weather", {"city": "Lyon"}, id=call_id(2)),)
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
        if base in TRL_SKIPPED:
            out[path.stem] = TRL_SKIPPED[base]
        elif base not in TRL_SPECS:
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
        spec, caps = TRL_SPECS[base]
        path = root / f"{stem}.jinja"
        text = path.read_text(encoding="utf-8")
        caps = dataclasses.replace(
            caps, generation_markers=bool(_GENERATION_TAG.search(text)), **TRAINING_CAPS.get(stem, {})
        )
        out[stem] = TrlTemplate(
            name=stem,
            path=path,
            tokenizer=make_tokenizer(spec, text, name_or_path=f"trl-template/{stem}"),
            spec=spec,
            caps=caps,
            notes=TRL_NOTES.get(stem, TRL_NOTES.get(base, "")) + (" (training variant)" if training else ""),
        )
    return out
