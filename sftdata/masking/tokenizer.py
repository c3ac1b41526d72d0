"""Loading the tokenizer and deriving what the masking path needs from it.

* :func:`load_tokenizer` — a path, a Hub id, or ``None`` for the embedded default
  (a small byte-level BPE with ChatML special tokens shipped in ``sftdata/assets``).
* :func:`control_tokens` — the strings that would become control-token ids if they
  appeared in message text: every special added token, plus non-special added tokens
  the chat template writes itself (``<tool_call>``, ``<think>``). This is the rule
  transformers 5.x uses for ``apply_chat_template(..., sanitize_control_tokens=True)``
  (``PreTrainedTokenizerBase._get_control_tokens``).
* the stop set (the tokens that end a generated turn) lives in :mod:`sftdata.masking.stop_tokens`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError
from ..hashing import short_digest

#: ``tokenizer_class`` values loaded without ``AutoTokenizer`` (which imports torch through
#: transformers' model configuration code): the generic fast tokenizer classes.
GENERIC_FAST_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def _generic_fast_dir(path: Path) -> bool:
    """A local tokenizer dir AutoTokenizer would load as the generic fast class: a
    ``tokenizer.json``, a ``tokenizer_config.json`` naming a generic class, no ``auto_map``
    and no model ``config.json`` (whose model type could make AutoTokenizer pick another)."""
    import json

    cfg = path / "tokenizer_config.json"
    if not (path / "tokenizer.json").is_file() or not cfg.is_file() or (path / "config.json").exists():
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("tokenizer_class") in GENERIC_FAST_CLASSES and "auto_map" not in data


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path, never a Hub id (``org/name``)."""
    return name.startswith((".", "/", "~")) or name.endswith(("/", "\\")) or name.count("/") > 1 or "\\" in name


def load_tokenizer(name_or_path: str | Path | None = None, *, chat_template: str | Path | None = None,
                   require_chat_template: bool = True, require_fast: bool = True):
    """Load a fast tokenizer.

    A local directory holding a generic fast tokenizer (``tokenizer_class``
    ``PreTrainedTokenizerFast``/``TokenizersBackend``, no model ``config.json``, e.g. the
    embedded default) is loaded with ``PreTrainedTokenizerFast`` directly, as
    ``AutoTokenizer`` would, without importing torch; anything else goes through
    ``transformers.AutoTokenizer``.

    Args:
        name_or_path: a local directory, a Hugging Face Hub id, or ``None`` for the
            embedded default tokenizer.
        chat_template: optional path to a ``.jinja`` file (or the template text itself)
            that replaces the tokenizer's own template.
        require_chat_template: refuse a tokenizer without a chat template (masking needs one;
            the trainer, reading prepared rows, does not).
        require_fast: refuse a slow (Python) tokenizer (masking needs offsets; the trainer does not).

    Returns:
        ``transformers.PreTrainedTokenizerFast``.

    Raises:
        ConfigError: if the tokenizer is not a fast tokenizer, cannot be loaded (a path
            that does not exist is named as such; a Hub id with the Hub unreachable and not
            in the local cache fails within seconds, :mod:`sftdata.hub_access`), or has no chat
            template (and none is given).
    """
    if name_or_path is None:
        from ..assets import default_tokenizer_path

        name_or_path = default_tokenizer_path()
    path = Path(str(name_or_path)).expanduser()
    if not path.exists() and _looks_like_path(str(name_or_path)):
        raise ConfigError(f"tokenizer path {str(name_or_path)!r} does not exist")
    if path.is_file():
        raise ConfigError(f"tokenizer {str(name_or_path)!r} is a file: pass the directory holding tokenizer.json and tokenizer_config.json")
    from ..hub_access import hub_kwargs

    # a Hub id with the Hub unreachable: the local cache, or one error now (not a minute of retries)
    hub = {} if path.is_dir() else hub_kwargs(name_or_path, what="tokenizer", files=_TOKENIZER_FILES)
    try:
        if path.is_dir() and _generic_fast_dir(path):
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(name_or_path), **hub)
    except Exception as e:  # noqa: BLE001 - transformers raises many types here
        where = "local directory" if path.is_dir() else "not a local path; tried as a Hub id"
        raise ConfigError(f"cannot load tokenizer {str(name_or_path)!r} ({where}): {type(e).__name__}: {e}") from e
    if require_fast and not getattr(tok, "is_fast", False):
        raise ConfigError(f"tokenizer {name_or_path!r} is not a fast (Rust) tokenizer; sftdata needs offsets")
    if chat_template is not None:
        tok.chat_template = read_chat_template(chat_template)
    if require_chat_template and not tok.chat_template:
        raise ConfigError(f"tokenizer {name_or_path!r} has no chat template; pass --chat-template FILE")
    return tok


def read_chat_template(chat_template: str | Path) -> str:
    """The template text of a ``.jinja`` file, or ``chat_template`` itself when it is
    template text (contains ``{%`` or ``{{``).

    Raises:
        ConfigError: a path that does not exist.
    """
    text = str(chat_template)
    if "{%" in text or "{{" in text:
        return text
    p = Path(text)
    if not p.is_file():
        raise ConfigError(f"chat template file {text!r} does not exist")
    return p.read_text(encoding="utf-8")


def template_source(tokenizer, tools: object = None) -> str:
    """The chat template text transformers would use (``tool_use`` variant when tools are given)."""
    return tokenizer.get_chat_template(None, tools)


def special_tokens_map(tokenizer) -> dict[str, str]:
    """String-valued special tokens passed to templates (``bos_token``, ``eos_token``, …)."""
    return {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}


def control_tokens(tokenizer, template: str) -> tuple[str, ...]:
    """Added tokens that must never be produced from message text (see module doc)."""
    out = []
    for tok in tokenizer.added_tokens_decoder.values():
        content = tok.content
        if not content or content.isspace():
            continue
        if tok.special or content in template:
            out.append(content)
    return tuple(sorted(set(out), key=lambda s: (-len(s), s)))


def control_token_pattern(tokens: Iterable[str]) -> re.Pattern | None:
    """A regex matching any of ``tokens`` (longest first), or ``None`` if empty."""
    toks = sorted(set(tokens), key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in toks)) if toks else None


def fingerprint(tokenizer, template: str) -> dict[str, str]:
    """Short content hashes identifying the tokenizer vocabulary and the chat template."""
    vocab = tokenizer.backend_tokenizer.to_str().encode("utf-8")
    return {
        "tokenizer_sha256": short_digest(vocab),
        "chat_template_sha256": short_digest(template.encode("utf-8")),
        "tokenizer_name": str(getattr(tokenizer, "name_or_path", "")),
    }
