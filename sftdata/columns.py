"""The columns of ``sftdata prepare``'s output: the ONE place that lists them.

:func:`output_schema` is what the streaming writer writes, what the content fingerprint
hashes (every column, generically) and what ``sftdata merge`` checks. The encoder's
:meth:`~sftdata.encoder.Encoder.map_batch` must return every column named here (it may
return more: ``kind``, ``truncated`` and ``reject`` are bookkeeping, not written).

================  ==============  ============================================
``input_ids``     list<int32>     token ids, ``(seq_len,)`` (DFS order for a tree row)
``labels``        list<int32>     same length; ``-100`` or ``input_ids[i]`` (unshifted)
``parent``        list<int32>     tree rows: parent of every token (``-1`` = root);
                                  empty for a single path (see ``docs/trees.md``)
``position_ids``  list<int32>     tree rows: depth of every token; empty for a single path
``length``        int32           ``seq_len`` in tokens
``linear_length`` int32           tokens the same examples need as linear rows
``source_index``  int64           the input row the example came from
================  ==============  ============================================
"""

from __future__ import annotations

from typing import Any


def output_schema() -> Any:
    """The ``pyarrow.Schema`` of the output rows (see module doc)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("input_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.int32())),
            ("parent", pa.list_(pa.int32())),
            ("position_ids", pa.list_(pa.int32())),
            ("length", pa.int32()),
            ("linear_length", pa.int32()),
            ("source_index", pa.int64()),
        ]
    )
