"""A Ray actor holding one shard: its snapshot (index and rows) in memory, answering the
per-shard step of a search (`mmsearch.shards.search.shard_hits`) and record lookups.

The actor opens the shard's store folder (shared storage, or the node's own disk) like
any reader and follows its commits; Ray restarts it when its process dies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mmsearch.audio.search import row_bonus
from mmsearch.collection import Collection
from mmsearch.errors import MmsearchError
from mmsearch.ocr import search as ocr_search
from mmsearch.planner.calibration import Calibration
from mmsearch.planner.query import Query
from mmsearch.shards.search import ShardHits, shard_hits
from mmsearch.view.snapshot import Snapshot

#: Snapshots kept by generation, so that records of a search's hits come from the very
#: generation that scored them even if a commit landed in between.
KEEP_GENERATIONS = 3


class ShardServer:
    """One shard of a sharded store, served (wrapped by `ray.remote` in `search.py`)."""

    def __init__(self, path: str, shard: int, index_params: Mapping[str, Any] | None) -> None:
        self.shard = shard
        self.collection = Collection(path, index_params=index_params)
        self._snaps: dict[int, Snapshot] = {}
        self._pause = 0.0
        self.snapshot()  # load the index now, not on the first query

    def snapshot(self) -> Snapshot:
        snap = self.collection.snapshot()
        if snap.generation not in self._snaps:
            self._snaps[snap.generation] = snap
            for old in sorted(self._snaps)[:-KEEP_GENERATIONS]:
                del self._snaps[old]
        return snap

    def search(self, query: Query, calibration: dict[str, Any] | None,
               condition: str | None, params: list[Any], pool: int,
               texts: list[str]) -> ShardHits | MmsearchError:
        """The shard's scored candidates (an error the user made comes back as a value)."""
        if self._pause:
            time.sleep(self._pause)
            self._pause = 0.0
        try:
            snap = self.snapshot()
            if not len(snap):
                return ShardHits(self.shard, snap.generation)
            rows = None if condition is None else snap.matching_rows(condition, params)
            bonus = ocr_search.add_bonus(row_bonus(snap, texts, rows), snap, texts, rows)
            return shard_hits(self.shard, snap, query, Calibration.from_json(calibration),
                              rows, pool, bonus)
        except MmsearchError as e:
            return e

    def records(self, generation: int, rows: list[int]) -> list[dict[str, Any]]:
        snap = self._snaps.get(generation) or self.snapshot()
        if snap.generation != generation:
            raise MmsearchError(f"shard {self.shard}: generation {generation} is gone")
        return [snap.records(np.array([r], np.int64))[0] for r in rows]

    def generation(self) -> int:
        return self.snapshot().generation

    def pause(self, seconds: float) -> None:
        """Fault drills: make the next search take `seconds` longer."""
        self._pause = float(seconds)
