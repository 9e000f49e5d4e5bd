"""Single cells of a (chunked) Arrow table as Python values, without `take` or scalars.

`Table.take` on a table of several chunks first concatenates each column (18 ms for a
1M-row string column), and an Arrow scalar per cell costs microseconds. A search needs the
metadata of a handful of rows, so `Cells` reads them from zero-copy numpy views of each
chunk's buffers: fixed-width numbers, booleans, strings and naive timestamps in s / ms / us;
any other type (and any chunk it cannot view) falls back to `chunk[i].as_py()`. The values
equal what `Table.to_pylist()` gives (tests compare both).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_EPOCH = dt.datetime(1970, 1, 1)
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}

#: a reader of one chunk: local position -> Python value
Reader = Callable[[int], Any]


def chunk_reader(arr: pa.Array) -> Reader:
    """A reader for one chunk (see the module notes for the types read directly)."""
    t = arr.type
    off = arr.offset
    read: Reader | None = None
    if (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_float16(t):
        kind = ("float" if pa.types.is_floating(t) else
                "int" if pa.types.is_signed_integer(t) else "uint")  # (to_pandas_dtype
        read = np.frombuffer(arr.buffers()[1],                     # imports pandas)
                             dtype=np.dtype(f"{kind}{t.bit_width}"))[off:].item
    elif pa.types.is_boolean(t):
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        read = lambda i: bool((bits.item((i + off) >> 3) >> ((i + off) & 7)) & 1)  # noqa: E731
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        kind = np.int64 if pa.types.is_large_string(t) else np.int32
        at = np.frombuffer(arr.buffers()[1], dtype=kind)[off:].item
        data = arr.buffers()[2]
        raw = memoryview(data) if data is not None else memoryview(b"")
        read = lambda i: str(raw[at(i):at(i + 1)], "utf-8")  # noqa: E731
    elif pa.types.is_timestamp(t) and t.tz is None and t.unit in _UNIT_US:
        ticks = np.frombuffer(arr.buffers()[1], dtype=np.int64)[off:].item
        scale = _UNIT_US[t.unit]
        read = lambda i: _EPOCH + dt.timedelta(microseconds=ticks(i) * scale)  # noqa: E731
    if read is None:
        return lambda i: arr[i].as_py()
    if arr.null_count == 0:
        return read
    valid = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return lambda i: read(i) if (valid.item((i + off) >> 3) >> ((i + off) & 7)) & 1 else None


class Cells:
    """Row dicts of chosen row positions of a table, read cell by cell (see module notes)."""

    def __init__(self, table: pa.Table) -> None:
        self.names = list(table.column_names)
        self._columns = [table.column(n) for n in self.names]
        self._bounds: list[np.ndarray] = []
        for col in self._columns:  # columns chunked alike share one array (located once)
            bounds = np.cumsum([0, *(len(c) for c in col.chunks)], dtype=np.int64)
            same = [b for b in self._bounds if np.array_equal(b, bounds)]
            self._bounds.append(same[0] if same else bounds)
        self._readers: list[list[Reader | None]] = [[None] * c.num_chunks
                                                     for c in self._columns]

    def rows(self, rows: Sequence[int] | np.ndarray,
             names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per row position (all columns, or `names`), in the order given."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        wanted = [(n, self.names.index(n)) for n in (self.names if names is None else names)]
        out: list[dict[str, Any]] = [{} for _ in range(len(rows))]
        located: dict[int, tuple[list[int], list[int]]] = {}  # bounds id -> chunks, locals
        for name, col in wanted:
            bounds = self._bounds[col]
            where = located.get(id(bounds))
            if where is None:
                chunk = np.searchsorted(bounds, rows, side="right") - 1
                where = located[id(bounds)] = (chunk.tolist(), (rows - bounds[chunk]).tolist())
            readers = self._readers[col]
            for record, c, i in zip(out, *where, strict=True):
                read = readers[c]
                if read is None:
                    read = readers[c] = chunk_reader(self._columns[col].chunk(c))
                record[name] = read(i)
        return out
