"""Renders held against the training rendering: ``text = base[:shared] + tail`` without building ``text``.

Masking renders every trained turn's prompt ``P_k`` and its rendering ``F_k``; both are mostly the
training rendering ``F``'s first characters. A render that returned its whole text would cost
O(length) characters per render, O(turns x length) per conversation. Instead
:meth:`ChatTemplate.render_split <sftdata.masking.template.ChatTemplate.render_split>` returns
``(shared, tail)``: the render equals ``F[:shared] + tail`` with ``shared`` the longest common
prefix of the two. The render memo emits the iterations it replays as a :class:`BaseSlice` of
``F`` when they are ``F``'s own (the same recorded objects), so a render of a long prefix costs
O(its new part)::

    F      = "<s>u:hi a:hello u:more a:fine"
    P_3    =                        ...  F[:22] + "a:"        -> (22, "a:")
    F_3    =                        ...  F[:29] + ""          -> (29, "")
"""

from __future__ import annotations

from .tree import common_prefix_len

__all__ = ["BaseSlice", "common_prefix_chars", "split_startswith", "split_from", "split_text"]


class BaseSlice:
    """``text[start:stop]`` as an output piece of a render, not copied (``len()`` is its length).

    Attributes:
        text: the training rendering ``F`` (one string, referenced).
        start, stop: character offsets in ``text``.
    """

    __slots__ = ("text", "start", "stop")

    def __init__(self, text: str, start: int, stop: int) -> None:
        self.text, self.start, self.stop = text, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def materialize(self) -> str:
        """The characters, copied."""
        return self.text[self.start : self.stop]


def common_prefix_chars(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings: one C-speed ``startswith`` when one is
    a prefix of the other, else :func:`~sftdata.masking.tree.common_prefix_len` (windowed slice
    compares, then a binary search): O(prefix length)."""
    n = min(len(a), len(b))
    if a.startswith(b[:n]) if len(b) <= len(a) else b.startswith(a):
        return n
    return common_prefix_len(a, b)


def split_text(base: str, shared: int, tail: str) -> str:
    """``base[:shared] + tail`` (O(its length))."""
    return base[:shared] + tail


def split_from(base: str, shared: int, tail: str, i: int) -> str:
    """``(base[:shared] + tail)[i:]`` in O(the result's length)."""
    if i >= shared:
        return tail[i - shared :]
    return base[i:shared] + tail


def split_startswith(base: str, shared_a: int, tail_a: str, shared_b: int, tail_b: str) -> bool:
    """Whether ``base[:shared_a] + tail_a`` starts with ``base[:shared_b] + tail_b``, in
    O(len(tail_b) + |shared_a - shared_b|)."""
    if shared_b <= shared_a:
        room = shared_a - shared_b  # characters of base both texts hold past shared_b
        if len(tail_b) <= room:
            return base.startswith(tail_b, shared_b)
        return base.startswith(tail_b[:room], shared_b) and tail_a.startswith(tail_b[room:])
    gap = shared_b - shared_a  # b holds base[shared_a:shared_b]; a must hold it in its tail
    return len(tail_a) >= gap + len(tail_b) and tail_a.startswith(base[shared_a:shared_b]) and tail_a.startswith(tail_b, gap)
