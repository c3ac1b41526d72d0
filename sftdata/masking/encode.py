"""Tokenize rendered conversations into tree rows, deciding on tokens, and check every turn.

Second half of masking (the first is :mod:`sftdata.masking.render`). For one conversation::

    tokens(F)                      the training rendering, untrained
    tokens(P_k) + tokens(G_k)      every trained turn: the prompt the model sees, then what it
                                   generates (labels = the ids of G_k), for k = 1..K

are merged into one prefix tree (:class:`sftdata.masking.tree.TrieBuilder`). A turn is *trained in
place* exactly when ``tokens(F)`` starts with ``tokens(P_k) + tokens(G_k)`` (a decision on
tokens, never on characters); otherwise it becomes a branch. ``F`` stays in the tree only as
far as a turn's sequence follows it when it trains no turn of its own (no stored path without
a trained token). A template that never rewrites a turn gives a single path: the ordinary row.

``tokens(x)`` is ``tokenizer(x, add_special_tokens=False)`` (what ``apply_chat_template(...,
tokenize=True)`` gives), computed by :class:`sftdata.masking.segments.SegmentEncoder`. The generated
tokens are ``tokens(G_k)`` encoded on their own (the prompt/completion convention), except for
tokenizers that add a prefix space to a text's first piece (SentencePiece ``Metaspace``), whose
generated tokens are the tail of ``tokens(P_k + G_k)``.

Checks on every turn (a failure rejects the row with ``mask_check_failed``; a wrong mask is
never written): the generated tokens decode to exactly ``G_k``; at least one token is trained;
``labels[i]`` is ``-100`` or ``input_ids[i]`` by construction.

Layouts: ``tree`` (default) writes the tree row; ``linear`` writes every root-to-leaf path as
its own row (:func:`sftdata.masking.tree.unroll`), each trained token in exactly one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .control_tokens import MARK_END, MARK_START
from ..errors import Reason, RowError
from ..invariants import InvariantError
from ..options import LAYOUTS, EncodeConfig  # noqa: F401 - LAYOUTS: public here too
from .rendered import Rendered, Turn, TurnPolicy
from ..schema import TextExample
from .segments import SegmentEncoder, metaspace_first, component_spec
from .tree import IGNORE_INDEX, Joined, TreeRow, TrieBuilder, common_prefix_len, unroll
from .turn_check import check_turn_paths
from .encoded import EncodedExample, EncodeStats  # noqa: F401 - public here too



@dataclass(slots=True)
class _Seq:
    """A turn's sequence ``tokens(P_k) + tokens(G_k)``, held as ``F``'s first ``shared`` tokens
    (a reference) plus its own tail: ``ids = Joined(f_ids, shared, tail)``."""

    ids: Joined
    labels: Joined
    message: int
    prompt_len: int = 0
    shared_with_f: int = 0  # leading tokens known to equal the training rendering's


class ConversationEncoder:
    """Turns :class:`~sftdata.masking.render.Rendered` conversations into rows.

    Args:
        tokenizer: a ``PreTrainedTokenizerFast``.
        policy: the turn policy.
        layout: ``tree`` or ``linear``.
        max_length: maximum tokens per row (``None``: no limit).
        truncation: for a row longer than ``max_length`` (:func:`sftdata.masking.tree_fit.fit_tree`: a
            tree is split into sub-trees that fit): ``drop`` keeps the sequences that fit whole
            (none: dropped, ``too_long``), ``turns`` every turn whose own sequence fits (none:
            dropped, ``no_trained_token_after_truncation``).
        marked: texts carry the plain-text markers of ``special_tokens_in_content="text"``.
        keep_rendering: store the whole rendering ``F`` even when it trains no turn of its own
            (``trim_trailing=False``: the user asked for the untrained trailing messages).
    """

    def __init__(self, tokenizer, *, policy: TurnPolicy | str = TurnPolicy.EXACT, layout: str = "tree",
                 max_length: int | None = None, truncation: str = "drop", marked: bool = False,
                 keep_rendering: bool = False) -> None:
        EncodeConfig(layout=layout, max_length=max_length, truncation=truncation)  # validated once, there
        self.tokenizer = tokenizer
        self.segments = SegmentEncoder(tokenizer, marked=marked)
        self.policy = TurnPolicy(policy)
        self.layout = layout
        self.max_length = max_length
        self.truncation = truncation
        self.marked = marked
        self.keep_rendering = keep_rendering
        probe = self.segments.encode(["a"])[0]
        self._in_context = metaspace_first(component_spec(tokenizer.backend_tokenizer.pre_tokenizer)) or self.segments.decode(probe) != "a"
        bos_id = tokenizer.bos_token_id
        adds_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]
        self._text_bos = [bos_id] if adds_bos else []
        self._eos_id = tokenizer.eos_token_id

    # -- conversations ------------------------------------------------------------
    def encode_many(self, rendered: Sequence[Rendered]) -> list[tuple[list[EncodedExample] | RowError, EncodeStats]]:
        """Encode conversations (their texts tokenized together, in one batch).

        Every prompt is tokenized against its conversation's training rendering ``F``: the part
        it shares with ``F`` reuses ``F``'s tokens (:meth:`SegmentEncoder.encode_branches`), only
        the rest is encoded, and the sequence keeps a reference to ``F``'s tokens plus its own
        tail, so a conversation's memory grows with what its turns do not share with ``F``.

        Returns, per conversation, its rows or the :class:`RowError` that rejects it, with the
        conversation's own :class:`EncodeStats` (a rejected conversation counts only what it
        dropped: ``dropped_examples``, ``trained_tokens_over_length``, ``trained_tokens_cut``).
        """
        self.segments.next_batch()  # the piece cache keeps what the previous chunk used
        layouts = self.segments.layouts([r.text for r in rendered])
        f_ids: list[list[int]] = []
        jobs, where = [], []  # prompts against a layout: (layout, shared chars, tail), (row, turn)
        for i, (r, lay) in enumerate(zip(rendered, layouts)):
            f_ids.append(lay.ids if lay is not None else self.segments.encode([r.text])[0])
            if lay is not None:
                for j, t in enumerate(r.turns):
                    jobs.append((lay, t.prompt_shared, t.prompt_tail))
                    where.append((i, j))
        prompts: dict[tuple[int, int], tuple[int, list[int]]] = dict(zip(where, self.segments.encode_branches(jobs))) if jobs else {}
        generated = [t.generated for r in rendered for t in r.turns]
        unique = list(dict.fromkeys(generated))
        gen_ids = dict(zip(unique, self.segments.encode(unique)))
        out: list[tuple[list[EncodedExample] | RowError, EncodeStats]] = []
        for i, r in enumerate(rendered):
            stats = EncodeStats()
            try:
                out.append((self._encode_one(r, i, f_ids[i], prompts, gen_ids, stats), stats))
            except RowError as e:  # a rejected row counts only what it dropped
                out.append((e.detached(), EncodeStats(dropped_examples=stats.dropped_examples,
                                           trained_tokens_over_length=stats.trained_tokens_over_length,
                                           trained_tokens_cut=stats.trained_tokens_cut)))
        return out

    def _prompt_ids(self, t: Turn, f_ids: list[int]) -> tuple[int, list[int]]:
        """``(shared, tail)`` with ``tokens(P_k) = f_ids[:shared] + tail``, for a conversation
        whose rendering has no piece layout (the prompt is encoded whole, then compared)."""
        ids = self.segments.encode([t.prompt])[0]
        shared = common_prefix_len(ids, f_ids)
        return shared, ids[shared:]

    def _encode_one(self, r: Rendered, row: int, f_ids: list[int], prompts: dict, gen_ids: dict[str, list[int]],
                    stats: EncodeStats) -> list[EncodedExample]:
        """One conversation's rows. ``prompts[(row, turn)]``: ``(shared, tail)``, the prompt's
        tokens as ``f_ids[:shared] + tail`` (``shared`` tokens known to equal ``F``'s)."""
        seqs = []
        for j, t in enumerate(r.turns):
            shared, tail = prompts.get((row, j)) or self._prompt_ids(t, f_ids)
            s = self._sequence(t, f_ids, shared, tail, gen_ids)
            if s is not None:
                seqs.append(s)
        stats.turns_not_rendered += len(r.turns) - len(seqs)
        if not seqs:
            raise RowError(Reason.NO_TRAINED_TURN, "the chat template renders nothing the model generates for any trained turn", field="messages")
        stats.tokens_one_rendering += len(f_ids)
        if self.policy is TurnPolicy.ALL:
            tree = self._all_row(r, f_ids, seqs, stats)
        else:
            tree = self._tree(f_ids, seqs, stats)
        if r.generation_spans is None:  # the definition, checked on the row as built
            problem = check_turn_paths(tree, [(s.ids, s.labels, s.prompt_len) for s in seqs])
            if problem is not None:
                raise RowError(Reason.MASK_CHECK_FAILED, f"the row breaks the definition of a trained turn: {problem}",
                               field="messages", stage="check")
        rows = self._fit(tree, seqs, stats)
        for x in rows:
            stats.paths += x.num_paths
            stats.tree_rows += int(x.num_paths > 1)
        return rows

    def _sequence(self, t: Turn, f_ids: list[int], shared: int, tail: list[int], gen_ids: dict[str, list[int]]) -> _Seq | None:
        """``tokens(P_k) + tokens(G_k)`` with labels on the generated tokens, checked; ``None``
        when the template renders nothing for the turn beyond its prompt (an empty message)."""
        generated = t.generated
        n = shared + len(tail)
        gen = self._generated_ids(t, f_ids, shared, tail, generated, gen_ids)
        if not gen:
            return None
        self._check(f_ids[shared - 1 : shared] if not tail else tail, gen, generated, t.message)
        labels = list(gen)
        for a, b in t.masked:
            self._mask(labels, generated, a, b)
        own = tail + gen
        return _Seq(Joined(f_ids, shared, own), Joined(None, shared, [IGNORE_INDEX] * len(tail) + labels), t.message, n, shared)

    def _generated_ids(self, t: Turn, f_ids: list[int], shared: int, tail: list[int], generated: str,
                       gen_ids: dict[str, list[int]]) -> list[int]:
        if not self._in_context:
            return list(gen_ids[generated])
        prompt_ids = f_ids[:shared] + tail
        both = self.segments.encode([t.prompt + generated])[0]
        if both[: len(prompt_ids)] == prompt_ids:
            return both[len(prompt_ids) :]
        return list(gen_ids[generated])

    def _mask(self, labels: list[int], generated: str, a: int, b: int) -> None:
        """Untrain the generated tokens lying inside characters ``[a, b)`` of ``generated``."""
        offs = self.segments.offsets(generated)
        if len(offs) != len(labels):
            return
        for i, (s, e) in enumerate(offs):
            if s >= a and e <= b:
                labels[i] = IGNORE_INDEX

    def _check(self, prompt_ids: list[int], gen_ids: list[int], expected: str, message: int) -> None:
        """The generated tokens decode to ``expected`` (``prompt_ids``: the prompt's last tokens, for
        decoders that need one token of left context)."""
        if self.marked:
            expected = expected.replace(MARK_START, "").replace(MARK_END, "")
        got = self.segments.decode(gen_ids)
        if got != expected and prompt_ids:
            # decoders that drop a leading space at the start of a decode (Metaspace) need one
            # token of left context to show it
            head = self.segments.decode(prompt_ids[-1:])
            ctx = self.segments.decode(prompt_ids[-1:] + gen_ids)
            if ctx.startswith(head):
                got = ctx[len(head) :]
        if got != expected:
            raise RowError(
                Reason.MASK_CHECK_FAILED,
                f"trained tokens decode to {got[:80]!r}… but the turn is {expected[:80]!r}…",
                field=f"messages[{message}]",
                stage="check",
            )

    # -- policies -----------------------------------------------------------------
    @staticmethod
    def _trie(f_ids: list[int], seqs: list[_Seq]) -> tuple[TrieBuilder, list[int]]:
        """The trie of ``F`` (untrained, first) and every turn's sequence, and each sequence's
        common prefix length with ``F``."""
        b = TrieBuilder()
        if f_ids:
            b.add(f_ids, [IGNORE_INDEX] * len(f_ids), trained_from=len(f_ids))
        shares = [b.add(s.ids, s.labels, trained_from=s.prompt_len, known_prefix=min(s.shared_with_f, len(f_ids)))
                  for s in seqs]
        if not f_ids:
            shares = [0] * len(seqs)
        return b, shares

    def _tree(self, f_ids: list[int], seqs: list[_Seq], stats: EncodeStats | None) -> TreeRow:
        b, shares = self._trie(f_ids, seqs)
        if seqs and not self.keep_rendering and not any(n > s.prompt_len for n, s in zip(shares, seqs)):
            # F trains no turn of its own (every turn branched): it stays only as far as a turn's
            # sequence follows it, so no stored path is without a trained token
            b, shares = self._trie(f_ids[: max(shares)], seqs)
        if stats is not None:
            # in place: the sequence is a prefix of F, or goes on from F's end (a stop token appended)
            in_place = sum(n == len(s.ids) or n == len(f_ids) for n, s in zip(shares, seqs))
            stats.in_place_turns += in_place
            stats.branched_turns += len(seqs) - in_place
        return b.build()

    def _all_row(self, r: Rendered, f_ids: list[int], seqs: list[_Seq], stats: EncodeStats) -> TreeRow:
        """Policy ``all``: the one rendering, trained where it holds each turn verbatim (or, for a
        template with generation blocks, inside them)."""
        labels = [IGNORE_INDEX] * len(f_ids)
        if r.generation_spans is not None:
            offs = self.segments.offsets(r.text)
            for a, b in r.generation_spans:
                for i, (s, e) in enumerate(offs):
                    if s < b and e > a:
                        labels[i] = f_ids[i]
            stats.in_place_turns += len(seqs)
            return TreeRow(list(f_ids), labels, [], [], len(f_ids), 1)
        b, shares = self._trie(f_ids, seqs)
        branched = next((s for s, n in zip(seqs, shares) if n != len(s.ids) and n != len(f_ids)), None)
        if branched is not None:
            raise RowError(
                Reason.TURN_REWRITTEN,
                "the chat template renders this turn differently in the conversation than the model generates it "
                "(history rewritten, or tokens merged across the turn boundary); policy 'all' trains only turns the "
                "one rendering holds verbatim: use turn_policy='exact' (a prefix tree, nearly free)",
                field=f"messages[{branched.message}]",
            )
        stats.in_place_turns += len(seqs)
        return b.build()

    # -- layout and truncation ----------------------------------------------------
    def _rows(self, row: TreeRow, truncated: bool = False) -> list[EncodedExample]:
        if self.layout == "linear" and row.parent:
            return [EncodedExample(i, l, "conversation", [], [], len(i), 1, truncated) for i, l in unroll(row)
                    if any(y != IGNORE_INDEX for y in l)]
        return [EncodedExample(row.input_ids, row.labels, "conversation", row.parent, row.position_ids,
                               row.linear_length, row.num_paths, truncated)]

    def _fit(self, row: TreeRow, seqs: list[_Seq], stats: EncodeStats) -> list[EncodedExample]:
        """Apply ``max_length`` with :func:`sftdata.masking.tree_fit.fit_tree` (the rule ``sftdata pack``
        applies too): a tree over the limit is split into sub-trees that fit, every turn whose
        own sequence fits is kept (``drop``: every sequence that fits whole), only sequences
        that do not fit are cut turn-wise. Raises ``RowError`` when nothing fits."""
        limit = self.max_length
        if limit is None or len(row.input_ids) <= limit:
            return self._rows(row)
        kept, dropped = self._truncate_turns(row, stats)
        reason = Reason.TOO_LONG.value if self.truncation == "drop" else Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value
        if dropped:
            stats.dropped_examples[reason] = stats.dropped_examples.get(reason, 0) + dropped
        if not kept:
            shortest = min((len(s.ids) for s in seqs), default=len(row.input_ids))
            raise RowError(
                reason,
                f"no example of this row fits max_length={limit}: its shortest sequence (the prompt and the first "
                f"trained turn) has {shortest} tokens",
                stage="truncate",
                length=shortest,
            )
        return kept

    def _truncate_turns(self, row: TreeRow, stats: EncodeStats) -> tuple[list[EncodedExample], int]:
        """``(examples, dropped)`` of a row over ``max_length``, under ``self.truncation``.

        Tree layout: the sub-trees of :func:`~sftdata.masking.tree_fit.fit_tree`. Linear layout: every
        root-to-leaf path (:func:`~sftdata.masking.tree.unroll`) fitted on its own by the same function.
        ``dropped`` counts examples with nothing left."""
        from .tree_fit import fit_tree

        limit = self.max_length
        if limit is None:
            raise InvariantError("fit needs max_length", "the encoder fits rows only when max_length is set")
        rule = "turns" if self.truncation == "turns" else "drop"
        if self.layout == "linear" and row.parent:
            parts = [fit_tree(i, l, [], limit, rule) for i, l in unroll(row) if any(y != IGNORE_INDEX for y in l)]
        else:
            parts = [fit_tree(row.input_ids, row.labels, row.parent, limit, rule)]
        out: list[EncodedExample] = []
        dropped = 0
        for res in parts:
            stats.trained_tokens_over_length += res.trained_in
            stats.trained_tokens_cut += res.trained_in - res.trained_kept
            if res.dropped:
                dropped += 1
                continue
            stats.split_rows += res.split
            cut = res.trained_kept < res.trained_in
            stats.truncated_examples += cut
            for piece in res.rows:
                out.extend(self._rows(piece, truncated=cut))
        return out, dropped

    # -- plain text ---------------------------------------------------------------
    def encode_text(self, example: TextExample) -> EncodedExample:
        """Encode a :class:`TextExample`: segments tokenized separately, BOS as the tokenizer
        adds it, EOS appended (trained) after a trained final segment."""
        toks = self.segments.encode([s for s, _ in example.segments])
        ids = list(self._text_bos)
        labels = [IGNORE_INDEX] * len(ids)
        for (_, trained), tok in zip(example.segments, toks):
            ids.extend(tok)
            labels.extend(tok if trained else [IGNORE_INDEX] * len(tok))
        if example.segments[-1][1] and self._eos_id is not None and (not ids or ids[-1] != self._eos_id):
            ids.append(self._eos_id)
            labels.append(self._eos_id)
        if all(x == IGNORE_INDEX for x in labels):
            raise RowError(Reason.NO_TRAINED_TURN, "no trained token in the text example", field="text", stage="encode")
        return EncodedExample(ids, labels, "text", [], [], len(ids), 1)

    def fit_text(self, ex: EncodedExample, stats: EncodeStats) -> EncodedExample:
        """``max_length`` for a text example (cut at the limit under ``turns`` only if trained tokens remain)."""
        if self.max_length is None or len(ex.input_ids) <= self.max_length:
            return ex
        if self.truncation == "turns" and any(y != IGNORE_INDEX for y in ex.labels[: self.max_length]):
            stats.truncated_examples += 1
            n = self.max_length
            return EncodedExample(ex.input_ids[:n], ex.labels[:n], "text", [], [], n, 1, True)
        reason = Reason.TOO_LONG.value if self.truncation == "drop" else Reason.NO_TRAINED_TOKEN_AFTER_TRUNCATION.value
        stats.dropped_examples[reason] = stats.dropped_examples.get(reason, 0) + 1
        raise RowError(reason, f"the example has {len(ex.input_ids)} tokens, more than max_length={self.max_length}",
                       stage="truncate", length=len(ex.input_ids))
