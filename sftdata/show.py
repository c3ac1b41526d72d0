"""Look at one prepared example: tokens coloured trained / untrained.

Terminal: trained tokens in green on a dark background, untrained tokens dim.
HTML: one ``<span>`` per token, trained ones highlighted; hovering shows the token id,
its position and whether it is trained.

A prefix-tree row (docs/trees.md) holds several inference-time sequences (root-to-leaf
paths) sharing prefixes. :func:`tree_paths` describes them (length, tokens shared with the
paths before, tokens of its own, trained tokens), and :func:`render_tree_html` writes one
page where each path shows only its own tokens, its shared prefix folded (``<details>``)
behind a pointer to the path that holds it, so the page grows with the tokens stored, not
with the sum of the path lengths.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .masking.tree_arrays import IGNORE_INDEX, trained_mask

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


_STYLE = (
    "body{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:2em;line-height:1.5}"
    ".t{background:#bfeabf;border-bottom:2px solid #2a2}.u{color:#666}"
    "span:hover{outline:1px solid #333}summary{cursor:pointer;font-weight:bold}"
    "details.s>summary{font-weight:normal;color:#666}table{border-collapse:collapse}"
    "td,th{padding:0 .8em;text-align:right}"
)


def _spans(pieces: Sequence[str], input_ids: Sequence[int], labels: Sequence[int], first_pos: int = 0) -> str:
    out = []
    for pos, (piece, tid, lab) in enumerate(zip(pieces, input_ids, labels), first_pos):
        trained = lab != IGNORE_INDEX
        tip = f"pos {pos} | id {int(tid)}" + (" | trained" if trained else "")
        out.append(f'<span class="{"t" if trained else "u"}" title="{tip}">{html.escape(piece)}</span>')
    return "".join(out)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def render_html(tokenizer, input_ids: Sequence[int], labels: Sequence[int], *, title: str = "sftdata example") -> str:
    """A standalone HTML page of one example (hover a token for its position and id)."""
    n_tr = int(trained_mask(labels).sum())  # labels != IGNORE_INDEX after position 0
    body = f"<h3>{html.escape(title)}: {len(input_ids)} tokens, {n_tr} trained</h3>"
    return _page(title, body + _spans(token_pieces(tokenizer, input_ids), input_ids, labels))


@dataclass
class PathInfo:
    """One root-to-leaf path (inference-time sequence) of a row.

    Attributes:
        number: 1-based, in DFS order of leaves (``sftdata show --path N``).
        length: its tokens (depth of its leaf + 1).
        shared: its leading tokens stored before it in the row (shared with earlier paths).
        start, end: the row range ``[start, end)`` of its own tokens (``end - start == length - shared``).
        trained: trained tokens it owns (each trained token is owned by one path, the first in
            DFS order through it, as in :func:`sftdata.masking.tree.unroll`).
        shares_with: the earlier path holding its branch point (0 when ``shared == 0``).
    """

    number: int
    length: int
    shared: int
    start: int
    end: int
    trained: int
    shares_with: int


def tree_paths(labels: Sequence[int], parent: Sequence[int]) -> list[PathInfo]:
    """The root-to-leaf paths of a row (a single path for an empty ``parent``)."""
    from .masking.tree import depths

    lab = np.asarray(labels, dtype=np.int64)
    n = lab.size
    par = np.asarray(parent, dtype=np.int64) if len(parent) else np.arange(n, dtype=np.int64) - 1
    dep = depths(par) if len(parent) else np.arange(n, dtype=np.int64)
    trained = trained_mask(lab, par)
    cs = np.concatenate([[0], np.cumsum(trained)])
    leaves = np.flatnonzero(np.append(par[1:], -2) != np.arange(n)).tolist()
    out: list[PathInfo] = []
    start = 0
    for k, leaf in enumerate(leaves):
        length = int(dep[leaf]) + 1
        own = leaf + 1 - start
        anchor = int(par[start])
        with_ = 0
        if anchor >= 0:
            with_ = 1 + int(np.searchsorted(np.asarray(leaves[:k]), anchor))  # first leaf at or after the branch point
        out.append(PathInfo(k + 1, length, length - own, start, leaf + 1, int(cs[leaf + 1] - cs[start]), with_))
        start = leaf + 1
    return out


def path_tokens(parent: Sequence[int], info: PathInfo) -> list[int]:
    """Row indices of a path's tokens, root first."""
    if not len(parent):
        return list(range(info.start, info.end))
    idx = list(range(info.start, info.end))
    i = int(parent[info.start])
    head = []
    while i >= 0:
        head.append(i)
        i = int(parent[i])
    return head[::-1] + idx


def render_tree_html(tokenizer, input_ids: Sequence[int], labels: Sequence[int], parent: Sequence[int], *,
                     title: str = "sftdata example", context: int = 32) -> str:
    """A standalone HTML page of a tree row: a summary table, then every path with only its own
    tokens; its shared prefix is a folded ``<details>`` naming the path that holds it, with the
    last ``context`` shared tokens inside. Size grows with the tokens stored."""
    paths = tree_paths(labels, parent)
    pieces = token_pieces(tokenizer, input_ids)
    n_tr = sum(p.trained for p in paths)
    common = min((p.shared for p in paths[1:]), default=0)
    head = (f"<h3>{html.escape(title)}</h3><p>{len(paths)} paths (inference-time sequences), {len(input_ids):,} tokens "
            f"stored for {sum(p.length for p in paths):,} as linear rows, {common:,} tokens shared by every path, "
            f"{n_tr:,} trained</p><table><tr><th>path</th><th>length</th><th>shared</th><th>own</th><th>trained</th>"
            "<th>branches from</th></tr>")
    rows = "".join(f"<tr><td><a href='#p{p.number}'>{p.number}</a></td><td>{p.length:,}</td><td>{p.shared:,}</td>"
                   f"<td>{p.end - p.start:,}</td><td>{p.trained:,}</td><td>{p.shares_with or ''}</td></tr>" for p in paths)
    body = [head, rows, "</table>"]
    for p in paths:
        body.append(f"<details id='p{p.number}'{' open' if p.number == 1 else ''}><summary>path {p.number}/{len(paths)}: "
                    f"{p.length:,} tokens, {p.trained:,} trained here</summary>")
        if p.shared:
            idx = path_tokens(parent, p)[p.shared - context if p.shared > context else 0 : p.shared]
            body.append(f"<details class='s'><summary>{p.shared:,} tokens shared with <a href='#p{p.shares_with}'>path "
                        f"{p.shares_with}</a> (the last {len(idx)} below)</summary>…"
                        + _spans([pieces[i] for i in idx], [input_ids[i] for i in idx], [IGNORE_INDEX] * len(idx),
                                 p.shared - len(idx)) + "</details>")
        body.append(_spans(pieces[p.start : p.end], input_ids[p.start : p.end], labels[p.start : p.end], p.shared))
        body.append("</details>")
    return _page(title, "".join(body))
