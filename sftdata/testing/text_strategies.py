"""Hypothesis strategies for the text inside conversations: content with varied whitespace
and Unicode (and, on request, control-token strings), and JSON values for tool arguments.

Part of :mod:`sftdata.testing.strategies` (which re-exports :func:`texts`,
:func:`json_values` and :data:`SPECIAL_STRINGS`); see its docstring for the guarantees.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Literal

from hypothesis import strategies as st

#: Control-token strings of common chat templates; kept out of generated text unless
#: ``special_token_text=True`` (then mixed in).
SPECIAL_STRINGS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|eom_id|>", "<|python_tag|>",
    "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>",
    "<|user|>", "<|assistant|>", "<|system|>", "<|end|>",
)

_ASCII_WORDS = (
    "hello", "world", "the", "answer", "is", "42", "weather", "Paris", "call", "tool", "result", "ok", "error",
    "def", "return", "x", "y", "foo_bar", "JSON", "null", "true", "I", "can't", "it's", "https://example.com",
    "a.b", "file.py", "$HOME", "C:\\path", "100%", "e.g.", "1,000.5", "-1", "user", "assistant", "system",
)
_PUNCT = tuple(".,;:!?'\"`()[]{}<>|/\\@#$%^&*-_+=~")
_WHITESPACE = (" ", " ", "  ", "\n", "\n", "\n\n", "\t", " \n", "\n ", "\r\n", "\n\n\n")
_UNICODE_PIECES = (
    "你好", "世界", "天气怎么样？", "東京", "こんにちは", "안녕", "Привет", "café", "naïve", "straße", "Ελλάδα",
    "مرحبا", "שלום", "नमस्ते", "😀", "🚀", "👍🏽", "🇫🇷", "👩‍💻", "e\u0301", "\u0301", "a\u0308\u0304",
    "\u00a0", "\u3000", "\u2028", "\u200b", "\ufeff", "°C", "€", "…", "—", "“", "”", "½", "→", "\U0001f9ea",
)

_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
Whitespace = Literal["any", "stripped"]


def _ascii_chars() -> st.SearchStrategy[str]:
    return st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _unicode_chars() -> st.SearchStrategy[str]:
    # any code point but surrogates and C0/C1 controls other than \t \n \r
    return st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(("\t", "\n", "\r"))


def texts(
    *,
    unicode: bool = True,
    special_token_text: bool = False,
    special_strings: Iterable[str] = SPECIAL_STRINGS,
    min_pieces: int = 0,
    max_pieces: int = 12,
    whitespace: Whitespace = "any",
) -> st.SearchStrategy[str]:
    """Strings built from pieces: words, punctuation, whitespace runs, unicode, random characters.

    Args:
        unicode: include non-ASCII pieces (CJK, RTL scripts, emoji with skin tones/ZWJ/flags,
            combining marks, a lone combining mark, odd spaces such as U+00A0, U+3000, U+2028,
            zero-width chars, BOM) and random non-ASCII characters.
        special_token_text: mix in ``special_strings`` (else text never contains any of them).
        special_strings: the control-token strings to mix in or keep out.
        min_pieces, max_pieces: how many pieces (``min_pieces=0`` allows ``""``).
        whitespace: ``"any"`` (leading/trailing whitespace allowed) or ``"stripped"``
            (``str.strip()`` applied; the result may then be ``""``).

    Returns:
        A strategy of ``str`` (never containing surrogates or C0/C1 controls except ``\\t\\n\\r``).
    """
    return _texts(unicode, special_token_text, tuple(special_strings), min_pieces, max_pieces, whitespace)


@functools.lru_cache(maxsize=256)
def _texts(
    unicode: bool,
    special_token_text: bool,
    specials: tuple[str, ...],
    min_pieces: int,
    max_pieces: int,
    whitespace: str,
) -> st.SearchStrategy[str]:
    pieces = [
        st.sampled_from(_ASCII_WORDS),
        st.sampled_from(_PUNCT),
        st.sampled_from(_WHITESPACE),
        st.text(_ascii_chars(), min_size=1, max_size=6),
    ]
    if unicode:
        pieces += [st.sampled_from(_UNICODE_PIECES), st.text(_unicode_chars(), min_size=1, max_size=4)]
    if special_token_text and specials:
        pieces.append(st.sampled_from(specials))
    piece = st.one_of(*pieces)

    def join(parts: list[str]) -> str:
        text = ""
        for p in parts:
            # words are usually separated by a space; punctuation and whitespace glue on
            if text and p[:1].isalnum() and text[-1:].isalnum():
                text += " "
            text += p
        return text.strip() if whitespace == "stripped" else text

    strat = st.lists(piece, min_size=min_pieces, max_size=max_pieces).map(join)
    if not special_token_text and specials:
        strat = strat.filter(lambda s: not any(tok in s for tok in specials))
    return strat


def json_values(*, text: st.SearchStrategy[str] | None = None, max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """JSON-able values: null, booleans, ints (|n| <= 2**53), finite floats, strings, lists, objects.

    Args:
        text: the strategy for strings (default: short :func:`texts`).
        max_leaves: bound on the size of nested values.
    """
    return _json_values(text if text is not None else texts(max_pieces=4), max_leaves)


@functools.lru_cache(maxsize=256)
def _json_values(text: st.SearchStrategy[str], max_leaves: int) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False, width=64)
        | text
    )
    keys = _IDENT | text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=max_leaves,
    )
