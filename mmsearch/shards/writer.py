"""The shards of a store seen as one writable store, for the file indexer.

`ShardedWriter` offers what `mmsearch.indexer.Indexer` uses of a `Store` (live rows,
manifest, key allocation, commit) over N shard stores whose write locks the caller holds.
So change detection, renames (matched by content hash, across shards too) and failure
bookkeeping are the single-store code, unchanged. Rows are routed to their shard at
commit time by `shard_of(id)`; each shard commits through its own atomic protocol, shards
receiving new rows first, so a crash between shard commits can leave a renamed file in
both its old and new shard (the next run removes the stale one), never in neither.

Keys: the view numbers a shard's row key `k` of shard `s` as `k * N + s`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.shards.layout import shard_of
from mmsearch.store.schema import file_id
from mmsearch.store.store import Batch, Store
from mmsearch.vectors import LiveVectors


class ShardedWriter:
    """N shard stores (write locks held by the caller) as one store."""

    def __init__(self, root: Any, stores: list[Store]) -> None:
        self.root = root
        self.stores = stores
        self.n = len(stores)
        self._next_key = 0

    @property
    def manifest(self) -> dict[str, Any]:
        """Model, dim and audio settings of the shards; `failed` files of all shards."""
        merged: dict[str, Any] = {}
        failed: dict[str, Any] = {}
        for store in self.stores:
            for name in ("model", "dim", "audio"):
                if store.manifest.get(name) and not merged.get(name):
                    merged[name] = store.manifest[name]
            failed.update(store.manifest.get("failed") or {})
        if failed or any("failed" in s.manifest for s in self.stores):
            merged["failed"] = failed
        return merged

    @property
    def model(self) -> dict[str, Any] | None:
        return self.manifest.get("model")

    def live(self, columns: list[str] | None = None) -> tuple[pa.Table, LiveVectors]:
        tables, parts, keeps, dim = [], [], [], 0
        for s, store in enumerate(self.stores):
            table, vectors = store.live(columns)
            if len(table):
                at = table.column_names.index("key")
                keys = table.column("key").to_numpy() * self.n + s
                table = table.set_column(at, "key", pa.array(keys, pa.int64()))
                tables.append(table)
            parts += vectors.parts
            keeps += vectors.keeps
            dim = dim or vectors.dim
        if not tables:
            return pa.table({"key": pa.array([], pa.int64())}), LiveVectors([], [], dim)
        return pa.concat_tables(tables, promote_options="permissive"), LiveVectors(parts, keeps,
                                                                                    dim)

    def allocate_keys(self, n: int) -> np.ndarray:
        """Placeholder keys: the real ones are allocated by each shard at commit."""
        start = self._next_key
        self._next_key += n
        return np.arange(start, start + n, dtype=np.int64)

    def commit(self, batches: list[Batch], delete: np.ndarray | None = None,
               model: dict[str, Any] | None = None, dim: int | None = None,
               extra: dict[str, Any] | None = None) -> None:
        """Route rows by id and deletes by key, then commit each shard that changed."""
        adds: list[list[Batch]] = [[] for _ in self.stores]
        for batch in batches:
            if not len(batch.table):
                continue
            route = np.array([shard_of(i, self.n) for i in batch.table.column("id").to_pylist()])
            vectors = np.asarray(batch.vectors)
            for s in np.unique(route):
                at = np.flatnonzero(route == s)
                adds[s].append(Batch(batch.table.take(pa.array(at)), vectors[at]))
        delete = np.asarray(delete if delete is not None else [], dtype=np.int64)
        extra = dict(extra or {})
        failed = extra.pop("failed", None)
        failed_by: list[dict[str, Any] | None] = [None] * self.n
        if failed is not None:
            failed_by = [{} for _ in self.stores]
            for path, value in failed.items():
                failed_by[shard_of(file_id(path), self.n)][path] = value  # type: ignore[index]
        merged = self.manifest
        model, dim = model or merged.get("model"), dim or merged.get("dim")
        order = sorted(range(self.n), key=lambda s: not adds[s])  # shards with new rows first
        for s in order:
            store = self.stores[s]
            gone = delete[delete % self.n == s] // self.n
            own = dict(extra) if adds[s] else {}
            if failed_by[s] is not None and failed_by[s] != store.manifest.get("failed", {}):
                own["failed"] = failed_by[s]
            if not adds[s] and not len(gone) and not own:
                continue
            if hasattr(store, "commit_routed"):  # a writer actor (mmsearch.distributed)
                store.commit_routed(adds[s], gone, model, dim, own)
                continue
            rekeyed = []
            for batch in adds[s]:
                keys = store.allocate_keys(len(batch.table))
                at = batch.table.column_names.index("key")
                rekeyed.append(Batch(batch.table.set_column(at, "key", pa.array(keys)),
                                     batch.vectors))
            store.commit(rekeyed, gone, model=model if not store.model else None,
                         dim=dim if dim and not store.manifest.get("dim") else None,
                         extra=own)
