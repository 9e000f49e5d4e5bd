"""The facade: one store, one model; index / upsert / delete / search."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch import config
from mmsearch.audio.search import channel_counts
from mmsearch.audio.settings import AudioSettings
from mmsearch.audio.space import ClapSpace
from mmsearch.catalog.embed import embed_products
from mmsearch.catalog.products import ProductColumns, Products, prepare
from mmsearch.catalog.read import read_catalog
from mmsearch.catalog.sync import CatalogReport, plan
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.media import embed_image
from mmsearch.encoders.registry import load_default_encoder, load_encoder, same_model
from mmsearch.errors import MmsearchError, ModelMismatchError, UsageError
from mmsearch.filters import quote_identifier
from mmsearch.index.manage import maintain
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer, IndexReport
from mmsearch.ingest.discover import is_under
from mmsearch.ingest.video import (
    DEFAULT_FPS,
    DEFAULT_SCENE_THRESHOLD,
    DEFAULT_TIME_LIMIT,
    VideoOptions,
)
from mmsearch.planner import calibration as calib
from mmsearch.planner.calibration import PROBE_TEXTS, Calibration, measure
from mmsearch.planner.groups import layout
from mmsearch.planner.query import Query
from mmsearch.planner.search import Search, SearchEnv
from mmsearch.records import RecordBatch, as_table, to_record_batch
from mmsearch.request import SearchRequest
from mmsearch.rerank.base import Reranker
from mmsearch.rerank.registry import load_default_reranker, load_reranker
from mmsearch.results import Result, results_to_arrow
from mmsearch.store.schema import utc_naive
from mmsearch.store.snapshot import HIDDEN_COLUMNS, Snapshot
from mmsearch.store.store import Batch, Store


class Collection:
    """A searchable collection stored in one folder.

    Args:
        path: the store folder (created on first write).
        model: model spec (`ARCH:PRETRAINED`, or a registered name). None: the model the
            store was built with, else $MMSEARCH_MODEL, else the default.
        device: "cpu", "cuda", ... None: CUDA when available.
        index_params: vector index settings (an `AnnParams` or a dict of its fields, e.g.
            `{"threshold": 100_000, "nprobe": 64}`); default from `MMSEARCH_ANN_*`.
    """

    def __init__(self, path: str | os.PathLike[str], model: str | None = None,
                 device: str | None = None,
                 index_params: AnnParams | Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._store = Store(self.path)
        self._asked_model = config.model_spec(model)
        self._device = config.device_name(device)
        self._encoder: Encoder | None = None
        self._snapshot: Snapshot | None = None
        # Writers hold `_lock` for the length of a write; readers never take it. Readers
        # watch the manifest through their own `Store` (`_reader`), so a writer's
        # in-progress manifest is never clobbered; after a write the writer loads the new
        # immutable `Snapshot` and swaps it in (`_publish`); a reader that sees a commit
        # first loads it under `_load_lock` while the other readers keep the old view.
        self._lock = threading.RLock()
        self._snap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._encoder_lock = threading.Lock()
        self._cache_lock = threading.Lock()  # calibration and reranker caches
        self._reader = Store(self.path)
        self._ann_params = AnnParams.resolve(index_params)
        self._ann = None  # the IVF-PQ index in RAM, shared by snapshots and the writer
        self._calib_cache: tuple[int, Calibration] | None = None
        self._rerankers: dict[str, Reranker] = {}
        self._probe_vectors: np.ndarray | None = None
        self._env = SearchEnv(self.path, lambda: self.encoder, self._calibration,
                              self._load_reranker, self._manifest, self._device)
        self._check_model(self._asked_model)

    # -- model ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        """The model spec this collection embeds with (pinned by the store once written)."""
        pinned = (self._manifest().get("model") or {}).get("spec")
        return pinned or self._asked_model or (None if self._manifest() else
                                               config.DEFAULT_MODEL)

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        encoder = self._encoder
        if encoder is not None:
            return encoder
        with self._encoder_lock:
            if self._encoder is None:
                spec = self.model
                if spec is None:
                    raise UsageError(f"store {self.path} holds precomputed vectors without a "
                                     "model; query it with vector=..., or create it with "
                                     "mmsearch.open(store, model=...)")
                if spec == config.DEFAULT_MODEL and not self._asked_model \
                        and not self._manifest().get("model"):
                    self._encoder = load_default_encoder(spec, self._device)
                else:
                    self._encoder = load_encoder(spec, self._device)
                self._check_dim(self._encoder.dim)
            return self._encoder

    def _manifest(self) -> dict[str, Any]:
        """The newest manifest seen, by the writer's or the readers' `Store`."""
        writer, reader = self._store.manifest, self._reader.manifest
        return writer if writer.get("generation", 0) >= reader.get("generation", 0) else reader

    def _check_model(self, asked: str | None) -> None:
        pinned = (self._manifest().get("model") or {}).get("spec")
        if asked and pinned and not same_model(pinned, asked):
            raise ModelMismatchError(
                f"store {self.path} was built with model {pinned!r}, not {asked!r}; "
                "leave out --model to use the store's model, or pick another --store")

    def _check_dim(self, dim: int) -> None:
        pinned = self._manifest().get("dim")
        if pinned and int(pinned) != dim:
            raise ModelMismatchError(f"store {self.path} holds {pinned}-d vectors; "
                                     f"this model makes {dim}-d vectors")

    def _model_pin(self, encoder: Encoder) -> dict[str, Any]:
        return {"spec": encoder.spec, "dim": encoder.dim}

    # -- writing ----------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike[str]], *, progress: bool | None = None,
              batch_size: int = config.BATCH_SIZE, workers: int | None = None,
              commit_every: int = config.COMMIT_EVERY, fps: float = DEFAULT_FPS,
              scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
              video_time_limit: float = DEFAULT_TIME_LIMIT, tags: bool | None = None,
              speech: bool | None = None, whisper: str | None = None,
              audio_model: str | None = None) -> IndexReport:
        """Index files and folders recursively; re-runs are incremental.

        Unchanged files are skipped without decoding, renamed files keep their vectors
        (matched by content hash), deleted files leave the store, bad files are reported
        in the returned report and never stop the run.

        Videos become moments: `fps` frames sampled per second, a sampled frame kept when
        its 32x32 grayscale thumbnail differs from the last kept one by more than
        `scene_threshold` (mean abs difference, 0-255); `video_time_limit` seconds of
        decoding per file at most (what was decoded by then is kept and reported).

        Audio files and the sound of videos: `tags` (YAMNet sound events), `speech`
        (Whisper transcripts; `whisper` names the model) and `audio_model` (a CLAP model in
        its own space, off by default). None: what the store was built with, else the
        defaults (see `mmsearch.audio.settings`); the store remembers the choice.
        """
        try:
            video = VideoOptions(fps, scene_threshold, video_time_limit)
        except ValueError as e:
            raise UsageError(str(e)) from None
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        missing = [p for p in roots if not os.path.exists(p)]
        if missing:
            raise UsageError(f"no such file or folder: {', '.join(missing)}")
        settings = AudioSettings.resolve(self._store.manifest.get("audio"), tags=tags,
                                         speech=speech, whisper=whisper, clap=audio_model)
        with self._lock, self._store.writer() as store:
            self._check_model(self._asked_model)
            indexer = Indexer(store, lambda: self.encoder, self._model_pin,
                              batch_size=batch_size, workers=workers, commit_every=commit_every,
                              progress=progress, video=video,
                              audio=settings.analyzer(self._device), audio_settings=settings)
            report = indexer.run(roots)
            self._maintain_index(store)
            self._publish(store)
        return report

    def upsert(self, records: Any) -> int:
        """Insert or replace items by `id` in one atomic commit; returns the rows written.

        `records`: a list of dicts, a pandas DataFrame or an Arrow table with an `id`
        column and either a `vector` column (precomputed embeddings, the fast path), a
        `path` column (images to embed) or a `text` column (texts to embed). Every other
        column is kept as filterable metadata. With both `path` and `text` (and no
        `vector`), each record is a product, as in `index_catalog`: a "visual" and a "text"
        row under its id, unchanged records skipped; a bad image fails the whole call.
        """
        table = as_table(records)
        names = set(table.column_names)
        if {"path", "text"} <= names and "vector" not in names:  # products: image + text rows
            products = prepare(table, ProductColumns("id", "path", ("text",)), os.getcwd())
            return self._sync_products(products, strict=True).rows_written
        batch = to_record_batch(table)
        vectors = self._record_vectors(batch)
        with self._lock, self._store.writer() as store:
            old_keys = self._keys_of_ids(store, batch.ids)
            keys = store.allocate_keys(len(batch.table))
            table = batch.table.add_column(0, "key", pa.array(keys, pa.int64()))
            model = None if store.model else {
                "spec": self._encoder.spec if self._encoder else self._asked_model,
                "dim": vectors.shape[1]}
            store.commit([Batch(table, vectors)], old_keys, model=model,
                         dim=None if store.manifest.get("dim") else vectors.shape[1])
            self._maintain_index(store)
            self._publish(store)
        return len(table)

    def index_catalog(self, path: str | os.PathLike[str], *, id_col: str = "id",
                      image_col: str | None = None, text_cols: Sequence[str] = (),
                      delete_missing: bool = False, batch_size: int = config.BATCH_SIZE,
                      commit_every: int = config.COMMIT_EVERY) -> CatalogReport:
        """Sync a product catalog (CSV/TSV, Parquet or JSON Lines) into the collection.

        Each product gets a "visual" row (the image in `image_col`, a path relative to the
        catalog file) and a "text" row (`text_cols` joined), both under the id in `id_col`;
        every other column is kept as typed, filterable metadata. Products whose values and
        image file (size, mtime) are unchanged are skipped without embedding; changed ones
        are replaced atomically; with `delete_missing`, catalog products absent from this
        file are deleted. Rows with a bad or remote image are reported, the rest go on.
        """
        table = read_catalog(path)
        cols = ProductColumns(id_col, image_col, tuple(text_cols))
        products = prepare(table, cols, Path(path).resolve().parent)
        return self._sync_products(products, delete_missing=delete_missing,
                                   batch_size=batch_size, commit_every=commit_every)

    def _sync_products(self, products: Products, *, delete_missing: bool = False,
                       strict: bool = False, batch_size: int = config.BATCH_SIZE,
                       commit_every: int | None = None) -> CatalogReport:
        """Embed new/changed products and commit them (each chunk atomically).

        `strict`: any failed product raises UsageError and nothing is written.
        """
        if strict and products.failed:
            raise UsageError(_failures(products.failed))
        report = CatalogReport(failed=list(products.failed))
        with self._lock, self._store.writer() as store:
            self._check_model(self._asked_model)
            sync = plan(products, store.read_live_table(["key", "id", "row_hash"]))
            report.unchanged = sync.unchanged
            todo = sync.todo
            step = max(1, commit_every or len(todo.ids) or 1)
            for lo in range(0, len(todo.ids), step):
                chunk = todo.take(range(lo, min(lo + step, len(todo.ids))))
                encoder = self.encoder
                rows, vectors, failed = embed_products(chunk, encoder, batch_size)
                if strict and failed:
                    raise UsageError(_failures(failed))
                report.failed += failed
                ids = list(dict.fromkeys(rows.column("id").to_pylist()))
                if not ids:
                    continue
                old_keys = self._keys_of_ids(store, ids)
                rows = rows.add_column(0, "key", pa.array(store.allocate_keys(len(rows))))
                rows = rows.append_column("indexed_at", pa.array([utc_naive()] * len(rows),
                                                                  pa.timestamp("us")))
                store.commit([Batch(rows, vectors)], old_keys,
                             model=None if store.model else self._model_pin(encoder),
                             dim=None if store.manifest.get("dim") else encoder.dim)
                report.added += sum(i in sync.added for i in ids)
                report.updated += sum(i not in sync.added for i in ids)
                report.rows_written += len(rows)
            if delete_missing and sync.missing:
                keys = self._keys_of_ids(store, sync.missing)
                store.commit([], keys)
                report.deleted = len(sync.missing)
            self._maintain_index(store)
            self._publish(store)
        return report

    def _record_vectors(self, batch: RecordBatch) -> np.ndarray:
        if batch.vectors is not None:
            self._check_dim(batch.vectors.shape[1])
            return batch.vectors
        if batch.paths is not None:
            return np.concatenate([embed_image(self.encoder, p) for p in batch.paths])
        if batch.texts is not None:
            return self.encoder.encode_texts(batch.texts)
        raise UsageError("records need a `vector`, `path` or `text` column to embed")

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items (all their rows) by id; returns the number of rows removed."""
        ids = [str(i) for i in ids]
        with self._lock, self._store.writer() as store:
            keys = self._keys_of_ids(store, ids)
            if len(keys):
                store.commit([], keys)
                self._maintain_index(store)
            self._publish(store)
        return len(keys)

    def remove_paths(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove items whose file is one of `paths` or lies under one of them."""
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        with self._lock, self._store.writer() as store:
            table = store.read_live_table(["key", "path"])
            if "path" not in table.column_names:
                return 0
            keys = [k for k, p in zip(table.column("key").to_pylist(),
                                      table.column("path").to_pylist(), strict=True)
                    if p and is_under(p, roots)]
            if keys:
                store.commit([], np.array(keys, dtype=np.int64))
                self._maintain_index(store)
            self._publish(store)
        return len(keys)

    def _maintain_index(self, store: Store, force: bool = False) -> None:
        """Train, update or save the IVF-PQ index after a write (inside the writer lock)."""
        self._ann = maintain(store, self._ann_params, self._ann, force=force)
        if self._encoder is not None and self._probe_vectors is None:
            self._probe_vectors = self._encoder.encode_texts(list(PROBE_TEXTS))
        calib.update_store(store, self._probe_vectors)

    def rebuild_index(self) -> dict[str, Any]:
        """Retrain the vector index from scratch now (IVF-PQ from `threshold` rows on).

        Retraining also happens by itself once the collection grew `growth` times past the
        rows the index was trained on. Returns the index description (see `info()`).
        """
        with self._lock, self._store.writer() as store:
            self._maintain_index(store, force=True)
            self._publish(store)
        return self.info()["index_params"]

    @staticmethod
    def _keys_of_ids(store: Store, ids: Sequence[str]) -> np.ndarray:
        table = store.read_live_table(["key", "id"])
        if not len(table) or not ids:
            return np.zeros(0, dtype=np.int64)
        # hash lookup in Arrow: np.isin on object arrays is quadratic (minutes at 1M ids)
        mask = pc.is_in(table.column("id"), value_set=pa.array(list(ids), pa.string()))
        return table.column("key").to_numpy()[mask.to_numpy(zero_copy_only=False)]

    # -- reading ----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The current consistent view (reloaded when a writer committed).

        Never waits for a write in progress: until its commit, the previous view is served.
        While one thread loads a newer generation, the others keep the previous view
        instead of waiting for the load (only the very first load is waited for).
        """
        with self._snap_lock:  # short: a stat of the manifest
            self._reader.refresh()
            generation = self._reader.generation
            snap = self._snapshot
        if snap is not None and snap.generation >= generation:
            return snap
        if not self._load_lock.acquire(blocking=snap is None):
            return snap  # type: ignore[return-value] - another thread is loading
        try:
            current = self._snapshot
            if current is not None and current.generation >= generation:
                return current  # loaded or published meanwhile
            loaded = self._load_snapshot()
            with self._snap_lock:
                if self._snapshot is None or self._snapshot.generation < loaded.generation:
                    self._snapshot = loaded
                return self._snapshot
        finally:
            self._load_lock.release()

    def _publish(self, store: Store) -> None:
        """After a write (inside the writer lock): load the new view, build its index, and
        swap it in, so readers go on with the old view meanwhile and never load it
        themselves."""
        if not store.exists:
            return
        snap = Snapshot.load(store, self._ann_params, self._ann)
        if len(snap):
            snap.index  # noqa: B018 - build the exact index now, not on the first search
        with self._snap_lock:
            if self._snapshot is None or self._snapshot.generation <= snap.generation:
                self._snapshot = snap

    def _load_snapshot(self) -> Snapshot:
        for _ in range(5):  # a concurrent compaction may remove files between reads
            try:  # its own Store: one manifest read, never refreshed under the load
                snap = Snapshot.load(Store(self.path), self._ann_params, self._ann)
                self._ann = snap.ann or self._ann
                return snap
            except FileNotFoundError:
                continue
        raise MmsearchError(f"store {self.path} keeps changing under the reader; try again")

    def search(self, request: SearchRequest | str | Sequence[Any] | None = None, /,
               **options: Any) -> list[Result]:
        """Find the k best items for a text, an image, a sound, a vector, or several.

        Takes a `SearchRequest`, or builds one from keyword arguments (the same names; see
        `mmsearch.request.SearchRequest` for every option and its limits), e.g.
        `col.search(text="red shoe", k=5, filters={"price": {"lte": 50}})`. A first
        positional argument that is not a request is the `text`. The main options:

            text: a text, or several texts / (text, weight) pairs; `-word` tokens are
                negatives ("beach -people"). negative: more texts to push down.
            image, audio, vector: an example image (path, bytes, PIL), sound (path) or
                embedding.
            k, offset: the page. where (trusted SQL), filters (structured, safe), modality:
                which rows count. weights, fusion, min_score, sort, explain: scoring and
                presentation. rerank (a count; True = 20), reranker (a spec).

        Items with several rows (video moments, a product's photo and title) appear once;
        moments come back as their best moment (`start_s`/`end_s`).
        """
        if request is not None and not isinstance(request, SearchRequest):
            options = {"text": request, **options}
            request = None
        req = SearchRequest.build(request, **options)
        return Search(self.snapshot(), req, self._env).run()

    def facets(self, columns: str | Sequence[str], request: SearchRequest | None = None, /,
               **options: Any) -> dict[str, list[tuple[Any, int]]]:
        """Counts of items per value of each column, most frequent first (DuckDB).

        With a query (text, image, audio or vector; a `SearchRequest` or the keyword
        arguments of `search`, k defaulting to 100), over its k best items as `search`
        returns them; without one, over every item matching `where`/`filters`/`modality`.
        """
        names = [columns] if isinstance(columns, str) else list(columns)
        if not names:
            raise UsageError("give at least one facet column")
        if request is None:
            options.setdefault("k", 100)
        req = SearchRequest.build(request, **options)
        snap = self.snapshot()
        if req.has_query():
            hits = Search(snap, req, self._env).run()
            if not hits or not len(snap):
                return {c: [] for c in names}
            cursor = snap.sql("SELECT 1")  # this thread's cursor (a new connection is slow)
            cursor.fetchall()
            cursor.register("hits", results_to_arrow(hits))
            try:
                return {c: _facet(cursor, "hits", c, "count(*)", "TRUE", []) for c in names}
            finally:
                cursor.unregister("hits")
        if not len(snap):
            return {c: [] for c in names}
        cond, params = req.condition()
        cursor = snap.sql("SELECT 1")  # the snapshot's per-thread cursor, `items` registered
        cursor.fetchall()
        return {c: _facet(cursor, "items", c, "count(DISTINCT id)", cond or "TRUE",
                          params) for c in names}

    def _calibration(self, snap: Snapshot, query: Query) -> Calibration:
        """The store's calibration; pairs it lacks measured now (once per generation)."""
        stored = Calibration.from_json(self._store.manifest.get("calibration"))
        kinds = {p.kind for p in query.positives + query.negatives}
        lay = layout(snap)
        wanted = {(kd, c) for kd in kinds for c in lay.names}
        if wanted <= set(stored.stats):
            return stored
        with self._cache_lock:
            cached = self._calib_cache
            if cached is None or cached[0] != snap.generation:
                probes = self.encoder.encode_texts(list(PROBE_TEXTS)) \
                    if "text" in kinds and self.model else None
                cached = (snap.generation, measure(snap.vectors, lay.channel, lay.item, probes))
                self._calib_cache = cached
        return stored.merged(cached[1])

    def _load_reranker(self, spec: str | None) -> Reranker:
        asked = spec
        spec = spec or config.reranker_spec()
        with self._cache_lock:
            if spec not in self._rerankers:
                load = load_reranker if asked else load_default_reranker
                self._rerankers[spec] = load(spec, self._device)
            return self._rerankers[spec]

    def info(self) -> dict[str, Any]:
        """What the store holds: model, counts per modality, index type, size on disk."""
        snap = self.snapshot()
        counts: dict[str, int] = {}
        items = 0
        if len(snap):
            for mod, n in snap.sql("SELECT modality, count(DISTINCT id) FROM items "
                                   "GROUP BY 1 ORDER BY 1").fetchall():
                counts[str(mod)] = int(n)
            items = int(snap.sql("SELECT count(DISTINCT id) FROM items").fetchone()[0])
        manifest = self._reader.manifest
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) \
            if self.path.exists() else 0
        return {"store": str(self.path.resolve()), "model": (manifest.get("model") or {}).get(
                    "spec"), "dim": manifest.get("dim"), "items": items, "vectors": len(snap),
                "modalities": counts, "channels": self._channels(snap),
                "audio": manifest.get("audio"),
                "index": snap.index.kind if len(snap) else "none",
                "index_params": snap.index.describe() if len(snap) else {},
                "segments": len(manifest.get("segments", [])),
                "generation": manifest.get("generation", 0), "bytes_on_disk": size,
                "columns": [c for c in snap.table.column_names if c not in HIDDEN_COLUMNS]}

    def _channels(self, snap: Snapshot) -> dict[str, int]:
        """Vectors per channel; "clap" counts the CLAP side space's vectors."""
        counts = channel_counts(snap)
        space = ClapSpace(self.path)
        if space.exists:
            counts["clap"] = int(space.store.manifest.get("rows") or 0)
        return counts

    def __len__(self) -> int:
        """Number of items (moments of one file count once)."""
        snap = self.snapshot()
        if not len(snap):
            return 0
        return int(snap.sql("SELECT count(DISTINCT id) FROM items").fetchone()[0])

    def close(self) -> None:
        """Release the model and cached data."""
        with self._snap_lock, self._encoder_lock:
            self._snapshot = None
            self._encoder = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, model={self.model!r})"


def _facet(con: duckdb.DuckDBPyConnection, table: str, column: str, count: str, where: str,
           params: list[Any]) -> list[tuple[Any, int]]:
    col = quote_identifier(column)
    try:
        rows = con.execute(f"SELECT {col}, {count} AS n FROM {table} WHERE {where} "
                           f"GROUP BY 1 ORDER BY n DESC, 1 NULLS LAST", params).fetchall()
    except duckdb.Error as e:
        raise UsageError(f"bad facet {column!r} or filter: {str(e).splitlines()[0]}") from None
    return [(value, int(n)) for value, n in rows]


def _failures(failed: list[tuple[str, str]]) -> str:
    shown = "; ".join(f"{i}: {e}" for i, e in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return f"{len(failed)} record(s) cannot be used, nothing written: {shown}{more}"


def open(store: str | os.PathLike[str] | None = None, model: str | None = None,
         device: str | None = None,
         index_params: AnnParams | Mapping[str, Any] | None = None) -> Collection:
    """Open (or prepare to create) a collection; see `Collection`."""
    return Collection(config.store_path(store), model=model, device=device,
                      index_params=index_params)

