"""Suggestions ("did you mean …?") for unknown config keys and option values.

    >>> did_you_mean("learnig_rate", ["learning_rate", "lr", "seed"])
    "did you mean 'learning_rate'?"
"""

from __future__ import annotations

import difflib
from typing import Iterable


def close_matches(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Candidates closest to ``name`` (``difflib`` ratio ≥ ``cutoff``, best first), compared
    case-insensitively with ``-`` read as ``_``."""
    norm = {str(c).lower().replace("-", "_"): str(c) for c in candidates}
    hits = difflib.get_close_matches(str(name).lower().replace("-", "_"), list(norm), n=n, cutoff=cutoff)
    return [norm[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` (or ``'x' or 'y'``) for the closest candidates, or ``""`` when none is close."""
    hits = close_matches(name, candidates)
    if not hits:
        return ""
    return "did you mean " + " or ".join(repr(h) for h in hits) + "?"
