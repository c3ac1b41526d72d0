"""Whether a chat template quotes tool-call argument text, decided on a probe rendering.

A template that serialises arguments itself (``arguments|tojson``) writes JSON text it is given
as a quoted string; given objects it writes them as JSON. Which form a row's arguments take is
decided on a rendering whose arguments are distinct probe objects, never on the row's text (a
``"{}"`` in a tool output must not pass for a quoted argument): see
:meth:`sftdata.masking.render.Renderer`.
"""

from __future__ import annotations

import json
from typing import Sequence


#: A private-use character no conversation is expected to hold, marking probe arguments.
ARGUMENTS_PROBE = "\ue011"


def quotes_text(rendered: str, texts: Sequence[str]) -> bool:
    """Whether ``rendered`` holds one of the JSON ``texts`` as a quoted JSON string literal: a
    template that quotes argument text writes it so (a necessary condition, cheap to test; the
    probe rendering of :meth:`Renderer._quotes_arguments` decides)."""
    return any(json.dumps(t, ensure_ascii=a) in rendered for t in texts for a in (False, True))


def with_probe_arguments(messages: list[dict]) -> tuple[list[dict], list[str]]:
    """``messages`` with every JSON-text tool-call argument replaced by a distinct probe object
    text (``{"\ue011": i}``), and those probe texts."""
    out, probes = [], []
    for m in messages:
        calls = m.get("tool_calls")
        if not calls or not any(isinstance((c.get("function") or {}).get("arguments"), str) for c in calls):
            out.append(m)
            continue
        new_calls = []
        for c in calls:
            fn = c.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                probe = json.dumps({ARGUMENTS_PROBE: len(probes)}, ensure_ascii=False)
                probes.append(probe)
                c = {**c, "function": {**fn, "arguments": probe}}
            new_calls.append(c)
        out.append({**m, "tool_calls": new_calls})
    return out, probes
