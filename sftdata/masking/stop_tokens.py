"""The model's stop set: the tokens whose generation ends an assistant turn.

A generated turn ends at the first token of the stop set (generation stops there at
inference), and that token is trained. The set is, in order:

1. the tokenizer's EOS token;
2. ``eos_token_id`` of ``generation_config.json`` when that file sits beside the tokenizer
   (a local model directory), which is what ``model.generate`` and vLLM stop on;
3. the tokens given explicitly (``--stop-tokens``);
4. only when no ``generation_config.json`` was found: the fallback table
   :data:`FALLBACK_STOP_TOKENS`, whose entries apply to a tokenizer that has all of an entry's
   marker tokens; each entry cites the ``generation_config.json`` it copies.

Every token must be an added (control) token of the tokenizer, so that it is one id and
never produced by message text.

    >>> stop = resolve_stop_tokens(tokenizer)        # doctest: +SKIP
    >>> stop.tokens, stop.sources                    # doctest: +SKIP
    (('<|im_end|>', '<|endoftext|>'), {'eos': ['<|im_end|>'], 'fallback:qwen': [...]})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError


@dataclass(frozen=True)
class FallbackEntry:
    """Stop tokens of one model family, applied when the tokenizer has every marker token."""

    family: str
    markers: tuple[str, ...]
    stop: tuple[str, ...]
    source: str


#: Used only when no ``generation_config.json`` sits beside the tokenizer.
FALLBACK_STOP_TOKENS: tuple[FallbackEntry, ...] = (
    FallbackEntry(
        "qwen", ("<|im_start|>", "<|im_end|>"), ("<|im_end|>", "<|endoftext|>"),
        "Qwen/Qwen3-0.6B generation_config.json: eos_token_id [151645, 151643]",
    ),
    FallbackEntry(
        "llama3", ("<|start_header_id|>", "<|eot_id|>"), ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
        "meta-llama/Llama-3.1-8B-Instruct generation_config.json: eos_token_id [128001, 128008, 128009]",
    ),
    FallbackEntry(
        "gpt-oss", ("<|channel|>", "<|return|>", "<|call|>"), ("<|return|>", "<|call|>", "<|endoftext|>"),
        "openai/gpt-oss-120b generation_config.json: eos_token_id [200002, 199999, 200012]",
    ),
    FallbackEntry(
        "glm4", ("[gMASK]", "<|observation|>"), ("<|user|>", "<|observation|>", "<|endoftext|>"),
        "zai-org/GLM-4.5 generation_config.json: eos_token_id [151329, 151336, 151338]",
    ),
    FallbackEntry(
        "gemma", ("<start_of_turn>", "<end_of_turn>"), ("<end_of_turn>", "<eos>"),
        "google/gemma-2-2b-it generation_config.json: eos_token_id [1, 107]",
    ),
    FallbackEntry(
        "phi3", ("<|assistant|>", "<|end|>", "<|endoftext|>"), ("<|end|>", "<|assistant|>", "<|endoftext|>"),
        "microsoft/Phi-3.5-mini-instruct generation_config.json: eos_token_id [32007, 32001, 32000]",
    ),
)


@dataclass(frozen=True)
class StopTokens:
    """The resolved stop set.

    Attributes:
        tokens: the token strings, duplicates removed, in the order found.
        sources: where each came from (``eos``, ``generation_config``, ``explicit``,
            ``fallback:<family>``), recorded in ``stats.json``.
    """

    tokens: tuple[str, ...]
    sources: dict = field(default_factory=dict)


def _added_tokens(tokenizer) -> dict[str, int]:
    return {t.content: i for i, t in tokenizer.added_tokens_decoder.items()}


def generation_config_stop_tokens(tokenizer, directory: str | Path | None = None) -> tuple[list[str], str | None]:
    """Tokens of ``eos_token_id`` in ``generation_config.json`` beside the tokenizer.

    Args:
        directory: where to look (default: ``tokenizer.name_or_path`` when it is a directory).

    Returns:
        ``(tokens, path)``; ``([], None)`` when there is no such file.

    Raises:
        ConfigError: the file is not valid JSON, or an id is not a token of the tokenizer.
    """
    where = Path(directory) if directory is not None else Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    path = where / "generation_config.json"
    if not str(where) or not path.is_file():
        return [], None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    ids = cfg.get("eos_token_id")
    if ids is None:
        return [], str(path)
    ids = [ids] if isinstance(ids, int) else list(ids)
    vocab_size = len(tokenizer)
    out = []
    for i in ids:
        if not isinstance(i, int) or not 0 <= i < vocab_size:
            raise ConfigError(f"{path}: eos_token_id {i!r} is not a token id of the tokenizer (vocabulary of {vocab_size})")
        out.append(tokenizer.convert_ids_to_tokens(i))
    return out, str(path)


def resolve_stop_tokens(tokenizer, explicit: Iterable[str] | None = None, *, directory: str | Path | None = None) -> StopTokens:
    """The stop set of ``tokenizer`` (see the module docstring).

    Raises:
        ConfigError: an explicit or configured stop token is not an added token of the
            tokenizer, or the stop set is empty.
    """
    added = _added_tokens(tokenizer)
    tokens: list[str] = []
    sources: dict[str, list[str]] = {}

    def add(source: str, toks: Iterable[str]) -> None:
        for t in toks:
            if t not in added:
                raise ConfigError(
                    f"stop token {t!r} (from {source}) is not an added token of the tokenizer; "
                    "a stop token must be a single control-token id"
                )
            sources.setdefault(source, []).append(t)
            if t not in tokens:
                tokens.append(t)

    eos = tokenizer.eos_token
    if isinstance(eos, str) and eos and eos in added:
        add("eos", [eos])
    from_config, path = generation_config_stop_tokens(tokenizer, directory)
    if from_config:
        add("generation_config", from_config)
    if explicit:
        add("explicit", list(explicit))
    if path is None:
        for entry in FALLBACK_STOP_TOKENS:
            if all(m in added for m in entry.markers):
                add(f"fallback:{entry.family}", [t for t in entry.stop if t in added])
    if not tokens:
        raise ConfigError(
            "the tokenizer has no stop token: no EOS added token, no generation_config.json beside it, "
            "and no --stop-tokens; pass --stop-tokens TOKEN[,TOKEN]"
        )
    return StopTokens(tuple(tokens), sources)
