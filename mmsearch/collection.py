"""The facade: one store, one model; index / upsert / delete / search."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch import config, limits
from mmsearch.audio.search import channel_counts, row_bonus
from mmsearch.audio.settings import AudioSettings, audio_query_vectors
from mmsearch.audio.space import ClapSpace
from mmsearch.catalog.embed import embed_products
from mmsearch.catalog.products import ProductColumns, Products, prepare
from mmsearch.catalog.read import read_catalog
from mmsearch.catalog.sync import CatalogReport, plan
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.registry import load_default_encoder, load_encoder, same_model
from mmsearch.errors import (
    BadMediaError,
    MmsearchError,
    ModelMismatchError,
    StoreDamagedError,
    UsageError,
)
from mmsearch.filters import compile_filters, quote_identifier
from mmsearch.index.manage import maintain
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer, IndexReport
from mmsearch.ingest.discover import is_under
from mmsearch.ingest.images import ImageTooLarge, decode_image
from mmsearch.ingest.video import (
    DEFAULT_FPS,
    DEFAULT_SCENE_THRESHOLD,
    DEFAULT_TIME_LIMIT,
    VideoOptions,
)
from mmsearch.ocr import search as ocr_search
from mmsearch.ocr.settings import OcrSettings
from mmsearch.planner import calibration as calib
from mmsearch.planner.calibration import PROBE_TEXTS, Calibration, measure
from mmsearch.planner.groups import layout
from mmsearch.planner.plan import execute
from mmsearch.planner.query import Part, Query, SortKey, parse_weights, split_negatives, text_terms
from mmsearch.planner.rerank_step import rerank_hits
from mmsearch.records import RecordBatch, as_table, to_record_batch
from mmsearch.rerank.base import Reranker
from mmsearch.rerank.registry import load_default_reranker, load_reranker
from mmsearch.results import Result, results_to_arrow
from mmsearch.store.columns import SchemaLike, as_schema
from mmsearch.store.schema import utc_naive
from mmsearch.store.snapshot import CORE_COLUMNS, HIDDEN_COLUMNS, Snapshot
from mmsearch.store.store import Batch, Store

ImageQuery = str | os.PathLike[str] | bytes | Any  # a path, raw bytes or a PIL image
MODALITIES = ("image", "video", "audio", "text")
#: Hits rescored by `rerank=True`.
DEFAULT_RERANK = 20


class Collection:
    """A searchable collection stored in one folder.

    Args:
        path: the store folder (created on first write).
        model: model spec (`ARCH:PRETRAINED`, or a registered name). None: the model the
            store was built with, else $MMSEARCH_MODEL, else the default.
        device: "cpu", "cuda", ... None: CUDA when available.
        index_params: vector index settings (an `AnnParams` or a dict of its fields, e.g.
            `{"threshold": 100_000, "nprobe": 64}`); default from `MMSEARCH_ANN_*`.
        schema: column types to fix before the first write (an Arrow schema or
            `{"price": "double", ...}`); otherwise the first write fixes them. A write whose
            values do not fit is refused whole (`SchemaError`).
    """

    def __init__(self, path: str | os.PathLike[str], model: str | None = None,
                 device: str | None = None,
                 index_params: AnnParams | Mapping[str, Any] | None = None,
                 schema: SchemaLike | None = None) -> None:
        self.path = Path(path)
        self._store = Store(self.path, as_schema(schema))
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
        self._batch = threading.local()  # search_batch's shared text embeddings
        self._cache_lock = threading.Lock()  # calibration and reranker caches
        self._reader = Store(self.path)
        self._ann_params = AnnParams.resolve(index_params)
        self._ann = None  # the IVF-PQ index in RAM, shared by snapshots and the writer
        self._calib_cache: tuple[int, Calibration] | None = None
        self._rerankers: dict[str, Reranker] = {}
        self._probe_vectors: np.ndarray | None = None
        self._check_model(self._asked_model)

    # -- model ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        """The model spec this collection embeds with (pinned by the store once written)."""
        pinned = (self._manifest().get("model") or {}).get("spec")
        written = self._manifest().get("generation") or self._manifest().get("segments")
        return pinned or self._asked_model or (None if written else
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

    @property
    def schema(self) -> pa.Schema | None:
        """Each column's Arrow type, as fixed by the first write or declared."""
        return self._store.schema or self._store.declared

    @property
    def schema_changes(self) -> list[dict[str, Any]]:
        """Columns added and types widened after the first write, oldest first."""
        return list(self._manifest().get("schema_changes", []))

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
              audio_model: str | None = None, ocr: bool | None = None,
              reprocess: bool = False) -> IndexReport:
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
        defaults (see `mmsearch.audio.settings`); the store remembers the choice. A
        channel whose model is missing is skipped (logged once, and in
        `report.skipped_channels`); files indexed without it get it on a later run once it
        is installed. `reprocess`: decode and embed every file again, changed or not.


        `ocr`: read the text in pictures and video moments (channel "ocr", columns `ocr`
        and `ocr_lines`); None: as the store was built, else on when the engine is
        installed (the `ocr` extra); remembered like the audio channels.
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
        reading = OcrSettings.resolve(self._store.manifest.get("ocr"), ocr)
        with self._lock, self._store.writer() as store:
            self._check_model(self._asked_model)
            indexer = Indexer(store, lambda: self.encoder, self._model_pin,
                              batch_size=batch_size, workers=workers, commit_every=commit_every,
                              progress=progress, video=video,
                              audio=settings.analyzer(self._device), audio_settings=settings,
                              ocr_settings=reading, reprocess=reprocess)
            report = indexer.run(roots)
            for note in report.channel_notes():
                logging.getLogger("mmsearch").warning("%s", note)
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
        """One vector per record: its own, else its image's, else its text's embedding."""
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if batch.vectors is not None and len(batch.vectors[0]):
            self._check_dim(batch.vectors[1].shape[1])
            parts.append(batch.vectors)
        if batch.paths is not None and len(batch.paths[0]):
            parts.append((batch.paths[0],
                          np.concatenate([self._embed_image(p) for p in batch.paths[1]])))
        if batch.texts is not None and len(batch.texts[0]):
            parts.append((batch.texts[0], self.encoder.encode_texts(batch.texts[1])))
        dims = {v.shape[1] for _, v in parts}
        if len(dims) != 1:
            raise UsageError(f"records' vectors have {sorted(dims)[0]} dimensions; the "
                             f"model makes {sorted(dims)[-1]}")
        out = np.empty((len(batch.ids), dims.pop()), dtype=np.float32)
        for rows, vectors in parts:
            out[rows] = vectors
        return out

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
        """Remove items whose file is one of `paths` or lies under one of them; files
        remembered as failed there are forgotten (a later index run tries them again).
        Returns the number of files removed or forgotten."""
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        with self._lock, self._store.writer() as store:
            failed = store.manifest.get("failed") or {}
            forgot = [p for p in failed if is_under(p, roots)]
            table = store.read_live_table(["key", "path"])
            keys, files = [], set()
            if "path" in table.column_names:
                for k, p in zip(table.column("key").to_pylist(),
                                table.column("path").to_pylist(), strict=True):
                    if p and is_under(p, roots):
                        keys.append(k)
                        files.add(p)
            if keys or forgot:
                extra = {"failed": {p: v for p, v in failed.items() if p not in forgot}}
                store.commit([], np.array(keys, dtype=np.int64), extra=extra)
                self._maintain_index(store)
            self._publish(store)
        return len(files) + len(forgot)

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
            store = Store(self.path)  # its own: one manifest read, never refreshed under load
            try:
                snap = Snapshot.load(store, self._ann_params, self._ann)
                self._ann = snap.ann or self._ann
                return snap
            except (FileNotFoundError, StoreDamagedError):
                if Store(self.path).generation != store.generation:
                    continue  # a commit removed files meanwhile: load the new generation
                store.verify()  # not a commit: damage, named by file
                raise
        raise MmsearchError(f"store {self.path} keeps changing under the reader; try again")

    def search(self, text: str | Sequence[str | tuple[str, float]] | None = None,
               image: ImageQuery | None = None, audio: Any = None,
               vector: Sequence[float] | np.ndarray | None = None,
               k: int = 10, where: str | None = None,
               filters: Mapping[str, Any] | None = None,
               modality: str | Sequence[str] | None = None, *,
               negative: str | Sequence[str] | None = None,
               weights: Mapping[str, float] | str | None = None, offset: int = 0,
               min_score: float | None = None, sort: str | None = None,
               fusion: str = "sum", explain: bool = False, rerank: int | bool = False,
               reranker: str | None = None) -> list[Result]:
        """Find the k best items for a text, an image, a vector, or several of them.

        Args:
            text: a text, or several texts / (text, weight) pairs; `-word` tokens in a text
                are negatives ("beach -people").
            image, vector: an example image (path, bytes, PIL) or an embedding.
            negative: text(s) whose matches are pushed down.
            where: a SQL condition over the metadata columns (trusted input); `filters`
                is a structured, injection-safe alternative (see mmsearch.filters).
            modality: "video", "image,video" or a list: only those kinds of items.
            weights: channel weights, e.g. {"visual": 1, "text": 0.5} or "text=0.5"
                (default 1 each; 0 leaves a channel out).
            offset: results to skip (paging; pages never repeat within the candidate pool).
            min_score: keep results scoring at least this (calibrated z scale, see README).
            sort: a metadata column to order by (`col`, `-col`, `col:desc`), applied to
                the results above `min_score`.
            fusion: "sum" (calibrated weighted sum, default) or "rrf" (reciprocal rank).
            explain: attach per-channel, per-part contributions to `Result.explain`.
            rerank: rescore the top N (an int; True = 20) with a cross-attention model.
            reranker: reranker spec (default $MMSEARCH_RERANKER, else "blip").

        Items with several rows (video moments, a product's photo and title) appear once;
        moments come back as their best moment (`start_s`/`end_s`).
        """
        rerank_n = _rerank_count(rerank)
        query, texts = self._parse_query(text, image, vector, negative, audio, k=k,
                                         offset=offset,
                                         min_score=min_score, sort=sort, fusion=fusion,
                                         weights=weights, explain=explain)
        if rerank_n and not texts:
            raise UsageError("reranking needs a text query")
        if query is None:
            return self._search_clap_only(audio, k, offset, where, filters)
        snap = self.snapshot()
        if len(snap) == 0:
            return []
        rows = self._filter_rows(snap, where, filters, modality)
        clap = self._clap_query(" ".join(texts) or None, audio)
        bonus = row_bonus(snap, texts, rows, clap, ClapSpace(self.path) if clap is not None
                          else None)
        bonus = ocr_search.add_bonus(bonus, snap, texts, rows)
        rerank_fn = None
        model = self._load_reranker(reranker) if rerank_n else None
        if model is not None:  # None: no reranker reachable (said once in the log)
            rerank_fn = functools.partial(rerank_hits, n=rerank_n, text=" ".join(texts),
                                          reranker=model, snap=snap)
        hits = execute(snap, query, self._calibration(snap, query), rows, rerank_fn,
                       rerank_n, bonus)
        records = snap.records(np.array([h.row for h in hits], dtype=np.int64))
        return [ocr_search.annotate(_to_result(h.score, rec, h.explain if explain else None,
                                               h.similarity), texts)
                for h, rec in zip(hits, records, strict=True)]

    def facets(self, columns: str | Sequence[str], text: str | None = None,
               image: ImageQuery | None = None,
               vector: Sequence[float] | np.ndarray | None = None, k: int = 100,
               where: str | None = None, filters: Mapping[str, Any] | None = None,
               modality: str | Sequence[str] | None = None,
               ) -> dict[str, list[tuple[Any, int]]]:
        """Counts of items per value of each column, most frequent first (DuckDB).

        With a query (text, image or vector), over its k best items (as `search` returns
        them); without one, over every item matching `where`/`filters`/`modality`.
        """
        names = [columns] if isinstance(columns, str) else list(columns)
        if not names:
            raise UsageError("give at least one facet column")
        if text is not None or image is not None or vector is not None:
            hits = self.search(text=text, image=image, vector=vector, k=k, where=where,
                               filters=filters, modality=modality)
            snap = self.snapshot()
            if not hits or not len(snap):
                return {c: [] for c in names}
            cursor = snap.sql("SELECT 1")  # this thread's cursor (a new connection is slow)
            cursor.fetchall()
            cursor.register("hits", results_to_arrow(hits))
            try:
                return {c: _facet(cursor, "hits", c, "count(*)", "TRUE", []) for c in names}
            finally:
                cursor.unregister("hits")
        snap = self.snapshot()
        if not len(snap):
            return {c: [] for c in names}
        condition, params = _condition(_with_modality(where, modality), filters)
        cursor = snap.sql("SELECT 1")  # the snapshot's per-thread cursor, `items` registered
        cursor.fetchall()
        return {c: _facet(cursor, "items", c, "count(DISTINCT id)", condition or "TRUE",
                          params) for c in names}

    def _parse_query(self, text: Any, image: ImageQuery | None, vector: Any,
                     negative: str | Sequence[str] | None, audio: Any = None, **options: Any
                     ) -> tuple[Query | None, list[str]]:
        """Embed the query parts; returns the query and its positive texts.

        An example sound (`audio`, a path) goes through the store's tags and speech channels
        as if indexed: its tags and its transcript each become a text-kind part.
        """
        terms, negatives = [], [negative] if isinstance(negative, str) else list(negative or [])
        given = text_terms(text)
        limits.check("max_query_parts", len(given) + len(negatives), "query texts")
        for term, _ in given:
            limits.check("max_text_chars", len(term), "characters in a query text")
        for term, weight in given:
            rest, minus = split_negatives(term)
            negatives += minus
            if rest:
                terms.append((rest, weight))
        if not all(isinstance(n, str) for n in negatives):
            raise UsageError("negative texts must be strings")
        for n in negatives:
            limits.check("max_text_chars", len(n), "characters in a negative text")
        negatives = [n.strip() for n in negatives if n and n.strip()]
        limits.check("max_query_parts", len(terms) + len(negatives)
                     + (image is not None) + (vector is not None) + (audio is not None),
                     "query parts (texts, negatives, image, vector)")
        texts = [t for t, _ in terms]
        embedded = self._embed_texts(texts + negatives) if texts or negatives else []
        positives = [Part("text", embedded[i], w, f"text:{t}") for i, (t, w) in
                     enumerate(terms)]
        if image is not None:
            positives.append(Part("image", self._embed_image(image)[0], 1.0, "image"))
        if vector is not None:
            v = _query_vector(vector)
            self._check_dim(v.shape[0])
            positives.append(Part("image", v / max(float(np.linalg.norm(v)), 1e-12), 1.0,
                                  "vector"))
        if audio is not None:
            settings = AudioSettings.resolve(self._store.manifest.get("audio"))
            sounds = audio_query_vectors(self.encoder, settings, audio, self._device)
            if not sounds and not positives and not ClapSpace(self.path).exists:
                raise UsageError(f"nothing in {os.fspath(audio)} to search with: no sound "
                                 "events or speech recognised, and the store has no CLAP "
                                 "space")
            if not sounds and not positives:
                return None, texts  # a query by sound answered by the CLAP space alone
            positives += [Part("text", v, 1.0, f"sound:{i}") for i, v in enumerate(sounds)]
        parts_neg = [Part("text", embedded[len(texts) + i], 1.0, f"not:{n}")
                     for i, n in enumerate(negatives)]
        sort = options.pop("sort")
        weights = parse_weights(options.pop("weights"))
        return Query(positives, parts_neg, sort=SortKey.parse(sort) if sort else None,
                     weights=weights, **options), texts

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings, from the running `search_batch`'s shared encoder batch if any."""
        memo = getattr(self._batch, "texts", None)
        if memo is not None and all(t in memo for t in texts):
            return np.stack([memo[t] for t in texts])
        return self.encoder.encode_texts(texts)

    def search_batch(self, texts: Sequence[str | None] | None = None,
                     vectors: Sequence[Sequence[float]] | np.ndarray | None = None,
                     **options: Any) -> list[list[Result]]:
        """One result list per query, the same as `search` called once per query.

        Args:
            texts: query texts (None entries: no text for that query).
            vectors: query embeddings, a 2-D array or a list (same length as `texts` when
                both are given: query i uses both).
            **options: any other `search` argument (k, filters, where, modality, ...),
                shared by every query.

        All texts (and `-negatives`) are embedded in one encoder batch and the filters are
        evaluated once (cached per snapshot); each query then runs the planner.
        """
        n_text = None if texts is None else len(texts)
        n_vec = None if vectors is None else len(vectors)
        if n_text is not None and n_vec is not None and n_text != n_vec:
            raise UsageError(f"search_batch: {n_text} texts but {n_vec} vectors")
        n = n_text if n_text is not None else n_vec
        if not n:
            return []
        if "text" in options or "vector" in options:
            raise UsageError("search_batch takes texts= and vectors=, not text= / vector=")
        wanted: list[str] = []
        for t in texts or []:
            for term, _ in text_terms(t):
                rest, minus = split_negatives(term)
                wanted += [rest, *minus] if rest else minus
        neg = options.get("negative")
        wanted += [neg] if isinstance(neg, str) else list(neg or [])
        wanted = list(dict.fromkeys(w.strip() for w in wanted if w and w.strip()))
        self._batch.texts = (dict(zip(wanted, self.encoder.encode_texts(wanted), strict=True))
                             if wanted else {})
        try:
            return [self.search(text=None if texts is None else texts[i],
                                vector=None if vectors is None else vectors[i], **options)
                    for i in range(n)]
        finally:
            self._batch.texts = None

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

    def _load_reranker(self, spec: str | None) -> Reranker | None:
        asked = spec
        spec = spec or config.reranker_spec()
        with self._cache_lock:
            if spec not in self._rerankers:
                load = load_reranker if asked else load_default_reranker
                self._rerankers[spec] = load(spec, self._device)
            return self._rerankers[spec]

    def _search_clap_only(self, audio: Any, k: int, offset: int, where: str | None,
                          filters: Mapping[str, Any] | None) -> list[Result]:
        """A sound query on a store whose only audio channel is CLAP: its hits, in order
        (score: the z-score within this search's CLAP hits)."""
        snap = self.snapshot()
        if not len(snap):
            return []
        rows = self._filter_rows(snap, where, filters)
        bonus = row_bonus(snap, [], rows, self._clap_query(None, audio), ClapSpace(self.path))
        ranked = sorted(bonus.items(), key=lambda rz: -rz[1])[offset:offset + k]
        records = snap.records(np.array([r for r, _ in ranked], dtype=np.int64))
        return [_to_result(z, rec) for (_, z), rec in zip(ranked, records, strict=True)]

    def _clap_query(self, text: str | None, audio: Any) -> np.ndarray | None:
        """The query in the CLAP space when the store has one (text, or the sound's first
        10 s), else None."""
        spec = (self._store.manifest.get("audio") or {}).get("clap")
        if not spec or not ClapSpace(self.path).exists or (audio is None and not text):
            return None
        settings = AudioSettings.resolve(self._store.manifest.get("audio"))
        clap = settings.analyzer(self._device).clap
        if audio is not None:
            return clap.embed_file(os.fspath(audio), [(0.0, 10.0)])[0]
        return clap.embed_texts([text])[0]

    def _embed_image(self, image: ImageQuery) -> np.ndarray:
        from PIL import Image

        encoder = self.encoder
        if isinstance(image, Image.Image):
            pil = image.convert("RGB")
        else:
            if isinstance(image, bytes):
                data = image
            else:
                try:
                    data = Path(image).read_bytes()
                except OSError as e:
                    raise UsageError(f"cannot read image {image}: {e.strerror or e}") from None
            try:
                pil = decode_image(data, config.MAX_IMAGE_PIXELS,
                                   2 * (encoder.image_size or 0)).image
            except ImageTooLarge as e:
                raise limits.over("max_image_pixels", e.pixels, e.limit,
                                  "pixels of the query image") from None
            except BadMediaError as e:
                raise UsageError(f"cannot use image {image!r:.80}: {e}") from None
        return encoder.encode_images(encoder.preprocess(pil)[None])

    @staticmethod
    def _filter_rows(snap: Snapshot, where: str | None, filters: Mapping[str, Any] | None,
                     modality: str | Sequence[str] | None = None) -> np.ndarray | None:
        """Rows allowed by `where`, `filters` and `modality` (None: all). Structured filters
        alone are evaluated on the column arrays and cached per snapshot; SQL otherwise."""
        names = _modality_names(modality)
        if not where and (filters or names):
            if filters:
                compile_filters(filters)  # validates values and limits (UsageError/LimitError)
            clauses = list((filters or {}).items())
            if names:
                clauses.append(("modality", {"in": names}))
            rows = snap.filter_rows(clauses)
            if rows is not None:
                return rows
        condition, params = _condition(_with_modality(where, modality), filters)
        return None if condition is None else snap.matching_rows(condition, params)

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
                "audio": manifest.get("audio"), "ocr": manifest.get("ocr"),
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


def _condition(where: str | None, filters: Mapping[str, Any] | None
               ) -> tuple[str | None, list[Any]]:
    """One SQL condition (None: no condition) and its parameters from a trusted `where`
    string and injection-safe structured `filters`."""
    clauses, params = [], []
    if where:
        clauses.append(f"({where})")
    if filters:
        sql, values = compile_filters(filters)
        clauses.append(f"({sql})")
        params.extend(values)
    return (" AND ".join(clauses) if clauses else None), params


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


def _query_vector(vector: Any) -> np.ndarray:
    """A query vector as finite, non-zero float32 numbers (UsageError otherwise)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise UsageError("the query vector must be a list of numbers") from None
    with np.errstate(over="ignore", invalid="ignore"):
        if not len(v) or not np.isfinite(v).all() or not np.isfinite(np.linalg.norm(v)) \
                or not np.any(v):
            raise UsageError("the query vector must hold finite numbers, not all zero "
                             "(NaN, Inf or overflow given)")
    return v


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _modality_names(modality: str | Sequence[str] | None) -> list[str]:
    """Validated modality names ([] when none asked)."""
    if modality is None:
        return []
    names = modality.split(",") if isinstance(modality, str) else list(modality)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    bad = [n for n in names if n not in MODALITIES]
    if bad or not names:
        raise UsageError(f"unknown modality {', '.join(bad) or repr(modality)}; "
                         f"choose from {', '.join(MODALITIES)}")
    return names


def _with_modality(where: str | None, modality: str | Sequence[str] | None) -> str | None:
    """`where` with a condition on the `modality` column added (names are validated)."""
    names = _modality_names(modality)
    if not names:
        return where
    clause = "modality IN (" + ", ".join(f"'{n}'" for n in names) + ")"
    return f"({where}) AND {clause}" if where else clause


def _rerank_count(rerank: int | bool) -> int:
    """`rerank=` as a number of hits (True: DEFAULT_RERANK, False/0: none)."""
    if rerank is True:
        return DEFAULT_RERANK
    if rerank is False or rerank is None:
        return 0
    if not isinstance(rerank, int) or rerank < 0:
        raise UsageError(f"rerank must be a number of results >= 0, not {rerank!r}")
    return rerank


def _to_result(score: float, record: dict[str, Any], explain: dict[str, Any] | None = None,
               similarity: float | None = None) -> Result:
    meta = {k: v for k, v in record.items() if k not in HIDDEN_COLUMNS and k not in CORE_COLUMNS}
    return Result(id=str(record["id"]), path=record.get("path"),
                  modality=record.get("modality") or "image", score=score,
                  start_s=record.get("start_s"), end_s=record.get("end_s"), metadata=meta,
                  explain=explain, similarity=similarity)


def open(store: str | os.PathLike[str] | None = None, model: str | None = None,
         device: str | None = None,
         index_params: AnnParams | Mapping[str, Any] | None = None,
         schema: SchemaLike | None = None, *,
         shards: int | None = None, ray: str | None = None) -> Collection:
    """Open (or prepare to create) a collection; see `Collection`.

    `shards`: create the store with N shards (`mmsearch.shards`); a sharded store opens as
    one by itself. `ray`: search its shards on Ray actors (`local`, `auto` or an address;
    needs `pip install mmsearch[ray]`).
    """
    path = config.store_path(store)
    from mmsearch.shards.layout import is_sharded

    if shards is not None or ray is not None or is_sharded(path):
        from mmsearch.shards import open_sharded

        return open_sharded(path, model=model, device=device,  # type: ignore[return-value]
                            index_params=index_params, shards=shards, ray=ray)
    return Collection(path, model=model, device=device, index_params=index_params,
                      schema=schema)

