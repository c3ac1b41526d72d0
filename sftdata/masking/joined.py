"""A token sequence held as a shared head plus its own tail (no copy of the head)."""

from __future__ import annotations

from typing import Sequence

from .tree_arrays import IGNORE_INDEX


class Joined(Sequence[int]):
    """``head[:n] + tail`` without copying ``head``: a turn's sequence that shares the training
    rendering's first ``n`` tokens, held as a reference to them plus its own tail.

    ``head=None`` stands for ``n`` copies of ``fill`` (the untrained labels of a shared prompt).
    Indexing and ``[a:b]`` slices (step 1) read through without building the whole list;
    :meth:`tolist` builds it. Equality with a list is not defined: compare ``tolist()``.

    Example::

        >>> j = Joined([5, 6, 7, 8], 2, [9])
        >>> len(j), j[1], j[1:3], j.tolist()
        (3, 6, [6, 9], [5, 6, 9])
    """

    __slots__ = ("head", "n", "tail", "fill")

    def __init__(self, head: Sequence[int] | None, n: int, tail: list[int], fill: int = IGNORE_INDEX) -> None:
        if head is not None and n > len(head):
            raise ValueError(f"Joined: n={n} is longer than the head ({len(head)} items)")
        self.head, self.n, self.tail, self.fill = head, n, tail, fill

    def __len__(self) -> int:
        return self.n + len(self.tail)

    def _head(self, a: int, b: int) -> list[int]:
        return [self.fill] * (b - a) if self.head is None else list(self.head[a:b])

    def __getitem__(self, i):  # type: ignore[override]
        n = self.n
        if isinstance(i, slice):
            a, b, step = i.indices(len(self))
            if step != 1:
                return self.tolist()[i]
            if b <= a:
                return []
            if b <= n:
                return self._head(a, b)
            if a >= n:
                return self.tail[a - n : b - n]
            return self._head(a, n) + self.tail[: b - n]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if i >= n:
            return self.tail[i - n]
        return self.fill if self.head is None else self.head[i]

    def tolist(self) -> list[int]:
        """The whole sequence as a new list."""
        return self._head(0, self.n) + self.tail


def as_list(seq: Sequence[int]) -> list[int]:
    """``seq`` as a list (a :class:`Joined` built, a list returned as is)."""
    if type(seq) is list:
        return seq
    return seq.tolist() if isinstance(seq, Joined) else list(seq)
