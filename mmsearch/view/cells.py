"""Single cells of a (chunked) Arrow table as Python values, without `take` or scalars.

`Table.take` on a table of several chunks first concatenates each column (18 ms for a
1M-row string column), and an Arrow scalar per cell costs microseconds. A search needs the
metadata of a handful of rows, so `Cells` reads them from zero-copy numpy views of each
chunk's buffers: fixed-width numbers, booleans, strings and naive timestamps in s / ms / us;
any other type (and any chunk it cannot view) falls back to `chunk[i].as_py()`. Many rows
at once (a batch search's pages) are taken by Arrow a chunk at a time (`take`, `columns`)
and converted a column at a time. The values equal what `Table.to_pylist()` gives (tests
compare both).
"""

from __future__ import annotations

import datetime as dt
import itertools
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.arrow_numpy import numpy_column

_EPOCH = dt.datetime(1970, 1, 1)
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}

#: a reader of one chunk: local position -> Python value
Reader = Callable[[int], Any]

#: datetime.datetime's range in microseconds from the epoch (numpy's `tolist` gives ints
#: outside it)
_US_MIN, _US_MAX = -62135596800 * 10**6, 253402300799 * 10**6


def _view(arr: pa.Array) -> tuple[str, Any, Any] | None:
    """A chunk's values as numpy views of its buffers, by kind: ("number", values, None),
    ("bool", bits, None), ("string", offsets, data), ("time", ticks, microseconds per
    tick); offsets applied except for bits. None for other types."""
    t = arr.type
    off = arr.offset
    if (pa.types.is_integer(t) or pa.types.is_floating(t)) and not pa.types.is_float16(t):
        kind = ("float" if pa.types.is_floating(t) else  # (to_pandas_dtype imports pandas)
                "int" if pa.types.is_signed_integer(t) else "uint")
        return "number", np.frombuffer(arr.buffers()[1], np.dtype(f"{kind}{t.bit_width}"))[
            off:], None
    if pa.types.is_boolean(t):
        return "bool", np.frombuffer(arr.buffers()[1], dtype=np.uint8), None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        kind = np.int64 if pa.types.is_large_string(t) else np.int32
        data = arr.buffers()[2]
        return ("string", np.frombuffer(arr.buffers()[1], dtype=kind)[off:],
                memoryview(data) if data is not None else memoryview(b""))
    if pa.types.is_timestamp(t) and t.tz is None and t.unit in _UNIT_US:
        return "time", np.frombuffer(arr.buffers()[1], dtype=np.int64)[off:], _UNIT_US[t.unit]
    return None


def chunk_reader(arr: pa.Array) -> Reader:
    """A reader for one chunk (see the module notes for the types read directly)."""
    view = _view(arr)
    off = arr.offset
    if view is None:
        return lambda i: arr[i].as_py()
    kind, values, extra = view
    # memoryviews: indexing one gives a Python int / float without a call (numpy's `item`
    # costs a method call a cell)
    cells = memoryview(values) if len(values) else values
    read: Reader
    if kind == "number":
        read = cells.__getitem__
    elif kind == "bool":
        read = lambda i: bool((cells[(i + off) >> 3] >> ((i + off) & 7)) & 1)  # noqa: E731
    elif kind == "string":
        read = lambda i: str(extra[cells[i]:cells[i + 1]], "utf-8")  # noqa: E731
    else:
        read = _time_reader(cells.__getitem__, extra)
    if arr.null_count == 0:
        return read
    valid = memoryview(np.frombuffer(arr.buffers()[0], dtype=np.uint8))
    return lambda i: read(i) if (valid[(i + off) >> 3] >> ((i + off) & 7)) & 1 else None


def cell_source(arr: pa.Array, j: int) -> tuple[str, dict[str, Any]]:
    """A Python expression of cell `i` of a chunk, and the objects it names (suffixed
    `j`): memoryviews read inline for numbers and strings without nulls, else a call of
    the chunk's reader. For generated row functions (`Cells.row_functions`)."""
    view = _view(arr)
    if view is not None and arr.null_count == 0 and len(arr):
        kind, values, extra = view
        if kind == "number":
            return f"v{j}[i]", {f"v{j}": memoryview(values)}
        if kind == "string":
            return (f"str(d{j}[o{j}[i]:o{j}[i + 1]], 'utf-8')",
                    {f"d{j}": extra, f"o{j}": memoryview(values)})
    return f"r{j}(i)", {f"r{j}": chunk_reader(arr)}


#: Datetimes a timestamp chunk's reader keeps (cleared when full).
TIME_MEMO = 1024


def _time_reader(ticks: Callable[[int], int], per_tick: int) -> Reader:
    """Naive datetimes of a timestamp chunk's cells; equal ticks (the rows of one write
    share its `indexed_at`) give the same object from a small memo (datetimes are
    immutable), as making one costs more than the rest of the cell."""
    memo: dict[int, dt.datetime] = {}

    def read(i: int) -> dt.datetime:
        t = ticks(i)
        value = memo.get(t)
        if value is None:
            if len(memo) >= TIME_MEMO:
                memo.clear()
            value = memo[t] = _EPOCH + dt.timedelta(microseconds=t * per_tick)
        return value
    return read


class Cells:
    """Values of chosen row positions of a table: cell by cell for a few rows (`rows`,
    `values`), a column and chunk at a time for many (`columns`); see the module notes."""

    def __init__(self, table: pa.Table) -> None:
        self.names = list(table.column_names)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._columns = [table.column(n) for n in self.names]
        self._bounds: list[list[int]] = []
        for col in self._columns:  # columns chunked alike share one list (located once)
            bounds = np.cumsum([0, *(len(c) for c in col.chunks)], dtype=np.int64).tolist()
            same = [b for b in self._bounds if b == bounds]
            self._bounds.append(same[0] if same else bounds)
        #: per column, its chunks' readers (made on the column's first read)
        self._readers: list[list[Reader] | None] = [None] * len(self._columns)
        self._fixed_views: dict[int, list[np.ndarray] | None] = {}  # (see `_fixed`)

    def rows(self, rows: Sequence[int] | np.ndarray,
             names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per row position (all columns, or `names`), in the order given."""
        names = self.names if names is None else list(names)
        return [dict(zip(names, v, strict=True))
                for v in zip(*self.values(rows, names), strict=True)] if len(rows) else []

    def values(self, rows: Sequence[int] | np.ndarray, names: Sequence[str]) -> list[list[Any]]:
        """Each named column's values at the row positions, in the order given, read cell
        by cell (for a few rows)."""
        rows = rows.tolist() if isinstance(rows, np.ndarray) else list(rows)
        located: dict[int, tuple[list[int], list[int]] | None] = {}  # bounds -> chunks, locals
        out = []
        for name in names:
            col = self._index[name]
            readers = self._readers[col] or self._column_readers(col)
            if len(readers) == 1:  # one chunk
                read = readers[0]
                out.append([read(i) for i in rows])
                continue
            bounds = self._bounds[col]
            where = located.get(id(bounds))
            if where is None:
                where = located[id(bounds)] = _locate(bounds, rows)
            chunks, local = where
            out.append([readers[c](i) for c, i in zip(chunks, local, strict=True)])
        return out

    def _fixed(self, col: int) -> list[np.ndarray] | None:
        """A fixed-width column's chunks as numpy views (numbers and naive times without
        nulls; made once), else None."""
        fixed = self._fixed_views.get(col, False)
        if fixed is False:
            views = [_view(c) for c in self._columns[col].chunks]
            fixed = self._fixed_views[col] = (
                [v[1] for v in views] if all(
                    v is not None and v[0] in ("number", "time") and not c.null_count
                    for v, c in zip(views, self._columns[col].chunks, strict=True))
                else None)
        return fixed  # type: ignore[return-value]

    def _column_readers(self, col: int) -> list[Reader]:
        readers = self._readers[col] = [chunk_reader(c) for c in self._columns[col].chunks]
        return readers

    def locate(self, rows: Sequence[int], name: str) -> tuple[list[int], list[int]]:
        """The chunk of each row position in column `name`, and the row within it."""
        bounds = self._bounds[self._index[name]]
        if len(bounds) == 2:
            return [0] * len(rows), list(rows)
        return _locate(bounds, rows)

    def row_functions(self, names: Sequence[str], body: Callable[[list[str]], str],
                      params: str = "i", scope: dict[str, Any] | None = None
                      ) -> list[Callable[..., Any]] | None:
        """Per chunk, a generated function of `params` (`i`, the row within the chunk,
        first) returning the expression `body(cells)`, where `cells` are the Python
        expressions of the named columns' cells of row `i` (`cell_source`; `scope`: the
        other names the body uses). One call a row instead of one a cell, as dataclasses
        generate their `__init__`. None when the columns are not chunked alike."""
        cols = [self._index[n] for n in names]
        if not cols or any(self._bounds[c] is not self._bounds[cols[0]] for c in cols):
            return None
        bounds = self._bounds[cols[0]]
        made, compiled = [], {}  # (chunks read alike share one compiled source)
        for chunk in range(len(bounds) - 1):
            cells, names_used = [], dict(scope or {})
            for j, col in enumerate(cols):
                source, objects = cell_source(self._columns[col].chunk(chunk), j)
                cells.append(source)
                names_used.update(objects)
            source = f"lambda {params}: {body(cells)}"
            code = compiled.get(source) or compiled.setdefault(
                source, compile(source, "<row function>", "eval"))
            made.append(eval(code, names_used))
        return made

    def take(self, rows: np.ndarray, names: Sequence[str]) -> dict[str, pa.Array]:
        """Each named column at the row positions, as Arrow arrays (a `take` per chunk:
        `ChunkedArray.take` over several chunks first concatenates the whole column)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        located: dict[int, tuple[list[tuple[int, np.ndarray]], np.ndarray | None]] = {}
        out = {}
        for name in names:
            col = self._index[name]
            column = self._columns[col]
            if column.num_chunks == 1:
                out[name] = column.chunk(0).take(numpy_column(rows))
                continue
            where = located.get(id(self._bounds[col]))
            if where is None:  # per chunk: its rows' local positions, in chunk order
                bounds = np.array(self._bounds[col], dtype=np.int64)
                chunk = np.searchsorted(bounds, rows, side="right") - 1
                order = np.argsort(chunk, kind="stable")
                edges = np.searchsorted(chunk[order], np.arange(len(bounds))).tolist()
                parts = [(c, rows[order[lo:hi]] - bounds[c])
                         for c, (lo, hi) in enumerate(itertools.pairwise(edges)) if lo < hi]
                back = np.empty_like(order)
                back[order] = np.arange(len(order))
                where = located[id(self._bounds[col])] = (parts, back)
            parts, back = where
            if not parts:
                out[name] = pa.array([], column.type)
                continue
            fixed = self._fixed(col)
            if fixed is not None:  # numbers, times: a numpy gather per chunk, no Arrow take
                values = np.concatenate([fixed[c][local] for c, local in parts])[back]
                out[name] = pa.Array.from_buffers(column.type, len(values),
                                                  [None, pa.py_buffer(values)])
                continue
            try:
                joined = pa.concat_arrays([column.chunk(c).take(numpy_column(local))
                                         for c, local in parts])
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # e.g. dictionaries
                out[name] = column.take(numpy_column(rows)).combine_chunks()
                continue
            out[name] = joined.take(numpy_column(back))
        return out

    def columns(self, rows: np.ndarray, names: Sequence[str]) -> list[list[Any]]:
        """Each named column's values at the row positions, in the order given (for many
        rows: Arrow's `take` per chunk, then one conversion per column)."""
        taken = self.take(rows, names)
        return [python_values(taken[n]) for n in names]


def _locate(bounds: list[int], rows: Sequence[int]) -> tuple[list[int], list[int]]:
    """Each row position's chunk (by the chunks' start positions `bounds`) and its row
    within that chunk."""
    chunks = [bisect_right(bounds, r) - 1 for r in rows]
    return chunks, [r - bounds[c] for r, c in zip(rows, chunks, strict=True)]


def python_values(arr: pa.Array) -> list[Any]:
    """`arr.to_pylist()`, through numpy for numbers, booleans and naive timestamps
    without nulls (a third of the cost)."""
    t = arr.type
    if arr.null_count == 0 and not pa.types.is_float16(t):
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            return arr.to_numpy(zero_copy_only=False).tolist()
        if pa.types.is_timestamp(t) and t.tz is None and t.unit in _UNIT_US:
            ticks = arr.to_numpy()
            per = _UNIT_US[t.unit]  # (checked in the array's own unit: never overflows)
            if not len(ticks) or (ticks.view(np.int64).min() >= _US_MIN // per
                                  and ticks.view(np.int64).max() <= _US_MAX // per):
                return ticks.astype("datetime64[us]").tolist()
    return arr.to_pylist()
