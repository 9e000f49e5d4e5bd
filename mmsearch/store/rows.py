"""Row-level writes on a store: find the keys of ids, replace items' rows in one commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch.store.store import Batch, Store


def keys_of_ids(store: Store, ids: Sequence[str]) -> np.ndarray:
    """The keys of the live rows whose `id` is one of `ids`."""
    table = store.read_live_table(["key", "id"])
    if not len(table) or not ids:
        return np.zeros(0, dtype=np.int64)
    # hash lookup in Arrow: np.isin on object arrays is quadratic (minutes at 1M ids)
    mask = pc.is_in(table.column("id"), value_set=pa.array(list(ids), pa.string()))
    return table.column("key").to_numpy()[mask.to_numpy(zero_copy_only=False)]


def replace_rows(store: Store, table: pa.Table, vectors: np.ndarray, replaces: np.ndarray,
                 model: dict[str, Any] | None) -> pa.Table:
    """Add `table` (+ `vectors`, fresh keys) and delete the `replaces` keys, atomically.

    `model` ({"spec", "dim"}) is pinned when the store has none yet; so is the vector
    width. Call inside `store.writer()`; returns the table as written (with `key`).
    """
    table = table.add_column(0, "key", pa.array(store.allocate_keys(len(table)), pa.int64()))
    store.commit([Batch(table, vectors)], replaces, model=None if store.model else model,
                 dim=None if store.manifest.get("dim") else vectors.shape[1])
    return table
