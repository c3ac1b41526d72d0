"""Which values each :class:`~.spec.TemplateSpec` flag takes, and which combinations make sense.

The flags are drawn (by :func:`~.strategies.template_specs`) and checked (by
``TemplateSpec.__post_init__``) in the order of :data:`FIELD_VALUES`: a value is compatible or
not with the flags before it (:func:`compatible`).
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["FIELD_VALUES", "compatible", "incompatible"]

#: every field's possible values, in the order they are drawn
FIELD_VALUES: dict[str, tuple] = {
    "header": ("chatml", "llama", "roletok"),
    "end": ("stop", "stop_nl", "nl_stop", "next"),
    "sep_before": (False, True),
    "sep_before_gen": (False, True),
    "gen_think": (False, True),
    "suffix": ("", "\n", "---\n"),
    "always_gen": (False, True),
    "reasoning": ("none", "think"),
    "reasoning_key": ("reasoning_content", "reasoning", "thinking"),
    "think_always": (False, True),
    "drop": ("none", "before_last_user", "after_final"),
    "trim": (False, True),
    "system_to_last_user": (False, True),
    "tools": (False, True),
    "tool_format": ("json", "xml", "python"),
    "args": ("dict", "string", "auto"),
    "merge": ("none", "tools", "assistant"),
    "split": (False, True),
    "clock": (False, True),
    "closed_think": (False, True),
    "trailing_turn": (False, True),
    "last_user_scan": ("forward", "reverse"),
}


def compatible(field_name: str, value: Any, so_far: Mapping[str, Any]) -> bool:
    """Whether ``value`` of ``field_name`` makes sense with the fields drawn before it
    (``so_far``: field name -> value, the fields before ``field_name`` in :data:`FIELD_VALUES`)."""
    g = so_far.get
    if field_name == "end":
        return value != "next" or g("header") == "roletok"
    nxt = g("end") == "next"
    if field_name in ("sep_before", "always_gen", "split") and value:
        return not nxt and (field_name != "split" or g("tools", True))
    if field_name == "suffix" and value:
        return not nxt
    if field_name == "merge":
        return value == "none" or (value == "tools" and g("tools")) or (value == "assistant" and not nxt)
    if field_name in ("think_always",) and value:
        return g("reasoning") == "think"
    if field_name == "drop" and value != "none":
        return g("reasoning") == "think"
    if field_name == "closed_think" and value:
        return not g("gen_think") and g("reasoning") == "none"
    if field_name == "trailing_turn" and value:
        return not nxt
    if field_name == "args" and value != "dict":
        return g("tools") and g("tool_format") == "json"
    if field_name == "tool_format" and value != "json":
        return bool(g("tools"))
    return True


def incompatible(values: Mapping[str, Any]) -> list[str]:
    """The problems of a full set of flag ``values`` (field name -> value, every field of
    :data:`FIELD_VALUES`): a value that is not one of its field's, or one that does not go with
    the fields before it. ``[]``: a valid spec. Raises ``KeyError`` for a missing field."""
    problems = []
    so_far: dict[str, Any] = {}
    for name in FIELD_VALUES:
        v = values[name]
        if v not in FIELD_VALUES[name]:
            problems.append(f"{name}={v!r} is not one of {FIELD_VALUES[name]}")
        elif not compatible(name, v, so_far):
            problems.append(f"{name}={v!r} does not go with {so_far}")
        so_far[name] = v
    return problems
