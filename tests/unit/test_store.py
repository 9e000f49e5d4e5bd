"""The store: atomic commits, crash leftovers, tombstones, compaction, locking, filters SQL."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mmsearch.errors import StoreLockedError, UsageError
from mmsearch.filters import compile_filters
from mmsearch.store import store as store_mod
from mmsearch.store.store import Batch, Store


def _batch(store: Store, n: int, d: int = 4, seed: int = 0) -> Batch:
    keys = store.allocate_keys(n)
    rng = np.random.default_rng(seed)
    table = pa.table({"key": keys, "id": [f"i{k}" for k in keys]})
    return Batch(table, rng.normal(size=(n, d)).astype(np.float32))


def test_commit_delete_and_reopen(tmp_path):
    s = Store(tmp_path)
    with s.writer():
        s.commit([_batch(s, 5)], dim=4)
        s.commit([_batch(s, 3)], np.array([0, 1]))
    reopened = Store(tmp_path)
    table, vectors = reopened.read_live()
    assert table.column("key").to_pylist() == [2, 3, 4, 5, 6, 7]
    assert vectors.shape == (6, 4) and reopened.manifest["rows"] == 6
    assert reopened.generation == 2


def test_crash_before_manifest_swap_leaves_previous_state(tmp_path, monkeypatch):
    s = Store(tmp_path)
    with s.writer():
        s.commit([_batch(s, 4)], dim=4)
    before = json.loads((tmp_path / "manifest.json").read_text())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store_mod, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt), s.writer():
        s.commit([_batch(s, 4)], np.array([0]))
    monkeypatch.undo()
    assert json.loads((tmp_path / "manifest.json").read_text()) == before
    assert len(list((tmp_path / "segments").iterdir())) == 6   # orphans left by the crash
    fresh = Store(tmp_path)
    assert len(fresh.read_live()[0]) == 4
    with fresh.writer():                                        # the next writer cleans up
        pass
    assert len(list((tmp_path / "segments").iterdir())) == 3   # .parquet, .npy, .arrow


def test_compaction_merges_segments_and_drops_tombstones(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_SEGMENTS", 3)
    s = Store(tmp_path)
    with s.writer():
        for i in range(4):
            s.commit([_batch(s, 2, seed=i)], dim=4)
        assert len(s.segments) == 1 and s.manifest["rows"] == 8
        s.commit([], np.arange(5))                              # 5/8 deleted > 30%
        assert len(s.segments) == 1 and s.manifest["deleted"] is None
    table, _ = Store(tmp_path).read_live()
    assert table.column("key").to_pylist() == [5, 6, 7]
    assert len(list((tmp_path / "segments").iterdir())) == 3   # .parquet, .npy, .arrow


def test_second_writer_is_refused(tmp_path):
    a, b = Store(tmp_path), Store(tmp_path)
    with a.writer(), pytest.raises(StoreLockedError), b.writer():
        pass


def test_compile_filters_parameterises_every_value():
    sql, params = compile_filters({"price": {"gte": 10, "lt": 50}, "brand": "Nike",
                                   "tag": ["a", "b"], "x": None, "y": {"between": [1, 2]}})
    assert sql == ('"price" >= ? AND "price" < ? AND "brand" = ? AND "tag" IN (?, ?) AND '
                   '"x" IS NULL AND "y" BETWEEN ? AND ?')
    assert params == [10, 50, "Nike", "a", "b", 1, 2]
    sql, _ = compile_filters({'a"; DROP TABLE items; --': 1})
    assert sql == '"a""; DROP TABLE items; --" = ?'
    with pytest.raises(UsageError, match="unknown filter operator"):
        compile_filters({"a": {"like": "x"}})


def test_refresh_sees_other_writers_and_skips_unchanged_manifest(tmp_path, monkeypatch):
    writer, reader = Store(tmp_path), Store(tmp_path)
    assert reader.refresh() is False                      # no store yet, still nothing
    with writer.writer():
        writer.commit([_batch(writer, 3)], dim=4)
    assert reader.refresh() is True and reader.generation == 1
    reads = []
    real = Store._read_manifest
    monkeypatch.setattr(Store, "_read_manifest", lambda self: reads.append(1) or real(self))
    assert reader.refresh() is False and reads == []      # unchanged: a stat, no parse
    with writer.writer():
        writer.commit([_batch(writer, 1)])
    assert reader.refresh() is True and reader.generation == 2 and reads


def test_reading_columns_some_segments_lack_fills_nulls(tmp_path):
    s = Store(tmp_path)
    with s.writer():
        s.commit([_batch(s, 2)], dim=4)                   # segment without `path`
        keys = s.allocate_keys(1)
        table = pa.table({"key": keys, "id": ["f"], "path": ["/a.jpg"]})
        s.commit([Batch(table, np.ones((1, 4), np.float32))])
    table = s.read_live_table(["key", "path"])
    assert table.column("path").to_pylist() == [None, None, "/a.jpg"]
