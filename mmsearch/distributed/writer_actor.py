"""A Ray actor that writes one shard during a distributed index run.

It holds the shard's write lock from start to `finish` and commits the rows the driver
routes to it through the store's normal protocol; `finish` brings the shard's vector index
up to date (IVF-PQ training runs on the writer's node, shards in parallel) and releases
the lock. Each commit carries a token kept in the manifest: when Ray retries a commit on
a restarted writer (its process died after or during the commit), a commit that already
landed is recognised and not applied twice, one that did not land is applied now.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.collection import Collection
from mmsearch.store.store import Batch, Store

#: Fault drills: when this names a file that does not exist yet, the first writer to
#: commit creates it and exits right after its commit landed (Ray retries the commit).
DRILL_EXIT_AFTER_COMMIT = "MMSEARCH_RAY_DRILL_WRITER_EXIT_ONCE"


class ShardWriter:
    """One shard's writer for an index run (wrapped by `ray.remote` in `search.py`)."""

    def __init__(self, path: str, index_params: Mapping[str, Any] | None,
                 drill: str | None = None) -> None:
        self.collection = Collection(path, index_params=index_params)
        self._hold = self.collection._store.writer()
        self.store: Store = self._hold.__enter__()
        self.drill = drill

    def manifest(self) -> dict[str, Any]:
        return self.store.manifest

    def commit(self, token: str, batches: list[Batch], delete: np.ndarray,
               model: dict[str, Any] | None, dim: int | None,
               extra: dict[str, Any]) -> dict[str, Any]:
        """Commit rows (their keys allocated here) and deletes; returns the new manifest."""
        if self.store.manifest.get("commit_token") == token:
            return self.store.manifest  # a retry of a commit that landed
        rekeyed = []
        for batch in batches:
            keys = self.store.allocate_keys(len(batch.table))
            at = batch.table.column_names.index("key")
            rekeyed.append(Batch(batch.table.set_column(at, "key", pa.array(keys)),
                                 batch.vectors))
        self.store.commit(rekeyed, delete, model=model if not self.store.model else None,
                          dim=dim if dim and not self.store.manifest.get("dim") else None,
                          extra={**extra, "commit_token": token})
        if self.drill and not os.path.exists(self.drill):
            Path(self.drill).write_text(str(os.getpid()))
            os._exit(1)
        return self.store.manifest

    def finish(self) -> dict[str, Any]:
        """Update the shard's vector index and release the write lock."""
        try:
            self.collection._maintain_index(self.store)
            return self.store.manifest
        finally:
            self._hold.__exit__(None, None, None)


class RemoteShardStore:
    """The driver's view of a `ShardWriter`: what `ShardedWriter` uses of a shard store.

    Reads (`live`) come from the shard folder on the shared storage; commits go to the
    writer actor."""

    def __init__(self, ray: Any, actor: Any, path: Path) -> None:
        self.ray, self.actor, self.root = ray, actor, Path(path)
        self.manifest: dict[str, Any] = ray.get(actor.manifest.remote())

    @property
    def model(self) -> dict[str, Any] | None:
        return self.manifest.get("model")

    @property
    def exists(self) -> bool:
        return bool(self.manifest)

    def live(self, columns: list[str] | None = None) -> Any:
        return Store(self.root).live(columns)

    def commit_routed(self, batches: list[Batch], delete: np.ndarray,
                      model: dict[str, Any] | None, dim: int | None,
                      extra: dict[str, Any]) -> None:
        token = os.urandom(8).hex()
        self.manifest = self.ray.get(self.actor.commit.remote(token, batches, delete, model,
                                                              dim, extra))
