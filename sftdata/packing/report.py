"""The packing report: what went in, what came out, how full the rows are.

Written next to the packed dataset as ``pack_stats.json`` (see :func:`sftdata.packing.save_packed`).
Token accounting is exact: ``tokens_in + tokens_repeated == tokens_out + tokens_dropped +
tokens_truncated`` (``tokens_repeated``: context that split trees repeat) and
``trained_tokens_in == trained_tokens_out + trained_tokens_dropped + trained_tokens_truncated``,
so nothing is lost without being counted (:meth:`PackReport.check` raises
:class:`~sftdata.invariants.InvariantError` otherwise).

A *trained token* (:func:`sftdata.masking.tree_arrays.count_trained`, the one definition) is a label
``!= IGNORE_INDEX`` at position ``>= 1`` of its sequence (in a tree, a token with a parent): with unshifted
labels the label at position ``i`` is predicted from position ``i - 1``, so a label at a
sequence's first position is never trained (nothing precedes it; in a packed row the
collators mask it so it is not predicted from the previous sequence).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..invariants import InvariantError

#: The file ``sftdata pack`` writes its report to, beside the packed rows.
PACK_STATS_FILE = "pack_stats.json"


def lower_bound_l1(total_tokens: int, capacity: int) -> int:
    """``ceil(sum(lengths) / L)``: no packing can use fewer rows."""
    return int(math.ceil(total_tokens / capacity)) if total_tokens > 0 else 0


def lower_bound_l2(lengths: np.ndarray, capacity: int) -> int:
    """The Martello–Toth ``L2`` bound (>= ``L1``; tighter when many items exceed ``L/2``).

    For every threshold ``K <= L/2``: items longer than ``L - K`` and items in ``(L/2, L-K]``
    each need their own row, and items in ``[K, L/2]`` must fit into what those rows leave
    free or open new rows. Computed from the length histogram in ``O(L)``.
    """
    L = int(capacity)
    x = np.asarray(lengths, dtype=np.int64)
    if x.size == 0:
        return 0
    hist = np.bincount(x, minlength=L + 1)[: L + 1]
    cnt_le = np.cumsum(hist)  # cnt_le[v] = #items <= v
    sum_le = np.cumsum(hist * np.arange(L + 1, dtype=np.int64))
    n, half = int(x.size), L // 2
    K = np.arange(0, half + 1, dtype=np.int64)
    hi = L - K
    j1 = n - cnt_le[hi]
    j2 = cnt_le[hi] - cnt_le[half]
    s2 = sum_le[hi] - sum_le[half]
    s_below = np.where(K > 0, sum_le[np.maximum(K - 1, 0)], 0)
    s3 = sum_le[half] - s_below  # total length of items in [K, L/2]
    extra = np.maximum(0, -((-(s3 - (j2 * L - s2))) // L))
    return int(max((j1 + j2 + extra).max(), lower_bound_l1(int(x.sum()), L)))


@dataclass
class PackReport:
    """Summary of one packing run (all counts are plain ints; ``to_dict()`` is JSON-able).

    Attributes:
        strategy, max_length, seed, truncation: the options used.
        rows_in: input rows (sequences).
        sequences_out: sequences placed into packed rows (``rows_in`` minus dropped).
        bins: packed rows written.
        lower_bound: ``ceil(tokens_out / max_length)``, the fewest rows any packing could use.
        lower_bound_l2: the (tighter) Martello–Toth bound on the same lengths.
        fill: ``tokens_out / (bins * max_length)``.
        tokens_in/out/dropped/truncated: ``tokens_in == tokens_out + tokens_dropped + tokens_truncated``.
        trained_tokens_in/out/dropped/truncated: the same identity for trained tokens.
        dropped: rows dropped, by reason (``too_long``, ``no_trained_token_after_truncation``,
            ``empty``).
        truncated_rows: rows shortened to fit ``max_length`` (and kept).
        trained_tokens_keepable: trained tokens at a position ``< max_length`` of their own
            sequence (what any truncation could keep).
        tokens_repeated: context tokens that split trees repeat in several sub-trees.
        shortest_row: tokens of the shortest non-empty input row.
        split_rows: tree rows longer than ``max_length`` split into sub-trees (docs/trees.md).
        sequences_from_splits: sequences the splits added (``rows_in + sequences_from_splits
            == sequences_out + rows_dropped``).
        tree_rows: input rows holding a prefix tree (docs/trees.md); each is one sequence here.
        tree_paths_dropped: root-to-leaf paths of trees whose leaf was cut by truncation.
        linear_tokens_out: tokens the packed examples would take in the linear layout
            (``tokens_out`` when there is no tree).
        plan_seconds, build_seconds: time to plan the bins / to build the Arrow rows.
        strategy_info: strategy details (e.g. the ``mbs`` tie-break window and repair history).
    """

    strategy: str
    max_length: int
    seed: int
    truncation: str
    rows_in: int = 0
    sequences_out: int = 0
    bins: int = 0
    lower_bound: int = 0
    lower_bound_l2: int = 0
    fill: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_dropped: int = 0
    tokens_truncated: int = 0
    trained_tokens_in: int = 0
    trained_tokens_out: int = 0
    trained_tokens_dropped: int = 0
    trained_tokens_truncated: int = 0
    dropped: dict = field(default_factory=dict)
    truncated_rows: int = 0
    trained_tokens_keepable: int = 0
    tokens_repeated: int = 0
    shortest_row: int = 0
    split_rows: int = 0
    sequences_from_splits: int = 0
    tree_rows: int = 0
    tree_paths_dropped: int = 0
    linear_tokens_out: int = 0
    plan_seconds: float = 0.0
    build_seconds: float = 0.0
    strategy_info: dict = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        """Input rows dropped, all reasons together (the sum of ``dropped``)."""
        return int(sum(self.dropped.values()))

    @property
    def bins_over_lower_bound(self) -> float:
        """``bins / lower_bound - 1`` (0.0 is optimal)."""
        return self.bins / self.lower_bound - 1.0 if self.lower_bound else 0.0

    def check(self) -> None:
        """Check that the token, trained-token, row and bin accounting balances.

        Raises:
            InvariantError: naming the identity that does not hold, with its numbers.
        """
        checks = (
            ("tokens_in + tokens_repeated == tokens_out + tokens_dropped + tokens_truncated",
             self.tokens_in + self.tokens_repeated, self.tokens_out + self.tokens_dropped + self.tokens_truncated),
            ("trained_tokens_in == trained_tokens_out + trained_tokens_dropped + trained_tokens_truncated",
             self.trained_tokens_in,
             self.trained_tokens_out + self.trained_tokens_dropped + self.trained_tokens_truncated),
            ("rows_in + sequences_from_splits == sequences_out + rows_dropped",
             self.rows_in + self.sequences_from_splits, self.sequences_out + self.rows_dropped),
        )
        for invariant, left, right in checks:
            if left != right:
                raise InvariantError(invariant, f"{left} != {right}")
        if self.bins and not self.bins >= self.lower_bound_l2 >= self.lower_bound:
            raise InvariantError("bins >= lower_bound_l2 >= lower_bound",
                                 f"{self.bins}, {self.lower_bound_l2}, {self.lower_bound}")

    def nothing_fits(self) -> str | None:
        """One line when input rows there were but none fits ``max_length`` (else ``None``)."""
        if self.sequences_out or not self.shortest_row:
            return None
        hint = "raise --max-length" + ("" if self.truncation == "turns" else " or use --truncation turns")
        return (f"no row fits max_length={self.max_length:,} with truncation={self.truncation!r} (the shortest row has "
                f"{self.shortest_row:,} tokens): nothing to write; {hint}")

    def warning(self, share: float = 0.01) -> str | None:
        """One line when more than ``share`` of the trained tokens were dropped or truncated."""
        lost = self.trained_tokens_in - self.trained_tokens_out
        if not self.trained_tokens_in or lost <= share * self.trained_tokens_in:
            return None
        return (f"{lost:,} of {self.trained_tokens_in:,} trained tokens ({lost / self.trained_tokens_in:.1%}) did not fit "
                f"max_length={self.max_length:,} ({self.trained_tokens_in - self.trained_tokens_keepable:,} of them at a "
                f"position >= L in their own sequence); a larger --max-length keeps more")

    def to_dict(self) -> dict:
        """JSON-able dict of every field (plus ``rows_dropped`` and ``bins_over_lower_bound``)."""
        d = asdict(self)
        d["rows_dropped"] = self.rows_dropped
        d["bins_over_lower_bound"] = self.bins_over_lower_bound
        return json.loads(json.dumps(d, default=_jsonable))

    def summary(self) -> str:
        """A few human lines."""
        lines = [
            f"packed {self.rows_in - self.rows_dropped:,} of {self.rows_in:,} sequences"
            + (f" as {self.sequences_out:,} ({self.sequences_from_splits:,} more from split trees)"
               if self.sequences_from_splits else "")
            + f" into {self.bins:,} rows of {self.max_length:,} tokens (strategy {self.strategy})",
            f"fill {self.fill:.2%}; lower bound {self.lower_bound:,} rows (L2 {self.lower_bound_l2:,}), "
            f"{self.bins_over_lower_bound:+.2%} over it",
            f"tokens in {self.tokens_in:,}"
            + (f" + repeated context {self.tokens_repeated:,}" if self.tokens_repeated else "")
            + f" = out {self.tokens_out:,} + dropped {self.tokens_dropped:,} + truncated {self.tokens_truncated:,}",
            f"trained tokens in {self.trained_tokens_in:,} = out {self.trained_tokens_out:,} + dropped "
            f"{self.trained_tokens_dropped:,} + truncated {self.trained_tokens_truncated:,}",
        ]
        if self.dropped or self.truncated_rows or self.split_rows:
            drops = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.dropped.items())) or "none"
            lines.append(f"dropped rows: {drops}; truncated rows: {self.truncated_rows:,}; split rows: "
                         f"{self.split_rows:,} (+{self.sequences_from_splits:,} sequences, "
                         f"{self.tokens_repeated:,} context tokens repeated); trained tokens kept "
                         f"{self.trained_tokens_out:,} of {self.trained_tokens_keepable:,} keepable (position < L)")
        if self.tree_rows:
            ratio = self.linear_tokens_out / self.tokens_out if self.tokens_out else 0.0
            lines.append(
                f"prefix trees: {self.tree_rows:,} rows; {self.tokens_out:,} tokens stored for {self.linear_tokens_out:,} "
                f"in the linear layout ({ratio:.2f}x); root-to-leaf paths cut by truncation: {self.tree_paths_dropped:,}"
            )
        lines.append(f"plan {self.plan_seconds:.2f}s, build {self.build_seconds:.2f}s")
        return "\n".join(lines)


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
