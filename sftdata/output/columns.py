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
``linear_length`` int64           tokens the same examples need as linear rows
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
            ("linear_length", pa.int64()),  # a long tool trace's paths pass 2**31 tokens
            ("source_index", pa.int64()),
        ]
    )


def column_array(values: list, arrow_type: Any) -> Any:
    """``pyarrow.array(values, type=arrow_type)`` for one output column; the same array.

    A ``list<int>`` column (``values``: a list of int lists) is built from one flat numpy
    array and its offsets (``ListArray.from_arrays``), about twice as fast as ``pa.array`` on
    nested Python lists; other columns, and lists holding ``None``, go through ``pa.array``.

    Raises:
        OverflowError: a value out of range of the column's integer type (as ``pa.array``
            raises ``ArrowInvalid``).
    """
    import itertools

    import numpy as np
    import pyarrow as pa

    if not (pa.types.is_list(arrow_type) and pa.types.is_integer(arrow_type.value_type)) or any(v is None for v in values):
        return pa.array(values, type=arrow_type)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)), out=offsets[1:])
    if offsets[-1] >= 2**31:  # list<> offsets are int32
        return pa.array(values, type=arrow_type)
    value_type = arrow_type.value_type
    flat = np.fromiter(itertools.chain.from_iterable(values), dtype=value_type.to_pandas_dtype(), count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat, type=value_type), type=arrow_type)

