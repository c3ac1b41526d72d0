"""Tokenize planned examples into ``input_ids`` / ``labels`` and check every trained span.

Second half of masking (the first is :mod:`sftdata.render`). For each segment the
fast tokenizer returns ids and character offsets; a trained character span
``[a, b)`` becomes the tokens whose offsets lie inside it::

    text     <|im_start|>assistant\\n  Hello  !  <|im_end|>  \\n
    span                             [a ..................... b)
    labels   -100        -100 -100   Hello  !  <|im_end|>  -100

``labels`` follow the unshifted Hugging Face convention: ``labels[i]`` is either
``-100`` or ``input_ids[i]``; the model shifts them by one inside its loss.

Checks, on every example (a failure rejects the row with ``mask_check_failed``; a
wrong mask is never emitted):

* token boundaries: the first trained token starts at ``a`` and the last ends at
  ``b``. Under policies ``exact`` and ``last`` a turn whose boundary falls inside a
  token (BPE merged prompt and answer) becomes an extra example ``P_k + G_k`` encoded
  separately, so its first generated token is still trained; under ``all`` the
  straddling token is trained (it carries generated characters) and counted;
* decoding the trained tokens of each span gives back exactly the span's text;
* at least one token is trained.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Sequence

from .control_tokens import MARK_END, MARK_START
from .errors import Reason, RowError
from .render import PlannedExample, Segment, Span, TurnPolicy, expand_turn
from .schema import TextExample

IGNORE_INDEX = -100


@dataclass(slots=True)
class EncodedExample:
    """One training row.

    Attributes:
        input_ids: ``(seq_len,)`` token ids.
        labels: ``(seq_len,)``; ``-100`` or equal to ``input_ids[i]``.
        kind: ``conversation``, ``expanded_turn`` or ``text``.
        turn_ends: token index (exclusive) where each trained turn ends, ascending;
            used by ``truncation="turns"``.
        truncated: the example was cut to ``max_length``.
    """

    input_ids: list[int]
    labels: list[int]
    kind: str
    turn_ends: list[int] = field(default_factory=list)
    truncated: bool = False

    @property
    def num_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass
class EncodeStats:
    """Counters of encoding, summed into ``stats.json``."""

    token_boundary_expanded: int = 0  # exact: in-place turns moved to an extra example
    token_boundary_straddled: int = 0  # all/last: a token spans the turn boundary
    truncated_examples: int = 0
    dropped_examples: dict = field(default_factory=dict)  # reason -> count


#: A marked control-token text (group 1) or a lone marker, see :mod:`sftdata.control_tokens`.
_MARKED = re.compile(f"{MARK_START}([^{MARK_START}{MARK_END}]*){MARK_END}|[{MARK_START}{MARK_END}]")


class Tokenized:
    """ids of one encoded segment, with character positions of its tokens.

    Built from a ``tokenizers.Encoding``, positions are asked of the encoding at the few
    characters that matter (span boundaries) instead of converting every offset to Python;
    the full offset lists are built lazily only where a lookup needs them.
    """

    __slots__ = ("ids", "_enc", "_starts", "_ends", "_n_chars")

    def __init__(self, encoding=None, n_chars: int = 0) -> None:
        self._enc = encoding
        self.ids: list[int] = encoding.ids if encoding is not None else []
        self._starts: list[int] | None = None if encoding is not None else []
        self._ends: list[int] | None = None if encoding is not None else []
        self._n_chars = n_chars

    @classmethod
    def from_lists(cls, ids: list[int], starts: list[int], ends: list[int]) -> "Tokenized":
        t = cls()
        t.ids, t._starts, t._ends = ids, starts, ends
        return t

    def _materialise(self) -> None:
        offs = self._enc.offsets
        self._starts = [o[0] for o in offs]
        self._ends = [o[1] for o in offs]

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._materialise()
        return self._starts

    @property
    def ends(self) -> list[int]:
        if self._ends is None:
            self._materialise()
        return self._ends

    def start(self, i: int) -> int:
        return self._enc.token_to_chars(i)[0] if self._starts is None else self._starts[i]

    def end(self, i: int) -> int:
        return self._enc.token_to_chars(i)[1] if self._ends is None else self._ends[i]

    def first_ending_after(self, pos: int) -> int:
        """Index of the first token whose end is > ``pos`` (``bisect_right(ends, pos)``)."""
        if self._ends is None and 0 <= pos < self._n_chars:
            t = self._enc.char_to_token(pos)
            if t is not None and (t == 0 or self.end(t - 1) <= pos):
                return t
        return bisect_right(self.ends, pos)

    def first_starting_at(self, pos: int) -> int:
        """Index of the first token whose start is >= ``pos`` (``bisect_left(starts, pos)``)."""
        if self._starts is None:
            if pos >= self._n_chars:
                return len(self.ids) if not self.ids or self.start(len(self.ids) - 1) < pos else bisect_left(self.starts, pos)
            t = self._enc.char_to_token(pos)
            if t is not None and (t == 0 or self.start(t - 1) < pos):
                return t if self.start(t) >= pos else t + 1
        return bisect_left(self.starts, pos)


class SpanEncoder:
    """Turns :class:`PlannedExample` s into :class:`EncodedExample` s.

    Args:
        tokenizer: a ``PreTrainedTokenizerFast``.
        policy: the turn policy (decides what a token-boundary mismatch becomes).
        max_length: maximum tokens per example, or ``None``.
        truncation: ``"drop"`` (an over-long example is dropped, counted ``too_long``)
            or ``"turns"`` (keep the prefix up to the end of the last whole trained turn
            that fits; dropped with ``no_trained_token_after_truncation`` if none fits).
        marked: texts carry the plain-text markers of
            :func:`sftdata.control_tokens.mark_control_tokens`; other texts may contain
            those private-use characters as ordinary text.
    """

    def __init__(
        self,
        tokenizer,
        *,
        policy: TurnPolicy | str = TurnPolicy.EXACT,
        max_length: int | None = None,
        truncation: str = "drop",
        marked: bool = False,
    ) -> None:
        if truncation not in ("drop", "turns"):
            raise ValueError(f"truncation must be 'drop' or 'turns', got {truncation!r}")
        self.tokenizer = tokenizer
        self.marked = marked  # texts carry plain-text markers (special_tokens_in_content="text")
        self.backend = tokenizer.backend_tokenizer
        self.policy = TurnPolicy(policy)
        self.max_length = max_length
        self.truncation = truncation
        bos_id = tokenizer.bos_token_id
        adds_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]
        self._text_bos = [bos_id] if adds_bos else []
        self._eos_id = tokenizer.eos_token_id
        added = list(tokenizer.added_tokens_decoder.values())
        # Prompt-prefix reuse (see encode_plans) is exact only when added tokens are split
        # out verbatim: no whitespace stripping around them and no normalizer rewriting text.
        self._reuse_prefix = bool(added) and self.backend.normalizer is None and not any(
            t.lstrip or t.rstrip or t.single_word for t in added
        )
        self._added_re = re.compile("|".join(re.escape(t.content) for t in sorted(added, key=lambda t: -len(t.content)))) if added else None

    # -- tokenization -------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], need_offsets: Sequence[bool] | None = None) -> list[Tokenized]:
        """Encode many texts at once (the Rust tokenizer parallelises the batch).

        Texts whose ``need_offsets`` is False (untrained prompt segments) are encoded
        without offsets, which is about twice as fast.
        """
        if self.marked:
            return [self._tokenize_marked(t) for t in texts]
        texts = list(texts)
        if need_offsets is None or all(need_offsets):
            return [Tokenized(e, len(t)) for e, t in zip(self.backend.encode_batch(texts, add_special_tokens=False), texts)]
        with_off = [t for t, n in zip(texts, need_offsets) if n]
        without = [t for t, n in zip(texts, need_offsets) if not n]
        enc_with = iter(self.backend.encode_batch(with_off, add_special_tokens=False)) if with_off else iter(())
        enc_without = iter(self.backend.encode_batch_fast(without, add_special_tokens=False)) if without else iter(())
        # segments without spans never look up positions
        return [Tokenized(next(enc_with), len(t)) if n else Tokenized.from_lists(next(enc_without).ids, [], []) for t, n in zip(texts, need_offsets)]

    def _tokenize_marked(self, text: str) -> Tokenized:
        """Encode text holding marked control-token text: marked pieces as plain text
        (pre-tokenizer + model, no added-token matching), markers dropped, offsets kept
        in the coordinates of ``text``."""
        out = Tokenized.from_lists([], [], [])
        pos = 0

        def plain(piece: str, base: int) -> None:
            if not piece:
                return
            enc = self.backend.encode(piece, add_special_tokens=False)
            out.ids.extend(enc.ids)
            out.starts.extend(base + o[0] for o in enc.offsets)
            out.ends.extend(base + o[1] for o in enc.offsets)

        for m in _MARKED.finditer(text):
            plain(text[pos : m.start()], pos)
            if m.group(1):
                base = m.start(1)
                piece = m.group(1)
                if self.backend.normalizer is not None:
                    piece = self.backend.normalizer.normalize_str(piece)
                pretok = self.backend.pre_tokenizer.pre_tokenize_str(piece) if self.backend.pre_tokenizer else [(piece, (0, len(piece)))]
                for word, (a, b) in pretok:
                    for t in self.backend.model.tokenize(word):
                        out.ids.append(t.id)
                        out.starts.append(base + a)
                        out.ends.append(base + b)
            pos = m.end()
        plain(text[pos:], pos)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    # -- conversations ------------------------------------------------------------

    def assemble(self, plan: PlannedExample, toks: Sequence[Tokenized], stats: EncodeStats) -> list[EncodedExample]:
        """Build the example(s) of one plan from its already tokenized segments.

        Returns more than one example when, under ``exact``, a turn's token boundary does
        not align and the turn moves to its own example.

        Raises:
            RowError: ``mask_check_failed`` if a trained span does not decode to its text.
        """
        ids: list[int] = []
        labels: list[int] = []
        turn_ends: list[int] = []
        extra: list[EncodedExample] = []
        for seg, tok in zip(plan.segments, toks):
            offset = len(ids)
            ids.extend(tok.ids)
            labels.extend([IGNORE_INDEX] * len(tok.ids))
            for span in seg.spans:
                r = self._token_range(tok, span)
                if r is None:  # boundary inside a token
                    if self.policy is not TurnPolicy.ALL and span.turn is not None and plan.kind == "conversation":
                        stats.token_boundary_expanded += 1
                        extra.extend(self.encode_plans([expand_turn(span.turn)], stats))
                        continue
                    stats.token_boundary_straddled += 1
                    r = self._overlap_range(tok, span)
                i, j = r
                self._check(ids, offset + i, offset + j, seg, span)
                labels[offset + i : offset + j] = ids[offset + i : offset + j]
                for ma, mb in span.masked:
                    mi = max(i, tok.first_starting_at(ma))
                    mj = min(j, tok.first_ending_after(mb))
                    if mj > mi:
                        labels[offset + mi : offset + mj] = [IGNORE_INDEX] * (mj - mi)
                turn_ends.append(offset + j)
        out = []
        if turn_ends:
            out.append(EncodedExample(ids, labels, plan.kind, sorted(turn_ends)))
        return out + extra

    def encode_plans(self, plans: Sequence[PlannedExample], stats: EncodeStats, main_tok: Tokenized | None = None) -> list[EncodedExample]:
        """Tokenize and assemble the plans of one conversation (no truncation).

        Args:
            main_tok: the already tokenized text of ``plans[0]`` (a ``conversation`` plan),
                when the caller tokenized many conversations in one batch.
        """
        segments = [s for p in plans for s in p.segments]
        main = segments[0] if plans and plans[0].kind == "conversation" else None
        reuse = self._reuse_prefix and main is not None and len(plans) > 1 and not self.marked
        if main is not None and main_tok is None and (reuse or len(plans) == 1):
            main_tok = self.tokenize([main.text], [True])[0]
        if main_tok is None:
            toks = self.tokenize([s.text for s in segments], [bool(s.spans) for s in segments])
        elif not reuse:
            toks = [main_tok] + (self.tokenize([s.text for s in segments[1:]], [bool(s.spans) for s in segments[1:]]) if len(segments) > 1 else [])
        else:
            toks = [main_tok] + [None] * (len(segments) - 1)
            rest = [i for i in range(1, len(segments)) if not self._fill_prefix(segments[i].text, main.text, toks[0], toks, i)]
            for i, tok in zip(rest, self.tokenize([segments[i].text for i in rest], [bool(segments[i].spans) for i in rest])):
                toks[i] = tok
        out: list[EncodedExample] = []
        pos = 0
        for p in plans:
            n = len(p.segments)
            out.extend(self.assemble(p, toks[pos : pos + n], stats))
            pos += n
        return out

    def _fill_prefix(self, prompt: str, full: str, full_tok: Tokenized, toks: list, i: int) -> bool:
        """Tokenize an untrained prompt that is a prefix of the full rendering by reusing the
        full rendering's tokens up to the last added token inside the prompt (tokenizers split
        added tokens out before the model runs, so those tokens cannot depend on what follows),
        plus an encoding of the short rest. Returns False when not applicable."""
        if not full.startswith(prompt) or self._added_re is None:
            return False
        last = None
        for last in self._added_re.finditer(prompt):
            pass
        if last is None:
            return False
        cut = last.end()
        t = full_tok.first_ending_after(cut - 1)
        if t >= len(full_tok.ids) or full_tok.end(t) != cut or full_tok.start(t) != last.start():
            return False
        tail = self.backend.encode(prompt[cut:], add_special_tokens=False).ids if cut < len(prompt) else []
        toks[i] = Tokenized.from_lists(full_tok.ids[: t + 1] + tail, [], [])
        return True

    @staticmethod
    def _token_range(tok: Tokenized, span: Span) -> tuple[int, int] | None:
        i = tok.first_ending_after(span.start)
        j = tok.first_starting_at(span.end)
        if i >= j or tok.start(i) < span.start or tok.end(j - 1) > span.end:
            return None
        if i > 0 and tok.end(i - 1) > span.start:
            return None
        return i, j

    @staticmethod
    def _overlap_range(tok: Tokenized, span: Span) -> tuple[int, int]:
        i = tok.first_ending_after(span.start)
        j = tok.first_starting_at(span.end)
        return i, max(j, i + 1)

    def _check(self, ids: list[int], i: int, j: int, seg: Segment, span: Span) -> None:
        expected = seg.text[span.start : span.end]
        if self.marked:
            expected = expected.replace(MARK_START, "").replace(MARK_END, "")
        got = self.decode(ids[i:j])
        if got != expected and i > 0:
            # Decoders that drop a leading space at the start of a decode (SentencePiece's
            # Metaspace) need one token of left context to show it.
            head = self.decode(ids[i - 1 : i])
            with_ctx = self.decode(ids[i - 1 : j])
            if with_ctx.startswith(head):
                got = with_ctx[len(head) :]
        if got == expected:
            return
        if self.policy is TurnPolicy.ALL and expected in got:
            return  # `all` with a straddling token: the extra characters are context
        raise RowError(
            Reason.MASK_CHECK_FAILED,
            f"trained tokens decode to {got[:80]!r}… but the turn is {expected[:80]!r}…",
            field=f"messages[{span.message}]",
            stage="check",
        )

    # -- plain text ---------------------------------------------------------------

    def encode_text(self, example: TextExample) -> EncodedExample:
        """Encode a :class:`TextExample`: segments tokenized separately, BOS as the tokenizer
        adds it, EOS appended (trained) after a trained final segment."""
        toks = self.tokenize([s for s, _ in example.segments])
        ids = list(self._text_bos)
        labels = [IGNORE_INDEX] * len(ids)
        for (_, trained), tok in zip(example.segments, toks):
            ids.extend(tok.ids)
            labels.extend(tok.ids if trained else [IGNORE_INDEX] * len(tok.ids))
        if example.segments[-1][1] and self._eos_id is not None and (not ids or ids[-1] != self._eos_id):
            ids.append(self._eos_id)
            labels.append(self._eos_id)
        if all(x == IGNORE_INDEX for x in labels):
            raise RowError(Reason.NO_TRAINED_TURN, "no trained token in the text example", field="text", stage="encode")
        return EncodedExample(ids, labels, "text", [len(ids)])

    # -- truncation ---------------------------------------------------------------

    def fit(self, ex: EncodedExample, stats: EncodeStats) -> tuple[EncodedExample | None, str | None]:
        """Apply ``max_length``: ``(example or truncated copy, None)`` or ``(None, drop reason)`` (counted)."""
        if self.max_length is None or len(ex.input_ids) <= self.max_length:
            return ex, None
        if self.truncation == "drop":
            reason = Reason.TOO_LONG.value
        else:
            fitting = [e for e in ex.turn_ends if e <= self.max_length]
            if fitting:
                cut = fitting[-1]
                stats.truncated_examples += 1
                return EncodedExample(ex.input_ids[:cut], ex.labels[:cut], ex.kind, fitting, truncated=True), None
            reason = Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value
        stats.dropped_examples[reason] = stats.dropped_examples.get(reason, 0) + 1
        return None, reason
