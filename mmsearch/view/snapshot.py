"""A consistent, read-only view of one store generation: rows, vectors, index, SQL."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mmsearch.arrow_numpy import column_numpy, numpy_column
from mmsearch.errors import UsageError
from mmsearch.filters import cache_key, evaluate
from mmsearch.index.flat import FlatIndex
from mmsearch.index.ivfpq import AnnIndex, IVFPQIndex
from mmsearch.index.params import AnnParams
from mmsearch.store.schema import CORE_COLUMNS, HIDDEN_COLUMNS
from mmsearch.store.store import Store
from mmsearch.vectors import LiveVectors
from mmsearch.view.ann import flat_index, open_index
from mmsearch.view.cells import Cells

if TYPE_CHECKING:  # DuckDB loads on the first SQL filter, not with every query
    import duckdb

__all__ = ["CORE_COLUMNS", "HIDDEN_COLUMNS", "Snapshot"]
#: RAM for the rows selected by recent structured filters, per snapshot (LRU).
FILTER_CACHE_BYTES = 64 << 20


class Snapshot:
    """Live rows of a store generation. Row positions align table, vectors and index.

    `vectors` stay memory-mapped in the segment files (`LiveVectors`); the index is the
    store's saved IVF-PQ index when the manifest names one, else exact search (built on
    first use).
    """

    def __init__(self, generation: int, table: pa.Table, vectors: np.ndarray | LiveVectors,
                 index: IVFPQIndex | None = None) -> None:
        self.generation = generation
        self.table = table
        self.vectors = (vectors if isinstance(vectors, LiveVectors)
                        else LiveVectors.from_array(vectors))
        self._index: FlatIndex | IVFPQIndex | None = index
        self._db: duckdb.DuckDBPyConnection | None = None
        self._cursors = threading.local()
        self._lock = threading.Lock()
        self._filter_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._filter_cache_bytes = 0
        self._cells: Cells | None = None
        #: what the query paths derive once per snapshot (e.g. `planner.lean`'s decision)
        self.memo: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def load(cls, store: Store, params: AnnParams | None = None,
             cached: AnnIndex | None = None) -> Snapshot:
        """The store's current generation (the IVF-PQ index loaded eagerly when saved)."""
        table, vectors = store.live()
        keys = column_numpy(table.column("key")) if len(table) else np.zeros(0, np.int64)
        index = open_index(store, keys, vectors, AnnParams.resolve(params), cached)
        return cls(store.generation, table, vectors, index)

    @property
    def ann(self) -> AnnIndex | None:
        """The shared IVF-PQ index behind this snapshot's view, if any."""
        return self._index.ann if isinstance(self._index, IVFPQIndex) else None

    @property
    def index(self) -> FlatIndex | IVFPQIndex:
        index = self._index
        if index is not None:  # (set once; a search reads it without the lock)
            return index
        with self._lock:
            if self._index is None:
                self._index = flat_index(self.vectors)
            return self._index

    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run SQL where the table `items` holds the live rows (with a `_row` position).

        Each thread gets its own DuckDB cursor (DuckDB connections are not thread-safe);
        the Arrow table is shared zero-copy.
        """
        cursor = getattr(self._cursors, "cursor", None)
        if cursor is None:
            import duckdb

            with self._lock:
                if self._db is None:
                    self._db = duckdb.connect()
                    rows = numpy_column(np.arange(len(self.table), dtype=np.int64))
                    self._items = self.table.append_column("_row", rows)
                cursor = self._db.cursor()
            cursor.register("items", self._items)
            self._cursors.cursor = cursor
        return cursor.execute(query, params or [])

    def matching_rows(self, where: str, params: list[Any] | None = None) -> np.ndarray:
        """Row positions matching a SQL condition over the `items` columns (`?` = params)."""
        import duckdb

        try:
            result = self.sql(f"SELECT _row FROM items WHERE {where}", params).fetchnumpy()
        except duckdb.Error as e:
            columns = ", ".join(c for c in self.table.column_names if c not in HIDDEN_COLUMNS)
            raise UsageError(f"bad filter {where!r}: {str(e).splitlines()[0]} "
                             f"(columns: {columns})") from None
        return np.sort(result["_row"].astype(np.int64))

    def filter_rows(self, clauses: Iterable[tuple[str, Any]]) -> np.ndarray | None:
        """Row positions matching structured filter clauses, evaluated on the column arrays
        (`mmsearch.filters.evaluate`) and kept in a per-snapshot LRU; None when a clause
        needs SQL (use `matching_rows`). The returned array is shared: do not modify it."""
        clauses = list(clauses)
        key = cache_key(clauses)
        with self._lock:
            rows = self._filter_cache.get(key)
            if rows is not None:
                self._filter_cache.move_to_end(key)
                return rows
        rows = evaluate(clauses, self.table)
        if rows is None:
            return None
        rows.flags.writeable = False
        with self._lock:
            if key not in self._filter_cache and rows.nbytes <= FILTER_CACHE_BYTES:
                self._filter_cache[key] = rows
                self._filter_cache_bytes += rows.nbytes
                while self._filter_cache_bytes > FILTER_CACHE_BYTES:
                    _, old = self._filter_cache.popitem(last=False)
                    self._filter_cache_bytes -= old.nbytes
        return rows

    @property
    def cells(self) -> Cells:
        """Reads single cells of `table` (a search's hits) without `take`."""
        cells = self._cells
        if cells is None:
            cells = self._cells = Cells(self.table)
        return cells

    def records(self, rows: np.ndarray | Sequence[int]) -> list[dict[str, Any]]:
        """Metadata dicts of the given row positions, in that order."""
        if len(rows) == 0:
            return []
        return self.cells.rows(rows)
