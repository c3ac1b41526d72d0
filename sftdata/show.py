"""Look at one prepared example: tokens coloured trained / untrained.

Terminal: trained tokens in green on a dark background, untrained tokens dim.
HTML: one ``<span>`` per token, trained ones highlighted; hovering shows the token id,
its position and whether it is trained (and the label).
"""

from __future__ import annotations

import html
from typing import Sequence

IGNORE_INDEX = -100
_TRAINED = "\x1b[42;30m"  # green background
_UNTRAINED = "\x1b[2m"  # dim
_RESET = "\x1b[0m"


def token_pieces(tokenizer, input_ids: Sequence[int]) -> list[str]:
    """The text of each token (decoded one by one, so multi-byte characters may show as �)."""
    backend = tokenizer.backend_tokenizer
    return [backend.decode([int(i)], skip_special_tokens=False) for i in input_ids]


def render_terminal(tokenizer, input_ids: Sequence[int], labels: Sequence[int], *, color: bool = True) -> str:
    """ANSI-coloured text of one example; without colour, trained runs are wrapped in ⟦ ⟧."""
    out: list[str] = []
    pieces = token_pieces(tokenizer, input_ids)
    prev = None
    for piece, lab in zip(pieces, labels):
        trained = lab != IGNORE_INDEX
        if color:
            out.append((_TRAINED if trained else _UNTRAINED) + piece + _RESET)
        else:
            if trained and prev is not True:
                out.append("⟦")
            if not trained and prev is True:
                out.append("⟧")
            out.append(piece)
        prev = trained
    if not color and prev is True:
        out.append("⟧")
    return "".join(out)


def render_html(tokenizer, input_ids: Sequence[int], labels: Sequence[int], *, title: str = "sftdata example") -> str:
    """A standalone HTML page of one example (hover a token for id / position / label)."""
    spans = []
    for pos, (piece, tid, lab) in enumerate(zip(token_pieces(tokenizer, input_ids), input_ids, labels)):
        trained = lab != IGNORE_INDEX
        tip = f"pos {pos} | id {int(tid)} | {'trained' if trained else 'untrained (label -100)'}"
        cls = "t" if trained else "u"
        spans.append(f'<span class="{cls}" title="{html.escape(tip)}">{html.escape(piece)}</span>')
    n_tr = sum(1 for x in labels if x != IGNORE_INDEX)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:2em;line-height:1.5}"
        ".t{background:#bfeabf;border-bottom:2px solid #2a2}.u{color:#666}"
        "span:hover{outline:1px solid #333}</style></head><body>"
        f"<h3>{html.escape(title)}: {len(input_ids)} tokens, {n_tr} trained</h3>"
        + "".join(spans)
        + "</body></html>"
    )
