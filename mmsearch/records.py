"""Normalise user records (dicts, pandas, Arrow) for `Collection.upsert`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.errors import UsageError
from mmsearch.store.schema import utc_naive

RESERVED = frozenset({"key", "mtime_ns", "_row"})


@dataclass
class RecordBatch:
    """Records split into metadata and what to embed (exactly one of the three)."""

    table: pa.Table
    ids: list[str]
    vectors: np.ndarray | None = None
    paths: list[str] | None = None
    texts: list[str] | None = None


def to_record_batch(records: Any) -> RecordBatch:
    """Accept a list of dicts, a pandas DataFrame or an Arrow table; validate and split."""
    table = as_table(records)
    if "id" not in table.column_names:
        raise UsageError("records need an `id` column")
    bad = RESERVED.intersection(table.column_names)
    if bad:
        raise UsageError(f"column names reserved by mmsearch: {', '.join(sorted(bad))}")
    ids = [str(i) for i in table.column("id").to_pylist()]
    if len(set(ids)) != len(ids):
        raise UsageError("record ids must be unique within one upsert")
    table = table.set_column(table.column_names.index("id"), "id", pa.array(ids, pa.string()))
    batch = RecordBatch(table, ids)
    if "vector" in table.column_names:
        batch.vectors = _vectors(table.column("vector"))
        table = table.drop_columns(["vector"])
    elif "path" in table.column_names:
        batch.paths = [os.path.abspath(str(p)) for p in table.column("path").to_pylist()]
        table = table.set_column(table.column_names.index("path"), "path",
                                 pa.array(batch.paths, pa.string()))
    elif "text" in table.column_names:
        batch.texts = [str(t) for t in table.column("text").to_pylist()]
    if "modality" not in table.column_names:
        modality = "image" if batch.paths is not None or batch.texts is None else "text"
        table = table.append_column("modality", pa.array([modality] * len(table), pa.string()))
    if "channel" not in table.column_names:
        channel = "text" if batch.texts is not None and batch.paths is None else "visual"
        table = table.append_column("channel", pa.array([channel] * len(table), pa.string()))
    if "indexed_at" not in table.column_names:
        table = table.append_column("indexed_at", pa.array([utc_naive()] * len(table),
                                                           pa.timestamp("us")))
    batch.table = table
    return batch


def as_table(records: Any) -> pa.Table:
    """Records (dicts, a pandas DataFrame, Arrow) as an Arrow table."""
    if isinstance(records, pa.Table):
        return records
    if isinstance(records, pa.RecordBatch):
        return pa.Table.from_batches([records])
    if hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas DataFrame
        return pa.Table.from_pandas(records, preserve_index=False)
    if isinstance(records, dict):
        records = [records]
    try:
        rows = list(records)
    except TypeError:
        raise UsageError("records must be dicts, a pandas DataFrame or an Arrow table") from None
    if not rows:
        raise UsageError("no records given")
    rows = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
            for r in rows]
    return pa.Table.from_pylist(rows)


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A list column of equal-length float lists as a (n, dim) float32 array."""
    if column.null_count:
        raise UsageError("every record needs a vector when the `vector` column is used")
    arr = column.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
        values = arr.flatten().to_numpy(zero_copy_only=False)
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise UsageError("all vectors must have the same length")
        dim = int(lengths[0]) if len(lengths) else 0
        values = arr.flatten().to_numpy(zero_copy_only=False)
    else:
        raise UsageError(f"the `vector` column must hold lists of floats, not {arr.type}")
    vectors = np.asarray(values, dtype=np.float32).reshape(len(arr), dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or (norms == 0).any():
        raise UsageError("vectors must be finite and non-zero")
    return vectors / norms
