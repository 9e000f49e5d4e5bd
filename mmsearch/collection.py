"""The facade: one store, one model; index / upsert / delete / search."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmsearch import config
from mmsearch.audio.search import channel_counts, clap_hits, fuse_queries, with_word_matches
from mmsearch.audio.settings import AudioSettings, audio_query_vectors
from mmsearch.audio.space import ClapSpace
from mmsearch.encoders.base import Encoder
from mmsearch.encoders.registry import load_default_encoder, load_encoder, same_model
from mmsearch.errors import BadMediaError, MmsearchError, ModelMismatchError, UsageError
from mmsearch.filters import compile_filters
from mmsearch.index.manage import maintain
from mmsearch.index.params import AnnParams
from mmsearch.indexer import Indexer, IndexReport
from mmsearch.ingest.discover import is_under
from mmsearch.ingest.images import decode_image
from mmsearch.ingest.video import (
    DEFAULT_FPS,
    DEFAULT_SCENE_THRESHOLD,
    DEFAULT_TIME_LIMIT,
    VideoOptions,
)
from mmsearch.records import RecordBatch, to_record_batch
from mmsearch.results import Result
from mmsearch.store.snapshot import CORE_COLUMNS, HIDDEN_COLUMNS, Snapshot
from mmsearch.store.store import Batch, Store

ImageQuery = str | os.PathLike[str] | bytes | Any  # a path, raw bytes or a PIL image
MODALITIES = ("image", "video", "audio", "text")


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
        self._lock = threading.RLock()
        self._ann_params = AnnParams.resolve(index_params)
        self._ann = None  # the IVF-PQ index in RAM, shared by snapshots and the writer
        self._check_model(self._asked_model)

    # -- model ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        """The model spec this collection embeds with (pinned by the store once written)."""
        pinned = (self._store.model or {}).get("spec")
        return pinned or self._asked_model or (None if self._store.exists else
                                               config.DEFAULT_MODEL)

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        with self._lock:
            if self._encoder is None:
                spec = self.model
                if spec is None:
                    raise UsageError(f"store {self.path} holds precomputed vectors without a "
                                     "model; query it with vector=..., or create it with "
                                     "mmsearch.open(store, model=...)")
                if spec == config.DEFAULT_MODEL and not self._asked_model \
                        and not self._store.model:
                    self._encoder = load_default_encoder(spec, self._device)
                else:
                    self._encoder = load_encoder(spec, self._device)
                self._check_dim(self._encoder.dim)
            return self._encoder

    def _check_model(self, asked: str | None) -> None:
        pinned = (self._store.model or {}).get("spec")
        if asked and pinned and not same_model(pinned, asked):
            raise ModelMismatchError(
                f"store {self.path} was built with model {pinned!r}, not {asked!r}; "
                "leave out --model to use the store's model, or pick another --store")

    def _check_dim(self, dim: int) -> None:
        pinned = self._store.manifest.get("dim")
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
            self._snapshot = None
        return report

    def upsert(self, records: Any) -> int:
        """Insert or replace items by `id` in one atomic commit; returns the rows written.

        `records`: a list of dicts, a pandas DataFrame or an Arrow table with an `id`
        column and either a `vector` column (precomputed embeddings, the fast path), a
        `path` column (images to embed) or a `text` column (texts to embed). Every other
        column is kept as filterable metadata.
        """
        batch = to_record_batch(records)
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
            self._snapshot = None
        return len(table)

    def _record_vectors(self, batch: RecordBatch) -> np.ndarray:
        if batch.vectors is not None:
            self._check_dim(batch.vectors.shape[1])
            return batch.vectors
        if batch.paths is not None:
            return np.concatenate([self._embed_image(p) for p in batch.paths])
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
            self._snapshot = None
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
            self._snapshot = None
        return len(keys)

    def _maintain_index(self, store: Store, force: bool = False) -> None:
        """Train, update or save the IVF-PQ index after a write (inside the writer lock)."""
        self._ann = maintain(store, self._ann_params, self._ann, force=force)

    def rebuild_index(self) -> dict[str, Any]:
        """Retrain the vector index from scratch now (IVF-PQ from `threshold` rows on).

        Retraining also happens by itself once the collection grew `growth` times past the
        rows the index was trained on. Returns the index description (see `info()`).
        """
        with self._lock, self._store.writer() as store:
            self._maintain_index(store, force=True)
            self._snapshot = None
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
        """The current consistent view (reloaded when another writer committed)."""
        with self._lock:
            changed = self._store.refresh()
            if self._snapshot is None or changed:
                self._snapshot = self._load_snapshot()
            return self._snapshot

    def _load_snapshot(self) -> Snapshot:
        for _ in range(5):  # a concurrent compaction may remove files between reads
            try:
                snap = Snapshot.load(self._store, self._ann_params, self._ann)
                self._ann = snap.ann or self._ann
                return snap
            except FileNotFoundError:
                self._store.refresh()
        raise MmsearchError(f"store {self.path} keeps changing under the reader; try again")

    def search(self, text: str | None = None, image: ImageQuery | None = None,
               audio: Any = None, vector: Sequence[float] | np.ndarray | None = None,
               k: int = 10, where: str | None = None,
               filters: Mapping[str, Any] | None = None,
               modality: str | Sequence[str] | None = None) -> list[Result]:
        """Find the k best items for a text, an image, a vector, or several of them.

        Several queries are combined by adding their unit vectors. `audio` (the path of
        an example sound) is analysed like an indexed file: its tags and its transcript
        each make a main-space query, their results fused (mean score per item). With
        `text`, transcripts holding the query's words score higher. `where` is a SQL
        condition over the metadata columns (trusted input); `filters` is a structured,
        injection-safe alternative (see mmsearch.filters). Both may be given. `modality`
        ("video", "image,video" or a list) keeps only those kinds of items.

        Items with several rows (the moments of a video) appear once, as their best
        moment (its `start_s`/`end_s` say where it is).
        """
        if k < 1:
            raise UsageError("k must be at least 1")
        where = _with_modality(where, modality)
        queries = self._query_vectors(text, image, vector, audio)
        snap = self.snapshot()
        if len(snap) == 0:
            return []
        rows = self._filter_rows(snap, where, filters)
        clap = self._clap_query(text, audio)
        fetch = k if len(queries) == 1 and clap is None else max(k, 50)
        if not queries and clap is None:
            raise UsageError("no query vector: the sound gave no tags or speech")
        lists = [with_word_matches(snap, q, text, _best_per_item(snap, q, fetch, rows), fetch,
                                   rows) for q in queries]
        if clap is not None:
            lists.append(clap_hits(snap, ClapSpace(self.path), clap, fetch, rows))
        hits = fuse_queries([h for h in lists if h], snap, k) if any(lists) else []
        records = snap.records(np.array([r for _, r in hits], dtype=np.int64))
        return [_to_result(score, rec) for (score, _), rec in zip(hits, records, strict=True)]

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

    def _query_vectors(self, text: str | None, image: ImageQuery | None,
                       vector: Sequence[float] | np.ndarray | None,
                       audio: Any = None) -> list[np.ndarray]:
        """One query vector, or one per view of an example sound (its tags, its words),
        each plus the other queries given."""
        if audio is None:
            return [self._query_vector(text, image, vector)]
        settings = AudioSettings.resolve(self._store.manifest.get("audio"))
        sounds = audio_query_vectors(self.encoder, settings, audio, self._device)
        if not sounds and not ClapSpace(self.path).exists:
            raise UsageError(f"nothing in {os.fspath(audio)} to search with: no sound events "
                             "or speech recognised, and the store has no CLAP space")
        if text is None and image is None and vector is None:
            return sounds
        other = self._query_vector(text, image, vector)
        return [_unit(s + other) for s in sounds]

    def _query_vector(self, text: str | None, image: ImageQuery | None,
                      vector: Sequence[float] | np.ndarray | None) -> np.ndarray:
        parts: list[np.ndarray] = []
        if text is not None and text.strip():
            parts.append(self.encoder.encode_texts([text])[0])
        if image is not None:
            parts.append(self._embed_image(image)[0])
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32).reshape(-1)
            self._check_dim(v.shape[0])
            parts.append(v / max(float(np.linalg.norm(v)), 1e-12))
        if not parts:
            raise UsageError("give a query: text, image, audio or vector")
        q = np.sum(parts, axis=0)
        return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)

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
            except BadMediaError as e:
                raise UsageError(f"cannot use image {image!r:.80}: {e}") from None
        return encoder.encode_images(encoder.preprocess(pil)[None])

    @staticmethod
    def _filter_rows(snap: Snapshot, where: str | None,
                     filters: Mapping[str, Any] | None) -> np.ndarray | None:
        clauses, params = [], []
        if where:
            clauses.append(f"({where})")
        if filters:
            sql, values = compile_filters(filters)
            clauses.append(f"({sql})")
            params.extend(values)
        if not clauses:
            return None
        return snap.matching_rows(" AND ".join(clauses), params)

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
        manifest = self._store.manifest
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
        with self._lock:
            self._snapshot = None
            self._encoder = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, model={self.model!r})"


def _best_per_item(snap: Snapshot, query: np.ndarray, k: int,
                   rows: np.ndarray | None) -> list[tuple[float, int]]:
    """The best row of each of the k best items (rows sharing an `id` are one item).

    Over-fetches from the index, growing the fetch until k distinct items are found or
    every candidate row has been seen.
    """
    total = len(snap) if rows is None else len(rows)
    fetch = k
    while True:
        scores, found = snap.index.search(query[None, :], min(fetch, total), rows)
        keep = found[0] >= 0
        valid, scores = found[0][keep], scores[0][keep]
        ids = snap.table.column("id").take(pa.array(valid, pa.int64())).to_pylist()
        best: dict[str, tuple[float, int]] = {}
        for score, row, item in zip(scores, valid, ids, strict=True):
            if item not in best:
                best[item] = (float(score), int(row))
                if len(best) == k:
                    return list(best.values())
        if fetch >= total or len(valid) < min(fetch, total):
            return list(best.values())
        fetch *= 4


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _with_modality(where: str | None, modality: str | Sequence[str] | None) -> str | None:
    """`where` with a condition on the `modality` column added (names are validated)."""
    if modality is None:
        return where
    names = modality.split(",") if isinstance(modality, str) else list(modality)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    bad = [n for n in names if n not in MODALITIES]
    if bad or not names:
        raise UsageError(f"unknown modality {', '.join(bad) or repr(modality)}; "
                         f"choose from {', '.join(MODALITIES)}")
    clause = "modality IN (" + ", ".join(f"'{n}'" for n in names) + ")"
    return f"({where}) AND {clause}" if where else clause


def _to_result(score: float, record: dict[str, Any]) -> Result:
    meta = {k: v for k, v in record.items() if k not in HIDDEN_COLUMNS and k not in CORE_COLUMNS}
    return Result(id=str(record["id"]), path=record.get("path"),
                  modality=record.get("modality") or "image", score=score,
                  start_s=record.get("start_s"), end_s=record.get("end_s"), metadata=meta)


def open(store: str | os.PathLike[str] | None = None, model: str | None = None,
         device: str | None = None,
         index_params: AnnParams | Mapping[str, Any] | None = None) -> Collection:
    """Open (or prepare to create) a collection; see `Collection`."""
    return Collection(config.store_path(store), model=model, device=device,
                      index_params=index_params)

