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


#: below this many characters searched (forms x rendering length), each form is searched for on its
#: own; above it, the rendering's quote characters are scanned once (a long tool trace has thousands
#: of argument texts: one search each would cost O(calls x length))
_SEARCH_EACH_MAX = 20_000_000
#: forms at least this long are looked up by their first characters during the scan
_HEAD = 12


def quotes_text(rendered: str, texts: Sequence[str]) -> bool:
    """Whether ``rendered`` holds one of the JSON ``texts`` as a quoted JSON string literal: a
    template that quotes argument text writes it so (a necessary condition, cheap to test; the
    probe rendering of :meth:`Renderer._quotes_arguments` decides).

    Cost: O(len(rendered) + total length of the texts), plus one search per distinct text shorter
    than a dozen characters, for long renderings with many texts (one search per text otherwise)."""
    forms = {json.dumps(t, ensure_ascii=a) for t in texts for a in (False, True)}
    if len(forms) * len(rendered) <= _SEARCH_EACH_MAX:
        return any(f in rendered for f in forms)
    short = [f for f in forms if len(f) < _HEAD]
    if any(f in rendered for f in short):
        return True
    heads: dict[str, list[str]] = {}
    for f in forms:
        if len(f) >= _HEAD:
            heads.setdefault(f[:_HEAD], []).append(f)
    if not heads:
        return False
    pos = rendered.find('"')  # every form is a JSON string literal: it starts with a quote
    while pos >= 0:
        for f in heads.get(rendered[pos : pos + _HEAD], ()):
            if rendered.startswith(f, pos):
                return True
        pos = rendered.find('"', pos + 1)
    return False


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
