"""The CLAP side space: its own vectors and index under `STORE/spaces/clap/`.

A second store (same format and commit protocol) holds one row per CLAP window: `id` (the
item's id in the main store), `start_s`, `end_s`, and the CLAP vector. The indexer commits
it *before* the main store, so a crash can leave side rows whose item is not (yet) in the
main store, never main rows without their side rows; readers drop side rows whose id is
not live in the main store, and the next run replaces the rows of every id it writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mmsearch.store.store import Batch, Store
from mmsearch.view.snapshot import Snapshot

SPACE = Path("spaces") / "clap"


class ClapSpace:
    """Reads and writes the side store of one main store."""

    def __init__(self, main_root: Path) -> None:
        self.store = Store(Path(main_root) / SPACE)
        self._by_id: dict[str, list[int]] | None = None
        self._table: pa.Table | None = None
        self._snapshot: Snapshot | None = None

    @property
    def exists(self) -> bool:
        return self.store.exists

    def _load(self) -> None:
        table, vectors = self.store.live(["key", "id", "start_s", "end_s"])
        self._table, self._vectors = table, vectors
        self._by_id = {}
        if len(table):
            for row, item in enumerate(table.column("id").to_pylist()):
                self._by_id.setdefault(item, []).append(row)

    def windows_of(self, item: str) -> list[tuple[float, float, np.ndarray]]:
        """The stored (start_s, end_s, vector) rows of an item (to carry over on rename)."""
        if self._by_id is None:
            self._load()
        rows = (self._by_id or {}).get(item, [])
        if not rows or self._table is None:
            return []
        vecs = self._vectors.take(np.array(rows, dtype=np.int64))
        starts = self._table.column("start_s").to_pylist()
        ends = self._table.column("end_s").to_pylist()
        return [(starts[r], ends[r], v) for r, v in zip(rows, vecs, strict=True)]

    def commit(self, rows: list[tuple[str, float, float, np.ndarray]], replace: set[str],
               spec: str) -> None:
        """Atomically drop all rows of the `replace` ids and add `rows` (id, start, end, vec)."""
        if not rows and not replace:
            return
        with self.store.writer() as store:
            table = store.read_live_table(["key", "id"])
            old = np.zeros(0, np.int64)
            if len(table) and replace:
                ids = table.column("id").to_pylist()
                keys = table.column("key").to_numpy()
                old = keys[[i for i, item in enumerate(ids) if item in replace]]
            batches = []
            if rows:
                keys = store.allocate_keys(len(rows))
                meta = pa.table({"key": pa.array(keys, pa.int64()),
                                 "id": pa.array([r[0] for r in rows], pa.string()),
                                 "start_s": pa.array([r[1] for r in rows], pa.float64()),
                                 "end_s": pa.array([r[2] for r in rows], pa.float64())})
                batches.append(Batch(meta, np.stack([r[3] for r in rows]).astype(np.float32)))
            dim = int(rows[0][3].shape[0]) if rows and not store.manifest.get("dim") else None
            model = {"spec": spec} if not store.model else None
            store.commit(batches, old, model=model, dim=dim)
        self._by_id = None
        self._snapshot = None

    def search(self, query: np.ndarray, k: int) -> list[tuple[float, str, float | None]]:
        """The k best windows: (score, item id, start_s)."""
        self.store.refresh()
        if self._snapshot is None or self._snapshot.generation != self.store.generation:
            self._snapshot = Snapshot.load(self.store)
        snap = self._snapshot
        if not len(snap):
            return []
        scores, found = snap.index.search(query[None, :].astype(np.float32),
                                          min(k, len(snap)), None)
        keep = found[0] >= 0
        rows = found[0][keep]
        ids = snap.table.column("id").take(pa.array(rows, pa.int64())).to_pylist()
        starts = snap.table.column("start_s").take(pa.array(rows, pa.int64())).to_pylist()
        return [(float(s), i, st) for s, i, st in zip(scores[0][keep], ids, starts,
                                                         strict=True)]
