"""Normalise user records (dicts, pandas, Arrow) for `Collection.upsert`.

Records may differ in their keys: columns are merged by name (a record without a column
gets null there). Each record is embedded from its own `vector`, else its `path` (an
image), else its `text`; a record with none of them is refused by id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.errors import UsageError
from mmsearch.store.columns import check_names
from mmsearch.store.schema import utc_naive

MODALITIES = ("image", "video", "audio", "text")


@dataclass
class RecordBatch:
    """Records split into metadata and what to embed, row by row.

    `vectors`: (rows, given vectors) for records with their own vector; `paths` and `texts`:
    (rows, values) for records embedded from an image file or a text.
    """

    table: pa.Table
    ids: list[str]
    vectors: tuple[np.ndarray, np.ndarray] | None = None
    paths: tuple[np.ndarray, list[str]] | None = None
    texts: tuple[np.ndarray, list[str]] | None = None


def to_record_batch(records: Any) -> RecordBatch:
    """Accept a list of dicts, a pandas DataFrame or an Arrow table; validate and split."""
    table = as_table(records)
    if "id" not in table.column_names:
        raise UsageError("records need an `id` column")
    check_names(table.column_names)
    if table.column("id").null_count:
        raise UsageError("every record needs an `id`")
    ids = [str(i) for i in table.column("id").to_pylist()]
    if len(set(ids)) != len(ids):
        raise UsageError("record ids must be unique within one upsert")
    table = table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))
    n = len(table)
    has = {c: _present(table, c) for c in ("vector", "path", "text")}
    source = np.where(has["vector"], 0, np.where(has["path"], 1, np.where(has["text"], 2, 3)))
    lacking = [ids[i] for i in np.flatnonzero(source == 3)[:5]]
    if lacking:
        raise UsageError(f"records need a `vector`, `path` or `text` to embed; "
                         f"{', '.join(map(repr, lacking))} have none")
    batch = RecordBatch(table, ids)
    if "vector" in table.column_names:
        rows = np.flatnonzero(source == 0)
        column = table.column("vector")
        if len(rows) < n:  # the fast path (every record has a vector) copies nothing
            column = column.take(pa.array(rows))
        batch.vectors = (rows, _vectors(column, ids, rows))
        table = table.drop_columns(["vector"])
    if "path" in table.column_names:
        paths = table.column("path").to_pylist()
        if not all(p is None or isinstance(p, str) for p in paths):
            raise UsageError("`path` values must be strings")
        paths = [None if p is None else os.path.abspath(p) for p in paths]
        table = table.set_column(table.column_names.index("path"), "path",
                                 pa.array(paths, pa.string()))
        rows = np.flatnonzero(source == 1)
        batch.paths = (rows, [paths[i] for i in rows])
        table = _file_stamps(table, paths, source == 1)
    if "text" in table.column_names:
        texts = table.column("text").to_pylist()
        rows = np.flatnonzero(source == 2)
        if not all(isinstance(texts[i], str) for i in rows):
            raise UsageError("`text` values must be strings")
        batch.texts = (rows, [texts[i] for i in rows])
    is_text = source == 2
    table = _fill(table, "modality", np.where(is_text, "text", "image"))
    table = _fill(table, "channel", np.where(is_text, "text", "visual"))
    modality = table.column("modality")
    bad = set(modality.to_pylist()) - set(MODALITIES) if pa.types.is_string(modality.type) \
        else set()
    if bad:
        raise UsageError(f"column 'modality': {sorted(map(str, bad))[0]!r} is not one of "
                         f"{', '.join(MODALITIES)}")
    if "indexed_at" not in table.column_names:
        table = table.append_column("indexed_at", pa.array([utc_naive()] * n,
                                                           pa.timestamp("us")))
    batch.table = table
    return batch


def as_table(records: Any) -> pa.Table:
    """Records (dicts, a pandas DataFrame, Arrow) as an Arrow table, columns merged by name."""
    if isinstance(records, pa.Table):
        return records
    if isinstance(records, pa.RecordBatch):
        return pa.Table.from_batches([records])
    if hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas DataFrame
        try:
            return pa.Table.from_pandas(records, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UsageError(f"records: {str(e).splitlines()[0]}") from None
    if isinstance(records, dict):
        records = [records]
    if isinstance(records, (str, bytes)):
        raise UsageError("records must be dicts, a pandas DataFrame or an Arrow table")
    try:
        rows = list(records)
    except TypeError:
        raise UsageError("records must be dicts, a pandas DataFrame or an Arrow table") from None
    if not rows:
        raise UsageError("no records given")
    if not all(isinstance(r, dict) for r in rows):
        raise UsageError("each record must be a dict (column -> value)")
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise UsageError(f"column names must be non-empty strings, not {name!r}")
        values = [_plain(r.get(name)) for r in rows]
        try:
            columns.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise UsageError(f"column {name!r}: values of mixed or unsupported types "
                             f"({', '.join(kinds)}): {str(e).splitlines()[0]}") from None
    return pa.table(columns, names=names)


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _present(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.zeros(len(table), dtype=bool)
    return pc.is_valid(table.column(name)).to_numpy(zero_copy_only=False)


def _file_stamps(table: pa.Table, paths: list[str | None], embedded: np.ndarray) -> pa.Table:
    """Record the size and time of each embedded image file (files are served only while
    they still match)."""
    size: list[int | None] = [None] * len(paths)
    mtime: list[int | None] = [None] * len(paths)
    for i in np.flatnonzero(embedded):
        try:
            st = os.stat(paths[i])
        except OSError:
            continue  # reported when the image is read
        size[i], mtime[i] = st.st_size, st.st_mtime_ns
    table = table.append_column("mtime_ns", pa.array(mtime, pa.int64()))
    if "bytes" not in table.column_names:
        table = table.append_column("bytes", pa.array(size, pa.int64()))
    return table


def _fill(table: pa.Table, name: str, default: np.ndarray) -> pa.Table:
    """Set a string column's nulls (or the whole column when absent) to per-row defaults."""
    if name not in table.column_names:
        return table.append_column(name, pa.array(default.tolist(), pa.string()))
    column = table.column(name)
    if not (pa.types.is_string(column.type) or pa.types.is_null(column.type)):
        return table  # a wrong type: the store's schema check names it
    values = column.to_pylist()
    filled = [d if v is None else v for v, d in zip(values, default.tolist(), strict=True)]
    return table.set_column(table.column_names.index(name), name, pa.array(filled, pa.string()))


def _vectors(column: pa.ChunkedArray, ids: list[str], rows: np.ndarray) -> np.ndarray:
    """A list column of equal-length float lists as a (n, dim) float32 array of unit rows."""
    arr = column.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise UsageError("all vectors must have the same length")
        dim = int(lengths[0]) if len(lengths) else 0
    else:
        raise UsageError(f"the `vector` column must hold lists of numbers, not {arr.type}")
    values = arr.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
            or pa.types.is_null(values.type)):
        raise UsageError(f"vectors must hold numbers, not {values.type}")
    if values.null_count or dim == 0:
        raise UsageError("vectors must not be empty or hold nulls")
    with np.errstate(over="ignore", invalid="ignore"):
        vectors = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
        vectors = vectors.reshape(len(arr), dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    bad = ~np.isfinite(vectors).all(axis=1) | ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        shown = ", ".join(repr(ids[rows[i]]) for i in np.flatnonzero(bad)[:5])
        raise UsageError(f"vectors must be finite and non-zero (NaN, Inf or zeros in {shown})")
    return vectors / norms
