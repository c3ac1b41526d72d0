"""Counters that add: the per-row and per-chunk counters of rendering and encoding are dataclasses
of ints (and dicts of ints) summed into ``stats.json``. Shared by every stage (masking counts, the
output stage sums), so it sits at the top level, not in a stage folder."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Mapping


def counters_to_dict(counters: Any) -> dict:
    """A (nested) counters dataclass as plain nested dicts."""
    return asdict(counters) if is_dataclass(counters) else dict(counters)


def add_counters(total: dict, part: Any) -> dict:
    """Add ``part`` (a counters dataclass or nested dict) into ``total`` in place; returns it.

    Ints add, dicts of ints add per key, nested dicts/dataclasses recurse.
    """
    for key, value in counters_to_dict(part).items():
        if isinstance(value, Mapping):
            sub = total.setdefault(key, {})
            add_counters(sub, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, bool):
            total[key] = total.get(key, False) or value
    return total


def add_stats(total, part) -> None:
    """Add the counters of dataclass ``part`` into ``total`` of the same class, in place (ints
    add; dicts of ints add per key): :func:`add_counters` for counter objects, without the dict
    round trip (it runs once per row)."""
    into = total.__dict__
    for name, value in part.__dict__.items():
        if type(value) is dict:
            sub = into[name]
            for key, n in value.items():
                sub[key] = sub.get(key, 0) + n
        elif value:
            into[name] += value
