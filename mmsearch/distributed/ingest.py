"""Distributed ingestion on Ray Data: decoding and embedding on an encoder actor pool.

The driver does what needs the whole store: discovery, change detection (unchanged,
renamed by content hash, deleted) and failure bookkeeping, with the very code of a local
run (`RayIndexer` is an `Indexer`); so incremental behaviour and failure reports are
identical. The files to (re)index become a Ray Dataset; `map_batches` sends them to
`EncodeFiles` actors (one GPU each when the cluster has GPUs, else CPU) that decode
(images, video moments, audio parts) and embed; the driver receives each file's rows and
vectors (pixels never travel back) and routes them to one `ShardWriter` actor per shard
(`writer_actor.py`), which commits through the shard's normal protocol. Ray retries a
batch whose actor died on a restarted actor, so a killed worker loses nothing; a killed
writer's commit is retried once it restarts; a killed driver leaves every shard at its
last commit, and the next run goes on from there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsearch import config
from mmsearch.audio.embed import part_vectors
from mmsearch.audio.settings import AudioSettings
from mmsearch.encoders.registry import load_encoder
from mmsearch.indexer import Indexer
from mmsearch.ingest.discover import Found
from mmsearch.ingest.pipeline import Frame, Prepared, prepare_file
from mmsearch.ingest.video import VideoOptions
from mmsearch.ocr.engine import LazyEngine

#: Fault drills: when this (on the driver) names a file that does not exist yet, the first
#: encoder actor to start a batch creates it and exits (Ray restarts the actor and retries
#: the batch).
DRILL_EXIT_ONCE = "MMSEARCH_RAY_DRILL_EXIT_ONCE"
#: Files per batch sent to an encoder actor.
FILES_PER_BATCH = 16


class EncodeFiles:
    """Ray Data callable class: decode and embed a batch of files (one model per actor)."""

    def __init__(self, spec: str, device: str | None, known: set[str], max_pixels: int,
                 video: VideoOptions, audio: dict[str, Any] | None,
                 drill: str | None = None, ocr: bool = False) -> None:
        self.device = config.device_name(device or ("cuda" if torch.cuda.is_available()
                                                    else "cpu"))
        self.encoder = load_encoder(spec, self.device)
        self.known = known
        self.max_pixels = max_pixels
        self.video = video
        settings = AudioSettings(**audio) if audio else None
        self.audio = settings.analyzer(self.device) if settings else None
        self.drill = drill
        self.ocr = LazyEngine() if ocr else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.drill and not os.path.exists(self.drill):
            Path(self.drill).write_text(str(os.getpid()))
            os._exit(1)
        items = []
        for path, size, mtime, modality in zip(batch["path"], batch["size"], batch["mtime_ns"],
                                               batch["modality"], strict=True):
            found = Found(str(path), int(size), int(mtime), str(modality))
            items.append(self._one(found))
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return {"item": out}

    def _one(self, found: Found) -> Prepared:
        enc = self.encoder
        item = prepare_file(found, self.known, enc.preprocess, self.max_pixels,
                            2 * (enc.image_size or 0), self.video, self.audio, self.ocr)
        if item.error or item.known:
            return item
        vectors = (enc.encode_images(torch.stack([f.pixels.float() for f in item.frames]))
                   if item.frames else np.zeros((0, enc.dim), np.float32))
        labels = self.audio.tag_labels if self.audio is not None and item.parts else None
        item.vectors = vectors  # type: ignore[attr-defined]
        item.part_vectors = (part_vectors(enc, item.parts, labels)  # type: ignore[attr-defined]
                             if item.parts else None)
        empty = torch.zeros(0)
        item.frames = [Frame(empty, f.start_s, f.end_s, f.ocr) for f in item.frames]
        return item


class RayIndexer(Indexer):
    """An `Indexer` whose worker stage (decode + embed) runs on a Ray Data actor pool.

    Args:
        ray: the connected `ray` module.
        actors: encoder actors (None: one per GPU, else 2 on CPU).
        Others: as `Indexer`.
    """

    def __init__(self, *args: Any, ray: Any, actors: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ray = ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.gpus = gpus
        self.actors = actors or max(gpus, 2 if not gpus else 1)

    def _prepared(self, work: Callable[[Found], Prepared], todo: list[Found],
                  window: int) -> Iterable[Prepared]:
        known = set(work.keywords["known_hashes"])  # type: ignore[attr-defined]
        encoder = self._get_encoder()
        audio = None
        if self.audio is not None and self._audio_pin:
            audio = dict(self._audio_pin)
        data = self.ray.data
        rows = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
                 "modality": f.modality} for f in todo]
        blocks = max(1, min(len(rows), len(rows) // FILES_PER_BATCH + 1))
        ds = data.from_items(rows, override_num_blocks=blocks).map_batches(
            EncodeFiles, batch_size=FILES_PER_BATCH, batch_format="numpy",
            concurrency=self.actors, num_gpus=1 if self.gpus else 0,
            num_cpus=0 if self.gpus else 1, max_restarts=-1, max_task_retries=-1,
            fn_constructor_kwargs={"spec": encoder.spec, "device": None if self.gpus
                                   else "cpu", "known": known,
                                   "max_pixels": self.max_pixels, "video": self.video,
                                   "audio": audio, "drill": os.environ.get(DRILL_EXIT_ONCE),
                                   "ocr": self.ocr is not None})
        return _items(ds)

    def _encode(self, batch: list[Prepared]) -> tuple[np.ndarray, np.ndarray | None]:
        dim = self._get_encoder().dim
        vectors = np.concatenate([item.vectors for item in batch]  # type: ignore[attr-defined]
                                 or [np.zeros((0, dim), np.float32)])
        parts = [item.part_vectors for item in batch  # type: ignore[attr-defined]
                 if item.part_vectors is not None]  # type: ignore[attr-defined]
        return vectors, np.concatenate(parts) if parts else None


def _items(ds: Any) -> Iterator[Prepared]:
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield from batch["item"]
