"""The on-disk store: immutable segments plus a manifest swapped atomically.

Layout (see indexes/README.md)::

    STORE/manifest.json            # the only mutable file; os.replace makes commits atomic
    STORE/segments/<name>.parquet  # metadata rows of one commit (one row per vector)
    STORE/segments/<name>.npy      # float32 vectors of the same rows, same order
    STORE/deleted-<gen>.npy        # int64 keys deleted so far (tombstones), sorted
    STORE/ann-<gen>-<id>.faiss     # trained IVF-PQ index named by manifest["ann"] (large stores)
    STORE/.lock                    # held by the one writer

A commit writes new segment files first, then a new manifest that names them. A crash
before the manifest swap leaves unreferenced files that the next writer removes; a crash
after it leaves a complete commit. Readers only ever follow the manifest.
"""

from __future__ import annotations

import fcntl
import io
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsearch.errors import MmsearchError, StoreLockedError
from mmsearch.fileio import fsync_dir, write_atomic, write_json_atomic
from mmsearch.vectors import LiveVectors

FORMAT = 1
MANIFEST = "manifest.json"
#: Merge all segments into one when there are more than this many.
MAX_SEGMENTS = 24
#: Merge when this share of stored rows is deleted.
MAX_DELETED_SHARE = 0.3


@dataclass
class Segment:
    """One commit's rows on disk."""

    name: str
    rows: int


@dataclass
class Batch:
    """Rows to add in a commit: metadata (with a `key` column) and their vectors."""

    table: pa.Table
    vectors: np.ndarray | LiveVectors


class Store:
    """Reads and writes one store folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = self._read_manifest()

    # -- reading ----------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return bool(self.manifest)

    @property
    def generation(self) -> int:
        return int(self.manifest.get("generation", 0))

    @property
    def model(self) -> dict[str, Any] | None:
        return self.manifest.get("model")

    @property
    def segments(self) -> list[Segment]:
        return [Segment(**s) for s in self.manifest.get("segments", [])]

    def refresh(self) -> bool:
        """Re-read the manifest if it changed on disk; True when a commit happened meanwhile.

        A stat decides (every commit replaces the file, so its inode changes): searching
        does not parse the manifest on every query.
        """
        if self._stamp is not None and self._stamp == _stat_stamp(self.root / MANIFEST):
            return False
        old = self.generation
        self.manifest = self._read_manifest()
        return self.generation != old

    def deleted_keys(self) -> np.ndarray:
        name = self.manifest.get("deleted")
        if not name:
            return np.zeros(0, dtype=np.int64)
        return np.load(self.root / name, allow_pickle=False)

    def read_segment(self, seg: Segment, mmap: bool = True,
                     columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        seg_dir = self.root / "segments"
        path = seg_dir / f"{seg.name}.parquet"
        if columns is not None:  # segments from upserts may lack some: read those present
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present]
        table = pq.read_table(path, columns=columns)
        vectors = np.load(seg_dir / f"{seg.name}.npy", mmap_mode="r" if mmap else None,
                          allow_pickle=False)
        if len(table) != len(vectors) or len(table) != seg.rows:
            raise MmsearchError(f"store {self.root}: segment {seg.name} is inconsistent")
        return table, vectors

    def live(self, columns: list[str] | None = None) -> tuple[pa.Table, LiveVectors]:
        """All live rows: metadata table and their vectors, left memory-mapped on disk.

        `columns`: read only these metadata columns (they must include `key`).
        """
        deleted = self.deleted_keys()
        tables, parts, keeps = [], [], []
        for seg in self.segments:
            table, vectors = self.read_segment(seg, columns=columns)
            keep = None
            if len(deleted):
                live = ~np.isin(table.column("key").to_numpy(), deleted)
                if not live.all():
                    table = table.filter(pa.array(live))
                    keep = np.flatnonzero(live)
            tables.append(table)
            parts.append(vectors)
            keeps.append(keep)
        dim = int(self.manifest.get("dim") or 0)
        if not tables:
            return pa.table({"key": pa.array([], pa.int64())}), LiveVectors([], [], dim)
        return pa.concat_tables(tables, promote_options="permissive"), LiveVectors(parts, keeps,
                                                                                    dim)

    def read_live(self) -> tuple[pa.Table, np.ndarray]:
        """All live rows (deleted ones dropped): metadata table and aligned vectors in RAM."""
        table, vectors = self.live()
        return table, vectors.to_array()

    def read_live_table(self, columns: list[str] | None = None) -> pa.Table:
        """The metadata of all live rows (optionally some columns), vectors left on disk."""
        return self.live(columns)[0]

    # -- writing ----------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[Store]:
        """Hold the store's write lock (one writer at a time; readers never wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreLockedError(f"another process is writing to {self.root}") from None
            self.refresh()
            self._collect_garbage()
            yield self
        finally:
            os.close(fd)

    def allocate_keys(self, n: int) -> np.ndarray:
        """Reserve n new row keys (made durable by the next commit)."""
        start = int(self.manifest.get("next_key", 0))
        self.manifest["next_key"] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def commit(self, batches: list[Batch], delete: np.ndarray | None = None,
               model: dict[str, Any] | None = None, dim: int | None = None,
               extra: dict[str, Any] | None = None) -> None:
        """Atomically add rows and delete keys (and set `extra` manifest fields).

        Call inside `writer()`.
        """
        seg_dir = self.root / "segments"
        seg_dir.mkdir(parents=True, exist_ok=True)
        manifest = dict(self.manifest)
        if model is not None:
            manifest["model"] = model
        if dim is not None:
            manifest["dim"] = dim
        manifest.update(extra or {})
        segments = list(manifest.get("segments", []))
        for batch in batches:
            if len(batch.table) == 0:
                continue
            name = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
            _write_segment(seg_dir, name, batch)
            segments.append({"name": name, "rows": len(batch.table)})
        deleted = self.deleted_keys()
        if delete is not None and len(delete):
            deleted = np.union1d(deleted, np.asarray(delete, dtype=np.int64))
        generation = self.generation + 1
        manifest.update(format=FORMAT, generation=generation, segments=segments,
                        updated_at=time.time())
        manifest.setdefault("created_at", time.time())
        manifest.setdefault("next_key", 0)
        manifest["deleted"] = None
        if len(deleted):
            name = f"deleted-{generation}.npy"
            write_atomic(self.root / name, lambda f: np.save(f, deleted, allow_pickle=False))
            manifest["deleted"] = name
        total = sum(s["rows"] for s in segments)
        manifest["rows"] = total - len(deleted)
        write_json_atomic(self.root / MANIFEST, manifest)
        self.manifest = manifest
        if len(segments) > MAX_SEGMENTS or (total and len(deleted) > MAX_DELETED_SHARE * total):
            self.compact()
        self._collect_garbage()

    def compact(self) -> None:
        """Rewrite all live rows into one segment and drop the tombstones."""
        table, vectors = self.live()  # streamed from the old segments into the new one
        manifest = dict(self.manifest, segments=[], deleted=None)
        self.manifest = manifest
        self.commit([Batch(table, vectors)])

    # -- internals --------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        import json

        path = self.root / MANIFEST
        self._stamp = _stat_stamp(path)
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            self._stamp = None
            return {}
        except (OSError, ValueError) as e:
            raise MmsearchError(f"cannot read {path}: {e}") from e
        if manifest.get("format", FORMAT) > FORMAT:
            raise MmsearchError(f"{path} was written by a newer mmsearch (format "
                                f"{manifest['format']}); upgrade mmsearch to read it")
        return manifest

    def _collect_garbage(self) -> None:
        """Delete files no manifest names (left by crashed or superseded commits)."""
        keep = {f"{s.name}{ext}" for s in self.segments for ext in (".parquet", ".npy")}
        seg_dir = self.root / "segments"
        if seg_dir.is_dir():
            for f in seg_dir.iterdir():
                if f.name not in keep:
                    f.unlink(missing_ok=True)
        for f in self.root.glob("deleted-*.npy"):
            if f.name != self.manifest.get("deleted"):
                f.unlink(missing_ok=True)
        ann = (self.manifest.get("ann") or {}).get("file")
        for f in self.root.glob("ann-*.faiss"):
            if f.name != ann:
                f.unlink(missing_ok=True)
        for f in self.root.glob(".*.tmp-*"):
            f.unlink(missing_ok=True)


def _stat_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _write_segment(seg_dir: Path, name: str, batch: Batch) -> None:
    vectors = batch.vectors
    if not isinstance(vectors, LiveVectors):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors.shape) != 2 or len(vectors) != len(batch.table):
        raise ValueError("vectors must be a 2-D array with one row per table row")

    def write_parquet(f: io.BufferedWriter) -> None:
        pq.write_table(batch.table, f, compression="zstd")

    def write_npy(f: io.BufferedWriter) -> None:
        if isinstance(vectors, np.ndarray):
            np.save(f, vectors, allow_pickle=False)
            return
        # block by block, so compacting a large store never holds all its vectors in RAM
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": vectors.shape})
        for _, block in vectors.chunks():
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    write_atomic(seg_dir / f"{name}.npy", write_npy)
    write_atomic(seg_dir / f"{name}.parquet", write_parquet)
    fsync_dir(seg_dir)
