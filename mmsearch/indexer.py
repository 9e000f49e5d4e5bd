"""Incremental indexing of files: change detection, reuse by content hash, atomic commits."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mmsearch import config
from mmsearch.arrow_numpy import column_numpy
from mmsearch.audio.analyze import CHANNELS, AudioAnalyzer
from mmsearch.audio.embed import part_vectors
from mmsearch.audio.settings import AudioSettings
from mmsearch.audio.space import ClapSpace
from mmsearch.encoders.base import Encoder
from mmsearch.errors import UsageError
from mmsearch.ingest.discover import Found, Skipped, discover, is_under
from mmsearch.ingest.pipeline import (
    NO_SOUND,
    Prepared,
    default_workers,
    ordered_map,
    prepare_file,
)
from mmsearch.ingest.video import VideoOptions, time_limit_setting
from mmsearch.ocr.search import lines_json, lines_text
from mmsearch.ocr.settings import OcrSettings
from mmsearch.progress import progress_bar
from mmsearch.store.schema import file_id, file_rows_table, utc_naive
from mmsearch.store.store import Batch, Store
from mmsearch.vectors import LiveVectors


@dataclass
class IndexReport:
    """What an index run did."""

    added: int = 0
    updated: int = 0
    renamed: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    partial: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    #: channels left out of this run (their model is missing or failed), with why
    skipped_channels: dict[str, str] = field(default_factory=dict)
    #: files indexed without some wanted channel (completed by a later run)
    incomplete: int = 0

    @property
    def processed(self) -> int:
        return self.added + self.updated + self.renamed + self.unchanged

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.added} added, {self.updated} updated, {self.renamed} renamed, "
                f"{self.removed} removed, {self.unchanged} unchanged, {self.failed} failed"
                f"{f', {self.partial} partial' if self.partial else ''} "
                f"in {self.seconds:.1f} s ({rate:.1f} items/s)")

    def fail(self, path: str, reason: str) -> None:
        self.failed += 1
        self.failures.append((path, reason))

    def channel_notes(self) -> list[str]:
        """One line per channel left out of the run: what, why, and what happens next."""
        files = (f"; {self.incomplete} file(s) indexed without it, a later run adds it"
                 if self.incomplete else "")
        return [f"{CHANNELS[c]} skipped: {why}{files}"
                for c, why in self.skipped_channels.items()]

    def warn(self, path: str, warnings: list[str]) -> None:
        """A file indexed only in part (a truncated video keeps the frames it decoded)."""
        self.partial += 1
        self.warnings.extend((path, w) for w in warnings)


#: Metadata of a file's rows that a rename or touch carries over with its vectors.
_FILE_META = ("width", "height", "taken_at", "camera_make", "camera_model", "gps_lat",
              "gps_lon", "duration_s", "fps", "codec", "sample_rate", "audio_channels")
#: What each row says beyond its file's metadata (carried over with its vector too).
_ROW_META = ("start_s", "end_s", "channel", "tags", "transcript", "ocr", "ocr_lines")
#: What change detection reads of the stored rows (never user metadata).
_STORED_COLUMNS = ["key", "path", "bytes", "mtime_ns", "content_hash", *_ROW_META, *_FILE_META]


@dataclass
class _Stored:
    """A stored file: its rows (one per image, moment, tag window, ...) and metadata."""

    keys: list[int]
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    row: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # _ROW_META per key


class Indexer:
    """One `index` run over a store, holding its write lock."""

    def __init__(self, store: Store, encoder_factory: Callable[[], Encoder],
                 model_pin: Callable[[Encoder], dict[str, Any]], *,
                 batch_size: int = config.BATCH_SIZE, workers: int | None = None,
                 commit_every: int | None = None,
                 max_pixels: int = config.MAX_IMAGE_PIXELS, progress: bool | None = None,
                 video: VideoOptions | None = None, audio: AudioAnalyzer | None = None,
                 audio_settings: AudioSettings | None = None,
                 ocr_settings: OcrSettings | None = None,
                 reprocess: bool = False) -> None:
        self.store = store
        self.reprocess = reprocess
        self._encoder_factory = encoder_factory
        self._model_pin = model_pin
        self.batch_size = batch_size
        self.workers = workers or default_workers()
        self.commit_every = config.commit_every(commit_every)
        self.max_pixels = max_pixels
        self.progress = progress
        self.video = video or VideoOptions()
        self.audio = audio
        self._audio_pin = audio_settings.to_manifest() if audio_settings else None
        self._ocr_pin = ocr_settings.to_manifest() if ocr_settings else None
        self.ocr = ocr_settings.reader() if ocr_settings else None
        self._clap_spec = audio_settings.clap if audio_settings else None
        self.side = ClapSpace(store.root) if self._clap_spec else None
        self._side_rows: list[tuple[str, float, float, np.ndarray]] = []
        self._side_replace: set[str] = set()
        self.report = IndexReport()
        self._rows: list[dict[str, Any]] = []
        self._vectors: list[np.ndarray] = []
        self._deletes: list[int] = []
        self._last_commit = time.monotonic()
        self._encoder: Encoder | None = None
        self._stored_vectors = LiveVectors.from_array(np.zeros((0, 0), np.float32))
        self._failed: dict[str, list[Any]] = {}
        self._key_rows: dict[int, int] = {}

    def run(self, paths: Iterable[str]) -> IndexReport:
        start = time.monotonic()
        roots = list(paths)
        # vectors stay memory-mapped: only those of renamed files are ever read
        table, self._stored_vectors = self.store.live(columns=_STORED_COLUMNS)
        self._key_rows = {int(k): i for i, k in enumerate(column_numpy(table.column("key")))}
        stored = _stored_files(_plain_rows(table) if "path" in table.column_names else [])
        by_path = {s.path: s for s in stored}
        by_hash = {s.content_hash: s for s in stored if s.content_hash}
        known_failed: dict[str, list[Any]] = self.store.manifest.get("failed") or {}
        self._failed = {}
        seen: set[str] = set()
        todo: list[Found] = []
        redo: set[str] = set()  # content hashes recomputed (not reused) in this run
        for entry in discover(roots, exclude=[self.store.root]):
            if isinstance(entry, Skipped):
                self.report.fail(entry.path, entry.reason)
                continue
            seen.add(entry.path)
            old = by_path.get(entry.path)
            failed = known_failed.get(entry.path)
            if old and old.size == entry.size and old.mtime_ns == entry.mtime_ns:
                if self.reprocess or self._completes(old):
                    todo.append(entry)
                    redo.add(old.content_hash)
                else:
                    self.report.unchanged += 1
            elif failed and failed[:2] == [entry.size, entry.mtime_ns] and not self.reprocess:
                self._failed[entry.path] = failed
                self.report.fail(entry.path, f"{failed[2]} (unchanged since it failed)")
            else:
                todo.append(entry)
        gone = {s.path: s for s in stored if s.path not in seen and is_under(s.path, roots)}
        if todo:
            encoder = self._get_encoder()
            known = {} if self.reprocess else {h: v for h, v in by_hash.items() if h not in redo}
            work = partial(prepare_file, known_hashes=known, preprocess=encoder.preprocess,
                           max_pixels=self.max_pixels, min_side=2 * (encoder.image_size or 0),
                           video=self.video, audio=self.audio, ocr=self.ocr)
            batch: list[Prepared] = []
            frames = 0
            # a video holds all its moments' pixels until embedded: keep fewer in flight
            window = 256 if all(f.modality == "image" for f in todo) else 2 * self.workers
            with progress_bar(len(todo), "indexing", self.progress) as bar:
                if self.audio is not None:  # an hour of audio: say how far it got
                    self.audio.on_progress = lambda path, done: bar.note(
                        f"indexing ({os.path.basename(path)} {int(done) // 60}:"
                        f"{int(done) % 60:02d})")
                for item in self._prepared(work, todo, window):
                    old = by_path.get(item.found.path)
                    if item.error:
                        self.report.fail(item.found.path, item.error)
                        if not item.retry:  # retried files are tried again next run
                            self._failed[item.found.path] = [
                                item.found.size, item.found.mtime_ns, item.error]
                        if old:
                            self._drop(old)
                    elif item.known:
                        self._reuse(item, by_hash[item.content_hash], old, gone)
                    else:
                        if item.warnings:
                            self.report.warn(item.found.path, item.warnings)
                        batch.append(item)
                        frames += len(item.frames) + len(item.parts)
                        if frames >= self.batch_size:
                            self._embed(batch, by_path)
                            batch, frames = [], 0
                    bar.advance()
                    bar.note("indexing")
                    self._maybe_commit()
                if batch:
                    self._embed(batch, by_path)
        for old in gone.values():
            self._drop(old)
            self.report.removed += 1
        # failures outside this run's roots stay remembered; inside, only current ones
        kept = {p: v for p, v in known_failed.items() if not is_under(p, roots)}
        self._commit(final_failed={**kept, **self._failed})
        if self.audio is not None:
            self.report.skipped_channels = self.audio.missing
        self.report.seconds = time.monotonic() - start
        return self.report

    def _completes(self, old: _Stored) -> bool:
        """Whether an unchanged file lacks a wanted sound channel that works now."""
        done = old.row.get("audio_channels")
        if done is None or done == NO_SOUND or self.audio is None:
            return False
        lacking = [c for c in self.audio.wanted if c not in done.split(",")]
        if not lacking:
            return False
        if any(self.audio.model(c) is not None for c in lacking):
            return True
        self.report.incomplete += 1
        return False

    def _prepared(self, work: Callable[[Found], Prepared], todo: list[Found],
                  window: int) -> Iterable[Prepared]:
        """The worker stage over the files to (re)index: decoded, hashed (threads here;
        `mmsearch.distributed.ingest` runs it, with the embedding, on Ray)."""
        return ordered_map(work, todo, self.workers, window=window)

    def _get_encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self._encoder_factory()
        return self._encoder

    def _reuse(self, item: Prepared, source: _Stored, old: _Stored | None,
               gone: dict[str, _Stored]) -> None:
        """Content already embedded under another path (or the same): copy its vectors."""
        vectors = [self._stored_vector(key) for key in source.keys]
        if self.side is not None:
            new_id = file_id(item.found.path)
            self._side_replace.add(new_id)
            self._side_rows.extend((new_id, a, b, v) for a, b, v in
                                   self.side.windows_of(file_id(source.path)))
        if old is not None:
            self._drop(old)
            if old.content_hash == item.content_hash:
                self.report.unchanged += 1  # touched: same content, refreshed metadata
            else:
                self.report.updated += 1
        elif source.path in gone:
            del gone[source.path]
            self._drop(source)
            self.report.renamed += 1
        else:
            self.report.added += 1
        self._add(item, source.row, vectors, source.rows)

    def _embed(self, batch: list[Prepared], by_path: dict[str, _Stored]) -> None:
        """Embed every frame and audio part of the batch's files, then add their rows."""
        encoder = self._get_encoder()
        vectors, part_vecs = self._encode(batch)
        read = [fr for item in batch for fr in item.frames if fr.ocr]
        text_vecs = (encoder.encode_texts([lines_text(fr.ocr) or "" for fr in read])
                     if read else None)  # the text read in pictures, embedded
        text_at = 0
        at = part_at = 0
        for item in batch:
            old = by_path.get(item.found.path)
            if old is not None:
                self._drop(old)
                self.report.updated += 1
            else:
                self.report.added += 1
            n, m = len(item.frames), len(item.parts)
            rows = [{"start_s": fr.start_s, "end_s": fr.end_s, "channel": "visual",
                     "ocr": lines_text(fr.ocr), "ocr_lines": lines_json(fr.ocr)}
                    for fr in item.frames]
            rows += [{"start_s": p.start_s, "end_s": p.end_s, "channel": p.channel,
                      p.channel if p.channel == "tags" else "transcript": p.text}
                     for p in item.parts]
            item_vecs = list(vectors[at:at + n])
            if m:
                item_vecs += list(part_vecs[part_at:part_at + m])
            for fr in item.frames:  # the text read in a picture: a row of channel "ocr"
                if fr.ocr:
                    rows.append({"start_s": fr.start_s, "end_s": fr.end_s, "channel": "ocr",
                                 "ocr": lines_text(fr.ocr), "ocr_lines": lines_json(fr.ocr)})
                    assert text_vecs is not None
                    item_vecs.append(text_vecs[text_at])
                    text_at += 1
            # a CLAP window without a tag row still needs a main row (its moment): channel
            # "audio", zero main-space vector (it is found through the CLAP space only)
            tagged = {p.start_s for p in item.parts if p.channel == "tags"}
            for a, b, _ in item.clap:
                if a not in tagged:
                    rows.append({"start_s": a, "end_s": b, "channel": "audio"})
                    item_vecs.append(np.zeros(encoder.dim, np.float32))
            if not rows:  # a sound without tags or words: one row keeps it remembered
                rows.append({"start_s": 0.0, "end_s": item.meta.get("duration_s"),
                             "channel": "audio"})
                item_vecs.append(np.zeros(encoder.dim, np.float32))
            done = item.meta.get("audio_channels")
            if (self.audio is not None and done not in (None, NO_SOUND)
                    and set(self.audio.wanted) - set(done.split(","))):
                self.report.incomplete += 1
            self._add(item, item.meta, item_vecs, rows)
            if self.side is not None:
                item_id = file_id(item.found.path)
                self._side_replace.add(item_id)
                self._side_rows.extend((item_id, a, b, v) for a, b, v in item.clap)
            at += n
            part_at += m

    def _encode(self, batch: list[Prepared]) -> tuple[np.ndarray, np.ndarray | None]:
        """The vectors of the batch's frames and of its audio parts (None without parts)."""
        import torch

        encoder = self._get_encoder()
        frames = [fr for item in batch for fr in item.frames]
        vectors = np.concatenate([
            encoder.encode_images(torch.stack([fr.pixels.float()
                                               for fr in frames[i:i + self.batch_size]]))
            for i in range(0, len(frames), self.batch_size)] or [np.zeros((0, encoder.dim))])
        parts = [p for item in batch for p in item.parts]
        tagged = any(p.channel == "tags" for p in parts)
        labels = self.audio.tag_labels if self.audio is not None and tagged else None
        return vectors, part_vectors(encoder, parts, labels) if parts else None

    def _drop(self, old: _Stored) -> None:
        """Delete a stored file's rows (and its side-space rows) at the next commit."""
        self._deletes.extend(old.keys)
        if self.side is not None:
            self._side_replace.add(file_id(old.path))

    def _add(self, item: Prepared, meta: dict[str, Any], vectors: list[np.ndarray],
             rows: list[dict[str, Any]]) -> None:
        """Queue a file's rows (one per vector, `rows` holding _ROW_META) for the next commit."""
        f = item.found
        base = dict(meta)
        base.update(id=file_id(f.path), path=f.path, modality=f.modality, bytes=f.size,
                    mtime=utc_naive(f.mtime_ns), mtime_ns=f.mtime_ns,
                    content_hash=item.content_hash, indexed_at=utc_naive())
        for vector, row in zip(vectors, rows, strict=True):
            self._rows.append({**base, **row})
            self._vectors.append(vector)

    def _stored_vector(self, key: int) -> np.ndarray:
        return self._stored_vectors.take(np.array([self._key_rows[key]], dtype=np.int64))[0]

    def _maybe_commit(self) -> None:
        due = time.monotonic() - self._last_commit > config.COMMIT_SECONDS
        if len(self._rows) >= self.commit_every or (due and self._rows):
            self._commit()

    def _commit(self, final_failed: dict[str, list[Any]] | None = None) -> None:
        manifest = self.store.manifest
        settings_changed = bool(self._audio_pin and manifest.get("audio") != self._audio_pin
                                and (self._rows or manifest.get("generation")))
        if not self._rows and not self._deletes and not settings_changed and (
                final_failed is None or final_failed == manifest.get("failed", {})):
            return
        batches = []
        model = None
        if self._rows:
            table = file_rows_table(self._rows)
            keys = self.store.allocate_keys(len(table))
            table = table.set_column(0, "key", _int64(keys))
            batches.append(Batch(table, np.stack(self._vectors)))
            if self._encoder is not None and not self.store.model:
                model = self._model_pin(self._encoder)
        if self.side is not None and self._clap_spec:  # side first: see audio/space.py
            self.side.commit(self._side_rows, self._side_replace, self._clap_spec)
            self._side_rows, self._side_replace = [], set()
        dim = self._encoder.dim if self._encoder is not None else None
        extra: dict[str, Any] = {"failed": final_failed} if final_failed is not None else {}
        if settings_changed:  # --tags/--speech... change what the store computes
            extra["audio"] = self._audio_pin
        if self._rows and self._ocr_pin and self.store.manifest.get("ocr") != self._ocr_pin:
            extra["ocr"] = self._ocr_pin
        self.store.commit(batches, np.array(self._deletes, dtype=np.int64), model=model,
                          dim=dim if not self.store.manifest.get("dim") else None, extra=extra)
        self._rows, self._vectors, self._deletes = [], [], []
        self._last_commit = time.monotonic()


def _plain_rows(table: Any) -> list[dict[str, Any]]:
    """The table's rows as dicts, timestamps as integers of their unit (pyarrow converts
    timestamps to datetimes through pandas, seconds of a no-op run's start; the integers
    go back into timestamp columns as they are)."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.int64()))
    return table.to_pylist()


def _int64(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.int64())


def _stored_files(rows: list[dict[str, Any]]) -> list[_Stored]:
    """Stored files from their rows (moments share their file's row data), moments in order."""
    out: dict[str, _Stored] = {}
    for row in rows:
        path = row.get("path")
        if not path or row.get("mtime_ns") is None:
            continue
        stored = out.get(path)
        if stored is None:
            meta = {k: row.get(k) for k in _FILE_META}
            stored = out[path] = _Stored([], path, int(row.get("bytes") or -1),
                                         int(row["mtime_ns"]), row.get("content_hash") or "",
                                         meta)
        stored.keys.append(int(row["key"]))
        stored.rows.append({k: row.get(k) for k in _ROW_META})
    for stored in out.values():
        if len(stored.keys) > 1:
            order = sorted(range(len(stored.keys)),
                           key=lambda i: (stored.rows[i]["start_s"] or 0.0, stored.keys[i]))
            stored.keys = [stored.keys[i] for i in order]
            stored.rows = [stored.rows[i] for i in order]
    return list(out.values())


def index_inputs(paths: Iterable[str | os.PathLike[str]], fps: float, scene_threshold: float,
                 video_time_limit: float | None) -> tuple[VideoOptions, list[str]]:
    """Check an index run's video options and paths: (options, absolute paths).

    Raises UsageError for a bad option or a path that does not exist.
    """
    try:
        video = VideoOptions(fps, scene_threshold, video_time_limit
                             if video_time_limit is not None else time_limit_setting())
    except ValueError as e:
        raise UsageError(str(e)) from None
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    missing = [p for p in roots if not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return video, roots
