"""What encoding a conversation gives: the output row (:class:`EncodedExample`) and the counters
of encoding (:class:`EncodeStats`), summed into ``stats.json``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tree_arrays import trained_mask


@dataclass(slots=True)
class EncodedExample:
    """One output row.

    Attributes:
        input_ids: ``(n,)`` token ids (DFS order for a tree).
        labels: ``(n,)`` unshifted; ``-100`` or ``input_ids[i]``.
        parent, position_ids: ``(n,)`` for a tree row; empty for a single path.
        kind: ``conversation`` or ``text``.
        linear_length: tokens the same examples need as linear rows.
        num_paths: root-to-leaf paths (1 for a single path).
        truncated: turns were cut to fit ``max_length``.
    """

    input_ids: list[int]
    labels: list[int]
    kind: str = "conversation"
    parent: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    linear_length: int = 0
    num_paths: int = 1
    truncated: bool = False

    @property
    def num_trained(self) -> int:
        """Trained tokens (:func:`sftdata.masking.tree_arrays.trained_mask`: labels a position predicts)."""
        return int(trained_mask(self.labels, self.parent).sum())


@dataclass(slots=True)  # one per row (RowResult.counters): no per-instance dict
class EncodeStats:
    """Counters of encoding, summed into ``stats.json``."""

    in_place_turns: int = 0
    branched_turns: int = 0
    turns_not_rendered: int = 0  # nothing generated beyond the prompt (the template drops an empty message)
    tokens_one_rendering: int = 0  # tokens of F, one rendering per conversation
    tree_rows: int = 0  # rows with more than one path
    paths: int = 0
    truncated_examples: int = 0
    dropped_examples: dict = field(default_factory=dict)  # reason -> count
    split_rows: int = 0  # tree rows over max_length split into several rows (sftdata.masking.tree_fit)
    trained_tokens_over_length: int = 0  # trained tokens of rows over max_length (written or not)
    trained_tokens_cut: int = 0  # of those, trained tokens lost to max_length
