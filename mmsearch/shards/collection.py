"""A collection stored as N shards, with the `Collection` API and single-store answers.

Each shard is a normal store (`mmsearch.Collection` over `STORE/shard-NNN`); items go to
the shard `shard_of(id)` names. Writes route rows to their shard (file indexing sees the
shards as one store, see `writer.py`); searches run one step per shard and merge the
per-shard lists into the single-store page (`search.py`), in-process here and on Ray
actors in `mmsearch.distributed`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch import config
from mmsearch.audio.search import row_bonus
from mmsearch.audio.settings import AudioSettings
from mmsearch.catalog.products import ProductColumns, prepare
from mmsearch.catalog.read import read_catalog
from mmsearch.catalog.sync import CatalogReport
from mmsearch.catalog.sync import failures as _failures
from mmsearch.collection import Collection
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.media import ImageQuery
from mmsearch.errors import ModelMismatchError, UsageError
from mmsearch.fileio import write_lock
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer, IndexReport, index_inputs
from mmsearch.ingest.video import (
    DEFAULT_FPS,
    DEFAULT_SCENE_THRESHOLD,
)
from mmsearch.ocr import search as ocr_search
from mmsearch.ocr.settings import OcrSettings
from mmsearch.planner.calibration import PROBE_TEXTS, Calibration
from mmsearch.planner.facets import facet_counts as _facet
from mmsearch.planner.groups import build_layout, layout
from mmsearch.planner.plan import Hit, pool_size
from mmsearch.planner.query import Query
from mmsearch.planner.rerank_step import rerank_hits
from mmsearch.planner.search import Search
from mmsearch.planner.search import to_result as _to_result
from mmsearch.records import as_table, to_record_batch
from mmsearch.request import SearchRequest
from mmsearch.results import Result, results_to_arrow
from mmsearch.shards import layout as shard_layout
from mmsearch.shards.calibrate import measure_union, refreshed
from mmsearch.shards.layout import MAX_SHARDS, shard_name, shard_of
from mmsearch.shards.search import Merged, merge, shard_hits
from mmsearch.shards.writer import ShardedWriter
from mmsearch.store.store import Store
from mmsearch.view.snapshot import Snapshot


class SearchResults(list):
    """Results (a list, best first) that say whether every shard answered.

    `partial` is True when some shards did not answer in time; `missing` names them."""

    partial: bool = False
    missing: list[str]

    def __init__(self, results: Iterable[Result] = (), missing: Sequence[str] = ()) -> None:
        super().__init__(results)
        self.missing = list(missing)
        self.partial = bool(self.missing)


class ShardedCollection:
    """A collection split into shards by a stable hash of each item's id.

    Args:
        path: the store folder (`shards.json` and one folder per shard).
        model, device, index_params: as for `Collection` (each shard has its own index).
        shards: the number of shards when creating the store (a store that exists keeps
            its count; a different one is refused).
    """

    def __init__(self, path: str | os.PathLike[str], model: str | None = None,
                 device: str | None = None,
                 index_params: AnnParams | Mapping[str, Any] | None = None,
                 shards: int | None = None) -> None:
        self.path = Path(path)
        top = shard_layout.read_manifest(self.path)
        if top:
            names = list(top["shards"])
            if shards is not None and shards != len(names):
                raise UsageError(f"store {self.path} has {len(names)} shards, not {shards}; "
                                 "leave out --shards to use the store as it is")
        else:
            if shards is None:
                raise UsageError(f"no sharded store at {self.path}; give shards=N to create one")
            if isinstance(shards, bool) or not isinstance(shards, int) \
                    or not 1 <= shards <= MAX_SHARDS:
                raise UsageError(f"shards must be a whole number from 1 to {MAX_SHARDS}, "
                                 f"not {shards!r}")
            if (self.path / "manifest.json").exists():
                raise UsageError(f"store {self.path} is a single (unsharded) store; index into "
                                 "a new folder to make a sharded one")
            names = [shard_name(i) for i in range(shards)]
        self._top = top
        self.shards = [Collection(self.path / n, model=model, device=device,
                                  index_params=index_params) for n in names]
        self.shard_names = names
        self._lock = threading.RLock()
        self._cache_lock = threading.Lock()
        self._calib_cache: tuple[tuple[int, ...], Calibration] | None = None
        self._probe_vectors: np.ndarray | None = None
        self._check_model(model)

    # -- model ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        """The model spec every shard embeds with."""
        pinned = (self._manifest().get("model") or {}).get("spec")
        return pinned or self.shards[0].model

    @property
    def encoder(self) -> Encoder:
        """The encoder (one for all shards), loaded on first use."""
        encoder = self.shards[0].encoder
        for shard in self.shards[1:]:
            shard._encoder = encoder  # one model in memory, not one per shard
        return encoder

    def _manifest(self) -> dict[str, Any]:
        """The top-level manifest as on disk now (a small JSON file)."""
        self._top = shard_layout.read_manifest(self.path) or self._top
        return self._top

    def _check_model(self, asked: str | None) -> None:
        pinned = (self._manifest().get("model") or {}).get("spec")
        if asked and pinned:
            from mmsearch.encoders.registry import same_model

            if not same_model(pinned, asked):
                raise ModelMismatchError(
                    f"store {self.path} was built with model {pinned!r}, not {asked!r}; "
                    "leave out --model to use the store's model, or pick another --store")

    def shard_for(self, item_id: str) -> Collection:
        """The shard holding (or that would hold) an item."""
        return self.shards[shard_of(item_id, len(self.shards))]

    # -- writing ----------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer for the whole sharded store (a lock file beside `shards.json`); the
        top-level manifest is created first and brought up to date last."""
        with self._lock, write_lock(self.path):
            self._top = shard_layout.create(self.path, len(self.shards))
            yield
            self._update_top()

    def _update_top(self) -> None:
        """Pin model and dim, and re-measure the shared calibration when the rows changed
        enough (the rule one store applies after each write)."""
        encoder = self.shards[0]._encoder
        if encoder is not None and self._probe_vectors is None:
            self._probe_vectors = encoder.encode_texts(list(PROBE_TEXTS))
        parts = []
        model = dim = None
        for shard in self.shards:
            store = Store(shard.path)
            model = model or store.model
            dim = dim or store.manifest.get("dim")
            if store.exists:
                table, vectors = store.live(columns=["key", "id", "modality", "channel"])
                parts.append((build_layout(table), vectors))
        top = dict(self._top)
        calibration = refreshed(Calibration.from_json(top.get("calibration")), parts,
                                self._probe_vectors)
        if calibration is None and top.get("model") == model and top.get("dim") == dim:
            return
        if calibration is not None:
            top["calibration"] = calibration.to_json()
        top.update(model=model, dim=dim)
        shard_layout.write(self.path, top)
        self._top = shard_layout.read_manifest(self.path)

    def index(self, paths: Iterable[str | os.PathLike[str]], *, progress: bool | None = None,
              batch_size: int = config.BATCH_SIZE, workers: int | None = None,
              commit_every: int | None = None, fps: float = DEFAULT_FPS,
              scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
              video_time_limit: float | None = None, tags: bool | None = None,
              speech: bool | None = None, whisper: str | None = None,
              audio_model: str | None = None, ray: str | None = None,
              ocr: bool | None = None, reprocess: bool = False) -> IndexReport:
        """Index files and folders as `Collection.index` does (incremental, renames matched
        by content hash across shards; `reprocess` embeds every file again); each file's
        rows go to the shard of its id.

        `ray`: decode and embed on a Ray cluster ("local", "auto" or an address; see
        `mmsearch.distributed.ingest`); the result is the same.
        """
        if ray is not None:
            from mmsearch.distributed import RayCollection

            with RayCollection(self.path, model=self.shards[0]._asked_model,
                               device=self.shards[0]._device, shards=len(self.shards),
                               address=ray) as remote:
                return remote.index(paths, progress=progress, batch_size=batch_size,
                                    workers=workers, commit_every=commit_every, fps=fps,
                                    scene_threshold=scene_threshold,
                                    video_time_limit=video_time_limit, tags=tags,
                                    speech=speech, whisper=whisper, audio_model=audio_model,
                                    ocr=ocr, reprocess=reprocess)
        if audio_model:
            raise UsageError("a CLAP audio space (--audio-model) is not supported on sharded "
                             "stores; tags and speech are")
        video, roots = index_inputs(paths, fps, scene_threshold, video_time_limit)
        with self._writing(), self._shard_writers() as stores:
            view = ShardedWriter(self.path, stores)
            settings = AudioSettings.resolve(view.manifest.get("audio"), tags=tags,
                                             speech=speech, whisper=whisper)
            reading = OcrSettings.resolve(view.manifest.get("ocr"), ocr)
            for shard in self.shards:
                shard._check_model(shard._asked_model)
            device = self.shards[0]._device
            indexer = self._indexer(view, lambda: self.encoder, self.shards[0]._model_pin,
                              batch_size=batch_size, workers=workers, commit_every=commit_every,
                              progress=progress, video=video, audio=settings.analyzer(device),
                              audio_settings=settings, ocr_settings=reading,
                              reprocess=reprocess)
            report = indexer.run(roots)
            self._after_shard_writes(stores)
        return report

    def _indexer(self, *args: Any, **kwargs: Any) -> Indexer:
        """The file indexer over the shards (`RayCollection` embeds on Ray instead)."""
        return Indexer(*args, **kwargs)

    @contextmanager
    def _shard_writers(self) -> Iterator[list[Store]]:
        """Every shard's write lock, held together (shard order, so never a deadlock)."""
        with ExitStack() as stack:
            stores = []
            for shard in self.shards:
                stack.enter_context(shard._lock)
                stores.append(stack.enter_context(shard._store.writer()))
            yield stores

    def _after_shard_writes(self, stores: list[Store]) -> None:
        if self.shards[0]._encoder is not None:
            self.encoder  # noqa: B018 - share the loaded encoder (probe texts per shard)
        for shard, store in zip(self.shards, stores, strict=True):
            shard._maintain_index(store)
            shard._publish(store)

    def upsert(self, records: Any) -> int:
        """Insert or replace items by `id` (see `Collection.upsert`); each shard's part is
        one atomic commit. Every record is checked before any shard is written."""
        table = as_table(records)
        names = set(table.column_names)
        if {"path", "text"} <= names and "vector" not in names:
            products = prepare(table, ProductColumns("id", "path", ("text",)), os.getcwd())
            if products.failed:
                raise UsageError(_failures(products.failed))
        else:
            batch = to_record_batch(table)
            dim = self._manifest().get("dim")
            given = batch.vectors[1].shape[1] if batch.vectors is not None else None
            if given is not None and dim and given != int(dim):
                raise ModelMismatchError(f"store {self.path} holds {dim}-d vectors; these "
                                         f"records have {given}-d vectors")
        ids = [str(i) for i in table.column("id").to_pylist()]
        with self._writing():
            if "vector" not in names:
                self.encoder  # noqa: B018 - loaded once, shared by the shards
            written = 0
            for s, at in self._route(ids):
                written += self.shards[s].upsert(table.take(pa.array(at, pa.int64())))
        return written

    def _route(self, ids: Sequence[str]) -> list[tuple[int, np.ndarray]]:
        """(shard, positions of its ids) for every shard that gets some."""
        route = np.array([shard_of(i, len(self.shards)) for i in ids], dtype=np.int64)
        return [(int(s), np.flatnonzero(route == s)) for s in np.unique(route)]

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id; returns the number of rows removed."""
        ids = [str(i) for i in ids]
        with self._writing():
            return sum(self.shards[s].delete([ids[i] for i in at])
                       for s, at in self._route(ids))

    def remove_paths(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove items whose file is one of `paths` or lies under one of them."""
        paths = list(paths)
        with self._writing():
            return sum(shard.remove_paths(paths) for shard in self.shards)

    def index_catalog(self, path: str | os.PathLike[str], *, id_col: str = "id",
                      image_col: str | None = None, text_cols: Sequence[str] = (),
                      delete_missing: bool = False, batch_size: int = config.BATCH_SIZE,
                      commit_every: int | None = None) -> CatalogReport:
        """Sync a product catalog as `Collection.index_catalog` does, shard by shard."""
        commit_every = config.commit_every(commit_every)
        products = prepare(read_catalog(path), ProductColumns(id_col, image_col,
                                                              tuple(text_cols)),
                           Path(path).resolve().parent)
        report = CatalogReport(failed=list(products.failed))
        with self._writing():
            self.encoder  # noqa: B018 - loaded once, shared by the shards
            routed = dict(self._route(products.ids))
            for s, shard in enumerate(self.shards):
                if s not in routed and not delete_missing:
                    continue
                part = shard._sync_products(products.take(list(routed.get(s, []))),
                                            delete_missing=delete_missing,
                                            batch_size=batch_size, commit_every=commit_every)
                report.added += part.added
                report.updated += part.updated
                report.unchanged += part.unchanged
                report.deleted += part.deleted
                report.rows_written += part.rows_written
                report.failed += part.failed
        return report

    def rebuild_index(self) -> dict[str, Any]:
        """Retrain every shard's vector index now; returns shard 0's description."""
        described = [shard.rebuild_index() for shard in self.shards]
        return described[0]

    # -- reading ----------------------------------------------------------------------
    def search(self, request: SearchRequest | str | Sequence[Any] | None = None, /,
               **options: Any) -> SearchResults:
        """Search every shard and merge: the same arguments (a `SearchRequest` or its
        fields) and answers as `Collection.search` (the query is embedded once)."""
        if request is not None and not isinstance(request, SearchRequest):
            options = {"text": request, **options}
            request = None
        req = SearchRequest.build(request, **options)
        rerank_n = req.rerank
        primary = self.shards[0]
        if primary._encoder is None and self.model and (
                req.text is not None or req.image is not None or req.audio is not None
                or req.negative):
            self.encoder  # noqa: B018
        query, ctx = Search(primary.snapshot(), req, primary._env).parse()
        texts = ctx.texts
        if rerank_n and not texts:
            raise UsageError("reranking needs a text query")
        if query is None:
            raise UsageError("a query by sound alone needs a CLAP audio space, which sharded "
                             "stores do not have")
        where, filters = req.condition(), None
        rerank_fn = None
        model = primary._load_reranker(req.reranker) if rerank_n else None
        if model is not None:  # None: no reranker reachable (said once in the log)
            joined = " ".join(texts)

            def rerank_fn(hits: list[Hit], view: Any) -> list[Hit]:
                return rerank_hits(hits, rerank_n, joined, model, view)

        return self._run(query, texts, where, filters, pool_size(query, rerank_n), rerank_fn)

    #: Several queries in one call, as `Collection.search_batch` (texts embedded in one
    #: encoder batch by the first shard's encoder, which parses every query).
    search_batch = Collection.search_batch

    @property
    def _batch(self) -> Any:
        return self.shards[0]._batch

    def _run(self, query: Query, texts: list[str], where: tuple[str | None, list[Any]],
             filters: None, pool: int,
             rerank_fn: Callable[[list[Hit], Any], list[Hit]] | None) -> SearchResults:
        """Each shard's step, in this process, then the merge."""
        snaps = [shard.snapshot() for shard in self.shards]
        if not any(len(s) for s in snaps):
            return SearchResults()
        names = {c for s in snaps if len(s) for c in layout(s).names}
        calibration = self._calibration(query, names, lambda: snaps)
        condition, params = where
        parts = []
        for s, snap in enumerate(snaps):
            if not len(snap):
                continue
            rows = None if condition is None else snap.matching_rows(condition, params)
            bonus = ocr_search.add_bonus(row_bonus(snap, texts, rows), snap, texts, rows)
            parts.append(shard_hits(s, snap, query, calibration, rows, pool, bonus))

        def fetch(pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
            return [snaps[s].records(np.array([r], np.int64))[0] for s, r in pairs]

        merged = merge(parts, query, pool, fetch, rerank_fn)
        return SearchResults(self._results(merged, fetch(merged.origin), query.explain,
                                           texts))

    @staticmethod
    def _results(merged: Merged, records: list[dict[str, Any]],
                 explain: bool, texts: Sequence[str] = ()) -> list[Result]:
        return [ocr_search.annotate(_to_result(h.score, rec, h.explain if explain else None,
                                               h.similarity), list(texts))
                for h, rec in zip(merged.hits, records, strict=True)]

    def _calibration(self, query: Query, names: set[str],
                     snapshots: Callable[[], Sequence[Snapshot]]) -> Calibration:
        """The shared calibration for a query on shards holding channels `names`; pairs it
        lacks are measured over all shards' `snapshots()` now (once per set of shard
        generations), as one store does."""
        stored = Calibration.from_json(self._manifest().get("calibration"))
        kinds = {p.kind for p in query.positives + query.negatives}
        if {(kd, c) for kd in kinds for c in names} <= set(stored.stats):
            return stored
        snaps = snapshots()
        generations = tuple(s.generation for s in snaps)
        with self._cache_lock:
            cached = self._calib_cache
            if cached is None or cached[0] != generations:
                probes = self.encoder.encode_texts(list(PROBE_TEXTS)) \
                    if "text" in kinds and self.model else None
                parts = [(layout(s), s.vectors) for s in snaps if len(s)]
                cached = (generations, measure_union(parts, probes))
                self._calib_cache = cached
        return stored.merged(cached[1])

    def facets(self, columns: str | Sequence[str], text: str | None = None,
               image: ImageQuery | None = None,
               vector: Sequence[float] | np.ndarray | None = None, k: int = 100,
               where: str | None = None, filters: Mapping[str, Any] | None = None,
               modality: str | Sequence[str] | None = None,
               ) -> dict[str, list[tuple[Any, int]]]:
        """Counts of items per value of each column, as `Collection.facets` (items never
        span shards, so per-shard counts add up)."""
        names = [columns] if isinstance(columns, str) else list(columns)
        if not names:
            raise UsageError("give at least one facet column")
        if text is not None or image is not None or vector is not None:
            hits = self.search(text=text, image=image, vector=vector, k=k, where=where,
                               filters=filters, modality=modality)
            if not hits:
                return {c: [] for c in names}
            import duckdb  # loaded here, not with every query of a single store

            con = duckdb.connect()
            con.register("hits", results_to_arrow(hits))
            return {c: _facet(con, "hits", c, "count(*)", "TRUE", []) for c in names}
        return merge_facets([shard.facets(names, where=where, filters=filters,
                                          modality=modality) for shard in self.shards])

    def info(self) -> dict[str, Any]:
        """What the store holds, summed over the shards, with a line per shard."""
        parts = [shard.info() for shard in self.shards]
        out = dict(parts[0])
        for key in ("items", "vectors", "segments", "bytes_on_disk"):
            out[key] = sum(int(p[key] or 0) for p in parts)
        for key in ("modalities", "channels"):
            total: dict[str, int] = {}
            for p in parts:
                for name, n in (p[key] or {}).items():
                    total[name] = total.get(name, 0) + int(n)
            out[key] = dict(sorted(total.items()))
        top = self._manifest()
        out.update(store=str(self.path.resolve()), model=self.model or out["model"],
                   dim=top.get("dim") or out["dim"],
                   index=",".join(sorted({p["index"] for p in parts})),
                   index_params={},  # one per shard: see `shards`
                   generation=int(top.get("generation", 0)),
                   columns=sorted({c for p in parts for c in p["columns"]}),
                   shards=[{"name": n, "items": p["items"], "vectors": p["vectors"],
                            "index": p["index"], "generation": p["generation"]}
                           for n, p in zip(self.shard_names, parts, strict=True)])
        return out

    def __len__(self) -> int:
        return sum(len(shard) for shard in self.shards)

    def close(self) -> None:
        """Release the model and cached data of every shard."""
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> ShardedCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardedCollection({str(self.path)!r}, shards={len(self.shards)}, "
                f"model={self.model!r})")


def merge_facets(parts: Sequence[Mapping[str, list[tuple[Any, int]]]]
                 ) -> dict[str, list[tuple[Any, int]]]:
    """Per-shard facet counts added up, most frequent first (ties by value, nulls last)."""
    out: dict[str, list[tuple[Any, int]]] = {}
    for column in parts[0] if parts else {}:
        counts: dict[Any, int] = {}
        for part in parts:
            for value, n in part.get(column, []):
                counts[value] = counts.get(value, 0) + n
        out[column] = sorted(counts.items(), key=lambda vn: (-vn[1], vn[0] is None,
                                                              _sortable(vn[0])))
    return out


def _sortable(value: Any) -> Any:
    return (0, value) if value is not None else (1, 0)

