"""Internal invariants of sftdata's own bookkeeping, checked in production (never ``assert``,
which ``python -O`` removes).

A broken invariant is a bug in sftdata, never a problem of the input: the message names the
invariant and the numbers that break it, to be pasted into an issue.
"""

from __future__ import annotations

from .errors import SftDataError


class InvariantError(SftDataError, RuntimeError):
    """An internal accounting invariant does not hold (a bug in sftdata, not in the input)."""

    def __init__(self, invariant: str, detail: str = "") -> None:
        self.invariant = invariant
        super().__init__(f"internal invariant broken: {invariant}" + (f" ({detail})" if detail else "")
                         + "; this is a bug in sftdata, please report it")
