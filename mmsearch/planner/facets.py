"""Facet counts (items per value of a column) over a search's hits or over filtered rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mmsearch.errors import UsageError
from mmsearch.filters import quote_identifier
from mmsearch.results import Result, results_to_arrow
from mmsearch.view.snapshot import Snapshot

if TYPE_CHECKING:
    import duckdb

Facets = dict[str, list[tuple[Any, int]]]


def hit_facets(snap: Snapshot, columns: Sequence[str], hits: list[Result]) -> Facets:
    """Counts per value of each column over the hits, most frequent first."""
    if not hits or not len(snap):
        return {c: [] for c in columns}
    cursor = snap.sql("SELECT 1")  # this thread's cursor (a new connection is slow)
    cursor.fetchall()
    cursor.register("hits", results_to_arrow(hits))
    try:
        return {c: facet_counts(cursor, "hits", c, "count(*)", "TRUE", []) for c in columns}
    finally:
        cursor.unregister("hits")


def row_facets(snap: Snapshot, columns: Sequence[str], condition: str | None,
               params: list[Any]) -> Facets:
    """Counts of distinct items per value of each column over the rows matching
    `condition` (None: all rows), most frequent first."""
    if not len(snap):
        return {c: [] for c in columns}
    cursor = snap.sql("SELECT 1")  # the snapshot's per-thread cursor, `items` registered
    cursor.fetchall()
    return {c: facet_counts(cursor, "items", c, "count(DISTINCT id)", condition or "TRUE", params)
            for c in columns}


def facet_counts(con: duckdb.DuckDBPyConnection, table: str, column: str, count: str, where: str,
                 params: list[Any]) -> list[tuple[Any, int]]:
    """(value, count) of `column` in `table` over rows matching `where`, most first."""
    import duckdb

    col = quote_identifier(column)
    try:
        rows = con.execute(f"SELECT {col}, {count} AS n FROM {table} WHERE {where} "
                           f"GROUP BY 1 ORDER BY n DESC, 1 NULLS LAST", params).fetchall()
    except duckdb.Error as e:
        raise UsageError(f"bad facet {column!r} or filter: {str(e).splitlines()[0]}") from None
    return [(value, int(n)) for value, n in rows]
