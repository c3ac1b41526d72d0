"""Exact tokenization of many overlapping texts, each piece between added tokens encoded once.

The renderings of one conversation (``F``, every prompt ``P_k``, every generated turn
``G_k``) and of a whole dataset (one system prompt and tool list repeated in every row)
share most of their text. A fast tokenizer first splits a text at its added tokens
(``<|im_start|>``, ``<think>``…) and then normalises, pre-tokenizes and encodes every piece
between them on its own (``tokenizers``' ``AddedVocabulary::extract_and_normalize``). So
``tokenizer(text)`` is the concatenation of the encodings of those pieces, and each distinct
piece needs to be encoded only once:

    text   : <|im_start|>system\\nYou are…<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>
    pieces : [<|im_start|>] "system\\nYou are…" [<|im_end|>] "\\n" [<|im_start|>] "user\\nHi" [<|im_end|>]
    ids    :  151644        (cached)             151645     (cached) 151644       (new)      151645

This holds when added tokens are matched verbatim (no ``lstrip``/``rstrip``/``single_word``,
and ``normalized=False`` if there is a normalizer) and the pre-tokenizer does not treat the
first piece of a text differently (``Metaspace`` with ``prepend_scheme="first"`` does). The
encoder checks both at construction, plus an empirical probe, and otherwise encodes whole
texts (still cached per text); :attr:`SegmentEncoder.split_exact` tells which.

With ``marked=True`` (``special_tokens_in_content="text"``), control-token text wrapped in
the markers of :mod:`sftdata.masking.control_tokens` is encoded as plain text (pre-tokenizer and BPE
model, never the added-token vocabulary) and the markers are dropped.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Sequence

from ..invariants import InvariantError
from .control_tokens import MARK_END, MARK_START

#: Texts encoded to compare the split path with the tokenizer at construction.
_PROBES = (
    "a{T}b", " a {T} b ", "{T}\n\nx\n{T}", "x\n{T}\n", "\u00e9t\u00e9 {T}\u4e2d\u6587  {T}", "{T}{T} z", "  ",
)


def component_spec(component) -> dict | None:
    """The JSON description of a tokenizer component (``backend.pre_tokenizer``,
    ``backend.normalizer``) without serialising the whole tokenizer (a 150k vocabulary is
    megabytes of JSON)."""
    if component is None:
        return None
    return json.loads(component.__getstate__())


def metaspace_first(node) -> bool:
    """Whether a (pre-)tokenizer JSON node holds a Metaspace that prepends only to the first piece."""
    if isinstance(node, dict):
        if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") == "first":
            return True
        return any(metaspace_first(v) for v in node.values())
    if isinstance(node, list):
        return any(metaspace_first(v) for v in node)
    return False


@dataclass(slots=True)
class Layout:
    """A text split at its added tokens, with the token ids of each piece's start.

    ``pieces`` alternate text and added token (``[text, added, text, ..., text]``);
    ``char_starts[i]`` / ``tok_starts[i]`` are where piece ``i`` starts in characters / tokens
    (one more entry for the end).
    """

    text: str
    ids: list[int]
    pieces: list[str]
    char_starts: list[int]
    tok_starts: list[int]


class SegmentEncoder:
    """``tokenizer(text, add_special_tokens=False)["input_ids"]`` for many texts, with a piece cache.

    Args:
        tokenizer: a ``PreTrainedTokenizerFast``.
        marked: texts may carry plain-text markers (see the module docstring).
        cache_chars: empty the cache when the cached pieces exceed this many characters.

    The cache keeps the pieces used since the last :meth:`next_batch` call when that is called
    (once per chunk of conversations): a system prompt or tool list repeated in every row stays,
    the pieces of earlier conversations go, so memory does not grow with the input.

    Attributes:
        split_exact: pieces between added tokens are encoded on their own (else whole texts).
    """

    def __init__(self, tokenizer, *, marked: bool = False, cache_chars: int = 20_000_000) -> None:
        self.backend = tokenizer.backend_tokenizer
        self.marked = marked
        self.cache_chars = cache_chars
        added = list(tokenizer.added_tokens_decoder.items())
        self._added_ids = {t.content: i for i, t in added if t.content}
        contents = sorted(self._added_ids, key=len, reverse=True)
        self._longest_added = len(contents[0]) if contents else 0
        body = "|".join(re.escape(c) for c in contents)
        guard = f"(?<!{MARK_START})" if marked else ""
        self._split_re = re.compile(f"{guard}({body})") if contents else None
        self._cache: dict[str, list[int]] = {}
        self._cached_chars = 0
        self._used: set[str] = set()
        normalizer = self.backend.normalizer is not None
        verbatim = not any(t.lstrip or t.rstrip or t.single_word or (normalizer and t.normalized) for _, t in added)
        self.split_exact = (
            bool(contents)
            and verbatim
            and not metaspace_first(component_spec(self.backend.pre_tokenizer))
            and not metaspace_first(component_spec(self.backend.normalizer))
        )
        if self.split_exact:
            self.split_exact = self._probe(contents)
            self._cache.clear()
            self._cached_chars = 0

    def _probe(self, contents: list[str]) -> bool:
        for tok in contents[:8]:
            for p in _PROBES:
                text = p.replace("{T}", tok)
                if self._encode_split([text])[0] != self.backend.encode(text, add_special_tokens=False).ids:
                    return False
        return True

    def __getstate__(self) -> dict:
        """Pickle without the piece cache (workers build their own)."""
        state = dict(self.__dict__)
        state["_cache"], state["_cached_chars"], state["_used"] = {}, 0, set()
        return state

    def next_batch(self) -> None:
        """Keep only the cached pieces used since the previous call (see the class doc)."""
        self._cache = {k: v for k, v in self._cache.items() if k in self._used}
        self._cached_chars = sum(len(k) for k in self._cache)
        self._used = set()

    # -- public ----------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (fresh lists, safe to mutate)."""
        if self.split_exact:
            return self._encode_split(texts)
        return self._encode_whole(texts)

    def layouts(self, texts: Sequence[str]) -> list[Layout | None]:
        """:meth:`encode` plus each text's piece structure (``None`` when pieces are not encoded
        on their own, see :attr:`split_exact`), for :meth:`encode_prefixes`."""
        if not self.split_exact:
            return [None] * len(texts)
        split = [self._split_re.split(t) for t in texts]
        self._fill(split)
        out: list[Layout | None] = []
        cache, added = self._cache, self._added_ids
        for text, parts in zip(texts, split):
            ids: list[int] = []
            char_starts, tok_starts = [], []
            pos = 0
            for i, p in enumerate(parts):
                char_starts.append(pos)
                tok_starts.append(len(ids))
                pos += len(p)
                if i % 2:
                    ids.append(added[p])
                elif p:
                    ids.extend(cache[p])
            char_starts.append(pos)
            tok_starts.append(len(ids))
            out.append(Layout(text, ids, parts, char_starts, tok_starts))
        return out

    def encode_prefixes(self, jobs: Sequence[tuple[Layout, str]]) -> list[tuple[list[int], int]]:
        """Token ids of texts that are prefixes of already split texts, reusing their pieces.

        Every piece of the base text before the piece the prefix ends in is a piece of the prefix
        too (an added-token match wholly inside the prefix is matched in it, and no new match can
        start before it); only the rest is split and encoded. A prefix that ends inside an added
        token turns that token's text into plain text joined to the text piece before it, so that
        piece is encoded again too.

        Args:
            jobs: ``(layout, prefix)`` pairs with ``layout.text.startswith(prefix)``.

        Returns:
            ``(ids, shared)`` per job: the prefix's ids, and how many leading tokens are known to
            equal the base text's (at least; the true common prefix may be longer).
        """
        out = []
        for (layout, _), (shared, tail) in zip(jobs, self._prefix_tails([(lay, len(p)) for lay, p in jobs])):
            ids = layout.ids[:shared]
            ids.extend(tail)
            out.append((ids, shared))
        return out

    def _prefix_tails(self, jobs: Sequence[tuple[Layout, int]]) -> list[tuple[int, list[int]]]:
        """``(shared, tail ids)`` per ``(layout, n)``: the tokens of ``layout.text[:n]`` are
        ``layout.ids[:shared] + tail`` (the rule of :meth:`encode_prefixes`, without the copy)."""
        tails, cuts = [], []
        for layout, n in jobs:
            q = bisect_right(layout.char_starts, n) - 1
            q = min(q, len(layout.pieces) - 1)
            if q % 2 and layout.char_starts[q] != n:
                # the prefix cuts an added token: its text joins the text piece before it
                q -= 1
            if layout.char_starts[q] == n:  # ends where a piece starts: nothing to re-split
                cuts.append((layout, q, None))
                continue
            cuts.append((layout, q, len(tails)))
            tails.append(layout.text[layout.char_starts[q] : n])
        tail_ids = self.encode(tails) if tails else []
        return [(layout.tok_starts[q], tail_ids[t] if t is not None else []) for layout, q, t in cuts]

    def encode_branches(self, jobs: Sequence[tuple[Layout, int, str]]) -> list[tuple[int, list[int]]]:
        """Token ids of texts that share a prefix with an already split text, as that text's
        leading tokens plus the ids of the rest (nothing long is copied).

        For ``(layout, s, tail)`` the text is ``layout.text[:s] + tail``. With ``tail`` empty it is
        a prefix (:meth:`encode_prefixes`). Otherwise the split is taken from the last piece
        boundary ``c`` of the layout, at the end of an added token (or 0), with
        ``c <= s - L`` (``L`` the longest added token): every added-token match of the layout
        starting before ``c`` ends by ``c`` and reads only characters before ``s``, which the two
        texts share, so the text splits there the same way and only ``text[c:]`` is encoded.

        Args:
            jobs: ``(layout, s, tail)`` with ``s <= len(layout.text)``.

        Returns:
            ``(shared, ids)`` per job: the text's tokens are ``layout.ids[:shared] + ids``.
        """
        prefixes = [(i, layout, s) for i, (layout, s, tail) in enumerate(jobs) if not tail]
        out: list[tuple[int, list[int]] | None] = [None] * len(jobs)
        for (i, _, _), cut in zip(prefixes, self._prefix_tails([(lay, n) for _, lay, n in prefixes])):
            out[i] = cut
        rest, where = [], []
        for i, (layout, s, tail) in enumerate(jobs):
            if not tail:
                continue
            q = bisect_right(layout.char_starts, max(s - self._longest_added, 0)) - 1
            q = min(q, len(layout.pieces) - 1)
            if q % 2:  # inside or at an added token: start at the text piece before it
                q -= 1
            c = layout.char_starts[q]
            where.append((i, layout.tok_starts[q]))
            rest.append(layout.text[c:s] + tail)
        for (i, shared), ids in zip(where, self.encode(rest) if rest else ()):
            out[i] = (shared, ids)
        return out  # type: ignore[return-value]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of every token of ``text`` (the rare path: no cache).

        With markers, offsets are in the coordinates of the marked text.
        """
        if self.marked and (MARK_START in text or MARK_END in text):
            return self._marked(text, with_offsets=True)[1]
        return [tuple(o) for o in self.backend.encode(text, add_special_tokens=False).offsets]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (special tokens kept), as the tokenizer decodes it."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    # -- internals ---------------------------------------------------------------------
    def _encode_whole(self, texts: Sequence[str]) -> list[list[int]]:
        todo = list({t for t in texts if t not in self._cache})
        if self._cached_chars + sum(len(t) for t in todo) > self.cache_chars:
            self._cache.clear()
            self._cached_chars = 0
            todo = list(set(texts))
        plain = [t for t in todo if not (self.marked and (MARK_START in t or MARK_END in t))]
        for t, enc in zip(plain, self.backend.encode_batch_fast(plain, add_special_tokens=False) if plain else ()):
            self._cache[t] = enc.ids
        for t in todo:
            if t not in self._cache:
                self._cache[t] = self._marked(t)[0]
        self._cached_chars += sum(len(t) for t in todo)
        self._used.update(texts)
        return [list(self._cache[t]) for t in texts]

    def _fill(self, split: list[list[str]]) -> None:
        """Encode (in one batch) every text piece of ``split`` not in the cache yet."""
        pieces = {p for parts in split for p in parts[0::2] if p}
        self._used |= pieces
        missing = {p for p in pieces if p not in self._cache}
        if self._cached_chars + sum(len(p) for p in missing) > self.cache_chars:
            self._cache.clear()  # make room now: the pieces of this call must stay until assembled
            self._cached_chars = 0
            missing = pieces
        plain = [p for p in missing if not (self.marked and (MARK_START in p or MARK_END in p))]
        for p, enc in zip(plain, self.backend.encode_batch_fast(plain, add_special_tokens=False) if plain else ()):
            self._cache[p] = enc.ids
            self._cached_chars += len(p)
        for p in missing:
            if p not in self._cache:
                self._cache[p] = self._marked(p)[0]
                self._cached_chars += len(p)

    def _encode_split(self, texts: Sequence[str]) -> list[list[int]]:
        if self._split_re is None:
            raise InvariantError("split encoding needs added tokens", "_encode_split called without an added-token pattern")
        split = [self._split_re.split(t) for t in texts]  # [piece, added, piece, added, ..., piece]
        self._fill(split)
        out = []
        cache, added = self._cache, self._added_ids
        for parts in split:
            ids: list[int] = []
            for i, p in enumerate(parts):
                if i % 2:
                    ids.append(added[p])
                elif p:
                    ids.extend(cache[p])
            out.append(ids)
        return out

    def _marked(self, text: str, with_offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Encode text holding marked control-token text: marked pieces as plain text
        (pre-tokenizer + model, no added-token matching), markers dropped."""
        ids: list[int] = []
        offs: list[tuple[int, int]] = []
        pos = 0
        backend = self.backend

        def plain(piece: str, base: int) -> None:
            if not piece:
                return
            enc = backend.encode(piece, add_special_tokens=False)
            ids.extend(enc.ids)
            if with_offsets:
                offs.extend((base + a, base + b) for a, b in enc.offsets)

        for m in _MARKED.finditer(text):
            plain(text[pos : m.start()], pos)
            if m.group(1):
                base = m.start(1)
                piece = m.group(1)
                if backend.normalizer is not None:
                    piece = backend.normalizer.normalize_str(piece)
                words = backend.pre_tokenizer.pre_tokenize_str(piece) if backend.pre_tokenizer else [(piece, (0, len(piece)))]
                for word, (a, b) in words:
                    for t in backend.model.tokenize(word):
                        ids.append(t.id)
                        if with_offsets:
                            offs.append((base + a, base + b))
            pos = m.end()
        plain(text[pos:], pos)
        return ids, offs


#: A marked control-token text (group 1) or a lone marker.
_MARKED = re.compile(f"{MARK_START}([^{MARK_START}{MARK_END}]*){MARK_END}|[{MARK_START}{MARK_END}]")
