"""Arrow columns as numpy arrays without pyarrow's pandas bridge.

pyarrow's `to_numpy` converts through its pandas code, which imports pandas when it is
installed (about 0.3 s, a third of a cold query's imports); fixed-width numbers without
nulls are read from their data buffer instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def column_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column without nulls as a numpy array (others through `to_numpy`)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)) or column.null_count:
        return column.to_numpy() if isinstance(column, pa.ChunkedArray) \
            else column.to_numpy(zero_copy_only=False)
    dtype = np.dtype(kind.to_pandas_dtype())
    parts = [np.frombuffer(c.buffers()[1], dtype=dtype)[c.offset:c.offset + len(c)]
             for c in chunks]
    if not parts:
        return np.zeros(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def numpy_column(values: np.ndarray) -> pa.Array:
    """A 1-D numeric numpy array as an Arrow array sharing its memory (`pa.array` on numpy
    input imports pandas to check for pandas objects)."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        return pa.array(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def labels_numpy(column: pa.Array | pa.ChunkedArray, null: str = "") -> np.ndarray:
    """A string column of few distinct values (channel, modality) as a numpy str array,
    nulls as `null` (through its dictionary: no pandas)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    encoded = pc.dictionary_encode(column, null_encoding="encode")  # fill_null imports pandas
    names = [null if v is None else v for v in encoded.dictionary.to_pylist()]
    return np.array(names or [null], dtype=str)[column_numpy(encoded.indices)]
