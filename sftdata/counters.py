"""Counters that add: the per-row and per-chunk counters of rendering and encoding are dataclasses
of ints (and dicts of ints) summed into ``stats.json``. Shared by every stage (masking counts, the
output stage sums), so it sits at the top level, not in a stage folder.

:func:`check_counter_sum` checks that what a run reports is the sum of its rows' counters
(an :class:`~sftdata.invariants.InvariantError` otherwise, also under ``python -O``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from .invariants import InvariantError


def counters_to_dict(counters: Any) -> dict:
    """A (nested) counters dataclass as plain nested dicts."""
    return asdict(counters) if is_dataclass(counters) else dict(counters)


def add_counters(total: dict, part: Any) -> dict:
    """Add ``part`` (a counters dataclass or nested dict) into ``total`` in place; returns it.

    Ints add, dicts of ints add per key, nested dicts/dataclasses recurse. Dataclasses are read
    field by field (no ``asdict`` copy: this runs once per row).
    """
    items = ((name, getattr(part, name)) for name in _field_names(part)) if is_dataclass(part) else part.items()
    for key, value in items:
        if isinstance(value, Mapping) or is_dataclass(value):
            add_counters(total.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, bool):
            total[key] = total.get(key, False) or value
    return total


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names


def _field_names(part: Any) -> tuple[str, ...]:
    """The field names of dataclass ``part`` (cached per class)."""
    names = _FIELD_NAMES.get(type(part))
    if names is None:
        names = _FIELD_NAMES[type(part)] = tuple(f.name for f in fields(part))
    return names


def add_stats(total, part) -> None:
    """Add the counters of dataclass ``part`` into ``total`` of the same class, in place (ints
    add; dicts of ints add per key): :func:`add_counters` for counter objects, without the dict
    round trip (it runs once per row). Works on slotted dataclasses (the per-row counters are)."""
    for name in _field_names(part):
        value = getattr(part, name)
        if type(value) is dict:
            sub = getattr(total, name)
            for key, n in value.items():
                sub[key] = sub.get(key, 0) + n
        elif value:
            setattr(total, name, getattr(total, name) + value)



def _nonzero(counters: Mapping) -> dict:
    """``counters`` without its zero and empty entries (nested dicts recurse), for comparing sums."""
    out = {}
    for key, value in counters.items():
        if isinstance(value, Mapping):
            value = _nonzero(value)
        if value:
            out[key] = value
    return out


def check_counter_sum(reported: Mapping, parts: Iterable[Any], what: str = "counters") -> None:
    """The invariant: ``reported`` (nested dict, as ``stats.json`` sums it) is the sum of ``parts``.

    Args:
        reported: the counters as reported (e.g. :attr:`sftdata.output.stats.StatsPart.counters`).
        parts: the per-row counters (counters dataclasses or nested dicts), summed here by
            :func:`add_counters` (zero and empty entries are ignored on both sides).
        what: the name of ``reported``, for the message.

    Raises:
        InvariantError: they differ (the message lists the differing counters, reported vs summed).
    """
    total: dict = {}
    for part in parts:
        add_counters(total, part)
    a, b = _nonzero(reported), _nonzero(total)
    if a != b:
        diff = {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}
        raise InvariantError(f"{what} == sum of per-row counters", f"reported vs summed: {diff}")
