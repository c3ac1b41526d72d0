"""Helpers shared by the reader tests (tests/formats/test_formats_*.py)."""

from __future__ import annotations

import pytest

from sftdata.errors import RowError
from sftdata.formats import normalize


def err(row, fmt=None, **kw) -> RowError:
    """The RowError ``normalize(row, fmt, **kw)`` raises (the test fails when it raises none)."""
    with pytest.raises(RowError) as info:
        normalize(row, fmt, **kw)
    return info.value
