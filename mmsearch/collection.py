"""The facade: one store, one model; index / upsert / delete / search."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch import config
from mmsearch.audio.search import channel_counts
from mmsearch.catalog.products import ProductColumns, Products, prepare
from mmsearch.catalog.read import read_catalog
from mmsearch.catalog.sync import CatalogReport, sync_products
from mmsearch.channels import channels, index_options
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.media import embed_image
from mmsearch.encoders.registry import load_default_encoder, load_encoder, same_model
from mmsearch.errors import MmsearchError, ModelMismatchError, StoreDamagedError, UsageError
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer, IndexReport, index_inputs
from mmsearch.ingest.discover import is_under
from mmsearch.ingest.video import (
    DEFAULT_FPS,
    DEFAULT_SCENE_THRESHOLD,
)
from mmsearch.planner import calibration as calib
from mmsearch.planner import hubness, lean
from mmsearch.planner.calibration import PROBE_TEXTS, Calibration, measure
from mmsearch.planner.facets import hit_facets, row_facets
from mmsearch.planner.groups import layout
from mmsearch.planner.query import Query, split_negatives, text_terms
from mmsearch.planner.search import Search, SearchEnv
from mmsearch.records import RecordBatch, as_table, to_record_batch
from mmsearch.request import SearchRequest
from mmsearch.rerank.base import Reranker
from mmsearch.rerank.registry import load_default_reranker, load_reranker
from mmsearch.results import Result, batch_table
from mmsearch.store.columns import SchemaLike, as_schema
from mmsearch.store.rows import keys_of_ids, replace_rows
from mmsearch.store.store import Store
from mmsearch.view.ann import maintain
from mmsearch.view.snapshot import HIDDEN_COLUMNS, Snapshot
from mmsearch.writes import Writes


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
        # Writes run one at a time (`_writes`, mmsearch/writes.py); readers never wait. Readers
        # watch the manifest through their own `Store` (`_reader`), so a writer's
        # in-progress manifest is never clobbered; after a write the writer loads the new
        # immutable `Snapshot` and swaps it in (`_publish`); a reader that sees a commit
        # first loads it under `_load_lock` while the other readers keep the old view.
        self._writes = Writes(self._store, lambda: self._check_model(self._asked_model),
                              self._maintain_index, self._publish)
        self._lock = self._writes.lock
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
        self._env = SearchEnv(self.path, lambda: self.encoder, self._calibration,
                              self._load_reranker, self._manifest, self._device,
                              self._embed_texts)
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
              commit_every: int | None = None, fps: float = DEFAULT_FPS,
              scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
              video_time_limit: float | None = None, reprocess: bool = False,
              **channel_options: Any) -> IndexReport:
        """Index files and folders recursively; re-runs are incremental.

        Unchanged files are skipped without decoding, renamed files keep their vectors
        (matched by content hash), deleted files leave the store, bad files are reported
        in the returned report and never stop the run.

        Videos become moments: `fps` frames sampled per second, a sampled frame kept when
        its 32x32 grayscale thumbnail differs from the last kept one by more than
        `scene_threshold` (mean abs difference, 0-255); `video_time_limit` seconds of
        decoding per file at most (what was decoded by then is kept and reported; default
        $MMSEARCH_VIDEO_TIME_LIMIT, else 900). `commit_every`: rows per atomic commit
        (default $MMSEARCH_COMMIT_EVERY, else 512).

        `channel_options` go to the optional channels (`mmsearch.channels`). Audio files
        and the sound of videos: `tags` (YAMNet sound events), `speech` (Whisper
        transcripts; `whisper` names the model) and `audio_model` (a CLAP model in its own
        space, off by default). None: what the store was built with, else the defaults
        (see `mmsearch.audio.settings`); the store remembers the choice. A channel whose
        model is missing is skipped (logged once, and in `report.skipped_channels`); files
        indexed without it get it on a later run once it is installed. `reprocess`: decode
        and embed every file again, changed or not. `ocr`: read the text in pictures and
        video moments (channel "ocr"); None: as the store was built, else on when the
        engine is installed.
        """
        unknown = set(channel_options) - index_options()
        if unknown:
            raise UsageError(f"unknown index option(s) {', '.join(sorted(unknown))}; the "
                             f"channels take {', '.join(sorted(index_options()))}")
        video, roots = index_inputs(paths, fps, scene_threshold, video_time_limit)
        manifest = self._store.manifest
        hooks = {k: v for c in channels() for k, v in
                 c.indexing(manifest, channel_options, self._device).items()}
        with self._writes.transaction() as store:
            indexer = Indexer(store, lambda: self.encoder, self._model_pin,
                              batch_size=batch_size, workers=workers, commit_every=commit_every,
                              progress=progress, video=video, reprocess=reprocess,
                              **hooks)
            report = indexer.run(roots)
            for note in report.channel_notes():
                logging.getLogger("mmsearch").warning("%s", note)
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
        model = {"spec": self._encoder.spec if self._encoder else self._asked_model,
                 "dim": vectors.shape[1]}
        with self._writes.transaction(check=False) as store:
            replace_rows(store, batch.table, vectors, keys_of_ids(store, batch.ids), model)
        return len(batch.table)

    def index_catalog(self, path: str | os.PathLike[str], *, id_col: str = "id",
                      image_col: str | None = None, text_cols: Sequence[str] = (),
                      delete_missing: bool = False, batch_size: int = config.BATCH_SIZE,
                      commit_every: int | None = None) -> CatalogReport:
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
                                   batch_size=batch_size,
                                   commit_every=config.commit_every(commit_every))

    def _sync_products(self, products: Products, *, delete_missing: bool = False,
                       strict: bool = False, batch_size: int = config.BATCH_SIZE,
                       commit_every: int | None = None) -> CatalogReport:
        with self._writes.transaction() as store:
            return sync_products(store, products, lambda: self.encoder,
                                 delete_missing=delete_missing, strict=strict,
                                 batch_size=batch_size, commit_every=commit_every)

    def _record_vectors(self, batch: RecordBatch) -> np.ndarray:
        """One vector per record: its own, else its image's, else its text's embedding."""
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if batch.vectors is not None and len(batch.vectors[0]):
            self._check_dim(batch.vectors[1].shape[1])
            parts.append(batch.vectors)
        if batch.paths is not None and len(batch.paths[0]):
            parts.append((batch.paths[0],
                          np.concatenate([embed_image(self.encoder, p) for p in batch.paths[1]])))
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
        with self._writes.transaction(always_maintain=False, check=False) as store:
            keys = keys_of_ids(store, ids)
            if len(keys):
                store.commit([], keys)
        return len(keys)

    def remove_paths(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove items whose file is one of `paths` or lies under one of them; files
        remembered as failed there are forgotten (a later index run tries them again).
        Returns the number of files removed or forgotten."""
        roots = [os.path.abspath(os.fspath(p)) for p in paths]
        with self._writes.transaction(always_maintain=False, check=False) as store:
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
        with self._writes.transaction(force_index=True, check=False):
            pass
        return self.info()["index_params"]

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
        plain = lean.from_options(options) if request is None else None
        if plain is not None:  # a vector alone: one index call (mmsearch.planner.lean)
            found = lean.search(self.snapshot(), plain, self._env)
            if found is not None:
                return found[0]
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
            return hit_facets(snap, names, Search(snap, req, self._env).run())
        return row_facets(snap, names, *req.condition())

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings, from the running `search_batch`'s shared encoder batch if any."""
        memo = getattr(self._batch, "texts", None)
        if memo is not None and all(t in memo for t in texts):
            return np.stack([memo[t] for t in texts])
        return self.encoder.encode_texts(texts)

    def search_batch(self, texts: Sequence[str | None] | None = None,
                     vectors: Sequence[Sequence[float]] | np.ndarray | None = None,
                     *, as_table: bool = False, **options: Any
                     ) -> list[list[Result]] | pa.Table:
        """One result list per query, the same as `search` called once per query.

        Args:
            texts: query texts (None entries: no text for that query).
            vectors: query embeddings, a 2-D array or a list (same length as `texts` when
                both are given: query i uses both).
            as_table: the same results as one Arrow table instead (`results.batch_table`:
                `query`, the query's position, then a result's fields and metadata, a row
                per result in order); for plain vector batches it is taken column by
                column from the store, without making `Result` objects, which on a large
                batch cost more than the index search.
            **options: any other `search` argument (k, filters, where, modality, ...),
                shared by every query.

        All texts (and `-negatives`) are embedded in one encoder batch and the filters are
        evaluated once (cached per snapshot). Vectors alone with plain options (k, offset,
        filters) are answered by one index search over the query matrix; other queries run
        the planner one by one.
        """
        if texts is None and vectors is not None and len(vectors) \
                and "text" not in options and "vector" not in options:
            plain = lean.batch(vectors, options)  # one index call on the query matrix
            answer = lean.search_table if as_table else lean.search
            found = None if plain is None else answer(self.snapshot(), plain, self._env)
            if found is not None:
                return found
        if as_table:
            return batch_table(self.search_batch(texts, vectors, **options))
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
                "hubness": hubness.describe((manifest.get("model") or {}).get("spec")),
                "segments": len(manifest.get("segments", [])),
                "generation": manifest.get("generation", 0), "bytes_on_disk": size,
                "columns": [c for c in snap.table.column_names if c not in HIDDEN_COLUMNS]}

    def _channels(self, snap: Snapshot) -> dict[str, int]:
        """Vectors per channel; "clap" counts the CLAP side space's vectors."""
        counts = channel_counts(snap)
        for channel in channels():
            counts.update(channel.counts(self.path, self._manifest()))
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

