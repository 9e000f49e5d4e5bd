"""Defaults, and the settings that pick a store, model, device and reranker (the
environment is read through `mmsearch.settings`, when used)."""

from __future__ import annotations

import os
from pathlib import Path

from mmsearch.settings import settings

DEFAULT_MODEL = "ViT-B-32-256:datacomp_s34b_b86k"
DEFAULT_STORE = Path("indexes") / "default"
#: Reranker used by `rerank=` / `--rerank` unless a spec is given [env MMSEARCH_RERANKER].
DEFAULT_RERANKER = "blip"

#: Images larger than this many pixels are downscaled right after decoding.
MAX_IMAGE_PIXELS = 16_000_000
#: Rows written per atomic commit while indexing (a kill loses at most this much work);
#: $MMSEARCH_COMMIT_EVERY overrides it (read when used: `commit_every()`).
COMMIT_EVERY = 512
#: Seconds between commits while indexing, whatever the row count.
COMMIT_SECONDS = 30.0
BATCH_SIZE = 32

#: Default sampling rate (frames per second of video).
DEFAULT_FPS = 1.0
#: Default scene-change threshold: mean abs difference of 32x32 gray thumbnails (0-255).
DEFAULT_SCENE_THRESHOLD = 6.0
#: Default wall-clock budget for decoding one video, seconds ($MMSEARCH_VIDEO_TIME_LIMIT
#: overrides it, read when used: `mmsearch.ingest.video.time_limit_setting`).
DEFAULT_TIME_LIMIT = 900.0


def store_path(store: str | os.PathLike[str] | None = None) -> Path:
    """The store folder: the argument, else $MMSEARCH_STORE, else ./indexes/default."""
    if store:
        return Path(store)
    return settings().store or DEFAULT_STORE


def model_spec(model: str | None = None) -> str | None:
    """The model asked for: the argument, else $MMSEARCH_MODEL, else None (store's or default)."""
    return model or settings().model


def device_name(device: str | None = None) -> str | None:
    """The device asked for: the argument, else $MMSEARCH_DEVICE, else None (auto)."""
    return device or settings().device


def reranker_spec(spec: str | None = None) -> str:
    """The reranker asked for: the argument, else $MMSEARCH_RERANKER, else DEFAULT_RERANKER."""
    return spec or settings().reranker or DEFAULT_RERANKER


def commit_every(rows: int | None = None) -> int:
    """Rows per commit while indexing: the argument, else $MMSEARCH_COMMIT_EVERY, else 512."""
    return rows if rows is not None else settings().commit_every
