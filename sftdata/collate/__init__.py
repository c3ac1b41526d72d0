"""Collate: rows -> training batches. ``collators`` (``PaddingCollator``, ``PaddingFreeCollator``),
``collate_rows`` (one row's arrays), ``tree_collate`` (prefix-tree rows in a batch), ``samplers``
(which rows go in a batch, per rank, resumable). See docs/architecture.md and docs/packing.md.

``from sftdata.collate import PaddingFreeCollator`` (the documented path) keeps working: the names of
:mod:`sftdata.collate.collators` are read from it on first use (torch is imported only then).
"""

from __future__ import annotations


def __getattr__(name: str):
    import importlib
    import os

    if name.startswith("__") or os.path.exists(os.path.join(os.path.dirname(__file__), name + ".py")):
        raise AttributeError(name)  # a submodule: the import system loads it (without torch)

    try:
        return getattr(importlib.import_module(__name__ + ".collators"), name)
    except AttributeError:
        raise AttributeError(f"module 'sftdata.collate' has no attribute {name!r}") from None


__all__ = ["IGNORE_INDEX", "PaddingCollator", "PaddingFreeCollator", "num_trained_tokens",
           "seq_lengths_from_position_ids"]
