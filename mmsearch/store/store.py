"""The on-disk store: immutable segments plus a manifest swapped atomically.

Layout (see indexes/README.md)::

    STORE/manifest.json            # the only mutable file; os.replace makes commits atomic
    STORE/segments/<name>.parquet  # metadata rows of one commit (one row per vector)
    STORE/segments/<name>.arrow    # the same rows as an Arrow IPC file, memory-mapped on read
    STORE/segments/<name>.npy      # float32 vectors of the same rows, same order
    STORE/deleted-<gen>.npy        # int64 keys deleted so far (tombstones), sorted
    STORE/ann-<gen>-<id>.faiss     # trained IVF-PQ index named by manifest["ann"] (large stores)
    STORE/.lock                    # held by the one writer

A commit checks its rows against the store's schema (`columns.conform`) before writing
anything, writes new segment files, reads them back (row counts, shapes, checksums), then
swaps in a new manifest that names them with their sizes and checksums. A crash before the
swap leaves unreferenced files that the next writer removes; a crash after it leaves a
complete commit. Readers only ever follow the manifest. Without a readable manifest
nothing is written or deleted: `mmsearch doctor --repair` rebuilds it from the segments.

Readers memory-map each segment's `.arrow` copy (written with the segment, uncompressed),
so opening a store reads no metadata into RAM: the pages a query touches come from the
page cache, and a column no query reads costs nothing. The Parquet file stays the
segment's record (`doctor` rebuilds from it). Segments of stores written before the copy
existed are read from Parquet, until the next commit writes their copies.
"""

from __future__ import annotations

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

from mmsearch.arrow_numpy import column_numpy, numpy_column
from mmsearch.errors import MmsearchError
from mmsearch.fileio import fsync_dir, write_atomic, write_json_atomic, write_lock
from mmsearch.sorted_keys import in_sorted
from mmsearch.store import columns, integrity
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

    def __init__(self, root: Path, declared: pa.Schema | None = None) -> None:
        self.root = Path(root)
        self._manifest_path = self.root / MANIFEST  # stat per search: joined once
        self.declared = declared
        self.manifest = self._read_manifest()
        columns.check_declared(declared, self.schema)

    # -- reading ----------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """True once a commit wrote rows (the empty manifest of a new store is not one)."""
        return self.generation > 0 or bool(self.manifest.get("segments"))

    @property
    def generation(self) -> int:
        return int(self.manifest.get("generation", 0))

    @property
    def model(self) -> dict[str, Any] | None:
        return self.manifest.get("model")

    @property
    def schema(self) -> pa.Schema | None:
        """Each column's Arrow type (None before the first write of a store with schemas)."""
        return columns.decode(self.manifest.get("schema"))

    @property
    def segments(self) -> list[Segment]:
        return [Segment(**s) for s in self.manifest.get("segments", [])]

    def refresh(self) -> bool:
        """Re-read the manifest if it changed on disk; True when a commit happened meanwhile.

        A stat decides (every commit replaces the file, so its inode changes): searching
        does not parse the manifest on every query.
        """
        if self._stamp is not None and self._stamp == _stat_stamp(self._manifest_path):
            return False
        old = self.generation
        self.manifest = self._read_manifest()
        return self.generation != old

    def deleted_keys(self) -> np.ndarray:
        name = self.manifest.get("deleted")
        if not name:
            return np.zeros(0, dtype=np.int64)
        with self._reading(name):
            keys = np.load(self.root / name, allow_pickle=False)
        # written sorted (`np.union1d`); readers search it by bisection
        return keys if bool((keys[1:] >= keys[:-1]).all()) else np.sort(keys)

    def verify(self, full: bool | None = None) -> None:
        """Raise StoreDamagedError naming any missing or damaged file (see `integrity`)."""
        problems = integrity.check_files(self.root, self.manifest, full=full)
        if problems:
            raise integrity.damaged(self.root, problems)

    @contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        """Turn a read failure of a store file into one StoreDamagedError naming it."""
        try:
            yield
        except FileNotFoundError:
            raise  # a concurrent compaction (readers retry) or damage (verify names it)
        except (OSError, ValueError, EOFError, pa.ArrowException) as e:
            raise integrity.damaged(self.root, [(name, str(e).splitlines()[0][:120])]) \
                from None

    def read_segment(self, seg: Segment, mmap: bool = True,
                     columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
        seg_dir = self.root / "segments"
        arrow = f"segments/{seg.name}.arrow"
        if mmap and arrow in (self.manifest.get("files") or {}):
            with self._reading(arrow):
                table = pa.ipc.open_file(pa.memory_map(str(self.root / arrow))).read_all()
            if columns is not None:  # segments from upserts may lack some
                table = table.select([c for c in columns if c in table.column_names])
        else:
            path = seg_dir / f"{seg.name}.parquet"
            with self._reading(f"segments/{seg.name}.parquet"):
                if columns is not None:  # segments from upserts may lack some
                    present = set(pq.read_schema(path).names)
                    columns = [c for c in columns if c in present]
                # one file: ParquetFile reads it without pyarrow.dataset (imports pandas)
                table = pq.ParquetFile(path).read(columns=columns)
        with self._reading(f"segments/{seg.name}.npy"):
            vectors = np.load(seg_dir / f"{seg.name}.npy", mmap_mode="r" if mmap else None,
                              allow_pickle=False)
        if len(table) != len(vectors) or len(table) != seg.rows or vectors.ndim != 2:
            raise integrity.damaged(self.root, [(f"segments/{seg.name}", "row counts of "
                                                 "its .parquet and .npy disagree")])
        return table, vectors

    def live(self, columns: list[str] | None = None) -> tuple[pa.Table, LiveVectors]:
        """All live rows: metadata table and their vectors, left memory-mapped on disk.

        `columns`: read only these metadata columns (they must include `key`).
        """
        self.verify()
        deleted = self.deleted_keys()
        schema = self.schema
        tables, parts, keeps = [], [], []
        for seg in self.segments:
            table, vectors = self.read_segment(seg, columns=columns)
            table = _as_store_types(table, schema)
            keep = None
            if len(deleted):
                live = ~in_sorted(column_numpy(table.column("key")), deleted)
                if not live.all():
                    keep = np.flatnonzero(live)
                    table = table.take(numpy_column(keep.astype(np.int64)))
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
        with write_lock(self.root):
            self.refresh()
            if self.manifest:
                self.verify(full=False)  # never clean up around missing files
                self._collect_garbage()
            yield self

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
        manifest = dict(self.manifest)
        if model is not None:
            manifest["model"] = model
        if dim is not None:
            manifest["dim"] = dim
        manifest.update(extra or {})
        batches = self._conform(manifest, [b for b in batches if len(b.table)])
        if not (self.root / MANIFEST).exists():
            # a new store: an empty manifest first, so data files never exist without one
            # (a missing manifest beside data files is damage, not a first commit cut short)
            write_json_atomic(self.root / MANIFEST, {"format": FORMAT, "generation": 0,
                                                     "segments": [], "next_key": 0,
                                                     "created_at": time.time()})
        seg_dir.mkdir(parents=True, exist_ok=True)
        segments = list(manifest.get("segments", []))
        files = {k: v for k, v in (manifest.get("files") or {}).items()}
        stamp = {k: manifest.get(k) for k in ("model", "dim", "audio")}
        stamp["generation"] = self.generation + 1
        for batch in batches:
            name = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
            files.update(_write_segment(seg_dir, name, batch, manifest.get("dim"), stamp))
            segments.append({"name": name, "rows": len(batch.table)})
        for seg in segments:  # segments of older stores get their Arrow copy
            if f"segments/{seg['name']}.arrow" not in files:
                files.update(self._write_arrow_copy(seg["name"]))
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
        manifest["files"] = self._checksums(manifest, files)
        integrity.check_manifest(manifest)
        problems = integrity.check_files(self.root, manifest, full=False)
        if problems:  # never commit what cannot be read back
            raise MmsearchError(f"commit to {self.root} abandoned, nothing changed: "
                                + "; ".join(f"{f}: {w}" for f, w in problems[:3]))
        write_json_atomic(self.root / MANIFEST, manifest)
        self.manifest = manifest
        integrity.write_record(self.root, manifest)  # what was just written needs no re-read
        if len(segments) > MAX_SEGMENTS or (total and len(deleted) > MAX_DELETED_SHARE * total):
            self.compact()
        self._collect_garbage()

    def compact(self) -> None:
        """Rewrite all live rows into one segment and drop the tombstones."""
        table, vectors = self.live()  # streamed from the old segments into the new one
        before = self.manifest
        self.manifest = dict(before, segments=[], deleted=None)
        try:
            self.commit([Batch(table, vectors)])
        except BaseException:
            self.manifest = before  # a failed compaction changes nothing, on disk or here
            raise

    # -- internals --------------------------------------------------------------------
    def _conform(self, manifest: dict[str, Any], batches: list[Batch]) -> list[Batch]:
        """Cast the batches to the store's schema (recording changes in `manifest`);
        SchemaError before anything is written when they do not fit."""
        if not batches and "schema" in manifest:
            return batches
        schema = columns.decode(manifest.get("schema")) or self._schema_of_segments()
        changes: list[dict[str, Any]] = []
        out = []
        for batch in batches:
            table, schema, changed = columns.conform(batch.table, schema, self.declared)
            changes += changed
            out.append(Batch(table, batch.vectors))
        if schema is None and self.declared is not None:
            schema = self.declared
        if schema is not None:
            manifest["schema"] = columns.encode(schema)
        if changes and self.manifest.get("schema"):  # the first write's types are no change
            generation = self.generation + 1
            manifest["schema_changes"] = [*manifest.get("schema_changes", []),
                                          *({**c, "generation": generation} for c in changes)]
        return out

    def _schema_of_segments(self) -> pa.Schema | None:
        """The schema of a store written before schemas: its segments' types unified."""
        schemas = []
        for seg in self.segments:
            name = f"segments/{seg.name}.parquet"
            with self._reading(name):
                schemas.append(pq.read_schema(self.root / name).remove_metadata())
        if not schemas:
            return None
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise integrity.damaged(self.root, [("segments", f"column types disagree ({e})")]
                                    ) from None

    def _checksums(self, manifest: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        """Entries of every file the manifest names (computed for files that lack one)."""
        out = {}
        for rel in integrity.referenced(manifest, files):
            out[rel] = files.get(rel) or integrity.file_entry(self.root / rel)
        return out

    def _write_arrow_copy(self, name: str) -> dict[str, Any]:
        """Write the `.arrow` copy of a segment that has only its Parquet file."""
        rel = f"segments/{name}.parquet"
        with self._reading(rel):
            table = pq.ParquetFile(self.root / rel).read()
        path = self.root / "segments" / f"{name}.arrow"
        write_atomic(path, lambda f: _write_ipc(f, table))
        return {f"segments/{name}.arrow": integrity.file_entry(path)}

    def _read_manifest(self) -> dict[str, Any]:
        import json

        path = self.root / MANIFEST
        self._stamp = _stat_stamp(path)
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            self._stamp = None
            left = self._orphans()
            if left:
                raise integrity.damaged(self.root, [(MANIFEST, f"missing, but {left} data "
                                                     "file(s) remain")]) from None
            return {}
        except (OSError, ValueError) as e:
            raise integrity.damaged(self.root, [(MANIFEST, f"unreadable ({e})")]) from None
        integrity.check_manifest(manifest, self.root)
        if manifest.get("format", FORMAT) > FORMAT:
            raise MmsearchError(f"{path} was written by a newer mmsearch (format "
                                f"{manifest['format']}); upgrade mmsearch to read it")
        return manifest

    def _orphans(self) -> int:
        """Data files present in the folder (a store without a manifest should have none)."""
        seg_dir = self.root / "segments"
        n = sum(1 for f in seg_dir.iterdir() if not f.name.startswith(".")) \
            if seg_dir.is_dir() else 0
        return n + len(list(self.root.glob("deleted-*.npy"))) + len(
            list(self.root.glob("ann-*.faiss")))

    def _collect_garbage(self) -> None:
        """Delete files no manifest names (left by crashed or superseded commits)."""
        keep = {rel.split("/", 1)[1] for rel in integrity.referenced(self.manifest)
                if rel.startswith("segments/")}
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


def _as_store_types(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    """A segment's columns cast to the store's types (older segments predate a widening)."""
    if schema is None:
        return table
    for i, f in enumerate(table.schema):
        if f.name in schema.names and schema.field(f.name).type != f.type:
            table = table.set_column(i, f.name, table.column(i).cast(
                schema.field(f.name).type, safe=False))
    return table


def _write_segment(seg_dir: Path, name: str, batch: Batch, dim: int | None,
                   stamp: dict[str, Any]) -> dict[str, Any]:
    """Write a segment's two files and read them back; returns their manifest entries.

    `stamp` (model, dim, audio settings, generation) goes into the Parquet metadata, so
    `mmsearch doctor` can rebuild a lost manifest from the segments alone.
    """
    import json

    vectors = batch.vectors
    if not isinstance(vectors, LiveVectors):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors.shape) != 2 or len(vectors) != len(batch.table):
        raise ValueError("vectors must be a 2-D array with one row per table row")
    if dim and vectors.shape[1] != dim:
        raise ValueError(f"vectors have {vectors.shape[1]} dimensions; the store holds {dim}")
    table = batch.table.replace_schema_metadata(
        {**(batch.table.schema.metadata or {}),
         b"mmsearch": json.dumps(stamp, default=str).encode()})

    def write_parquet(f: io.BufferedWriter) -> None:
        pq.write_table(table, f, compression="zstd", write_page_checksum=True)

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
    write_atomic(seg_dir / f"{name}.arrow", lambda f: _write_ipc(f, batch.table))
    fsync_dir(seg_dir)
    parquet, npy = seg_dir / f"{name}.parquet", seg_dir / f"{name}.npy"
    try:  # read back what was written: a commit never names a file it cannot read
        rows = pq.read_metadata(parquet).num_rows
    except (OSError, pa.ArrowException) as e:
        raise MmsearchError(f"segment {name} unreadable right after writing: {e}") from None
    if rows != len(table):
        raise MmsearchError(f"segment {name}: {rows} rows read back, {len(table)} written")
    arrow = seg_dir / f"{name}.arrow"
    try:
        with pa.memory_map(str(arrow)) as source:
            arrow_rows = pa.ipc.open_file(source).read_all().num_rows
    except (OSError, pa.ArrowException) as e:
        raise MmsearchError(f"segment {name} unreadable right after writing: {e}") from None
    if arrow_rows != len(table):
        raise MmsearchError(f"segment {name}: {arrow_rows} rows read back, {len(table)} "
                            "written")
    return {f"segments/{name}.parquet": integrity.file_entry(parquet),
            f"segments/{name}.npy": integrity.file_entry(npy),
            f"segments/{name}.arrow": integrity.file_entry(arrow)}


def _write_ipc(f: io.BufferedWriter, table: pa.Table) -> None:
    """A table as an uncompressed Arrow IPC file (memory-mappable, zero-copy on read)."""
    with pa.ipc.new_file(f, table.schema) as writer:
        writer.write_table(table)
