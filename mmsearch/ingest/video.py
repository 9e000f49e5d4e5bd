"""Decode videos with PyAV into moments: sampled frames, near-duplicates dropped.

A video becomes a list of *moments*. Frames are sampled on a time grid (`fps` samples per
second, default 1); a sampled frame is kept only when it differs from the last kept one
(mean absolute difference of 32x32 grayscale thumbnails above `scene_threshold`, on a 0-255
scale), so a static shot costs one vector. A kept frame's moment spans from its time until
the next kept frame, the last one until the end of the video, the first one from 0: the
moments cover the whole video.

Speed: only sampled frames are converted (to a tiny grayscale thumbnail for the scene test,
to RGB only when kept). Decoding is threaded and skips what sampling does not need: when
the container's index shows keyframes at least as dense as the sampling grid, only
keyframes are decoded (`skip_frame="NONKEY"`); otherwise non-reference frames are skipped
(`skip_frame="NONREF"`), which no other frame depends on.

Bad input never raises out of `decode_video` except as `BadMediaError` (nothing usable);
a truncated or corrupt stream keeps the frames decoded before the damage and reports it in
`DecodedVideo.warnings`; a wall-clock budget, checked between packets, bounds the time
spent on one file.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.config import DEFAULT_FPS, DEFAULT_SCENE_THRESHOLD
from mmsearch.errors import BadMediaError

#: Kept frames are scaled down so their short side is at most this (plenty for CLIP inputs).
FRAME_SHORT_SIDE = 448

#: Files up to this size are hashed in full; larger ones by samples (see `video_hash`).
FULL_HASH_BYTES = 64 << 20
_HASH_EDGE = 8 << 20
_HASH_SAMPLE = 1 << 20
_HASH_SAMPLES = 16

_THUMB = 32


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled: see the module docstring."""

    fps: float = DEFAULT_FPS
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    time_limit: float = field(default_factory=lambda: time_limit_setting())
    crop_borders: bool = True

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError("fps must be positive")
        if self.scene_threshold < 0:
            raise ValueError("scene_threshold must be >= 0")
        if not self.time_limit > 0:
            raise ValueError("time_limit must be positive")


def time_limit_setting() -> float:
    """Seconds of decoding per video: $MMSEARCH_VIDEO_TIME_LIMIT, else DEFAULT_TIME_LIMIT."""
    from mmsearch.settings import settings

    return settings().video_time_limit


@dataclass
class Moment:
    """One kept frame and the span of video it stands for."""

    image: Image.Image
    start_s: float
    end_s: float


@dataclass
class DecodedVideo:
    """Moments of a video, its metadata, and what went wrong on the way (if anything)."""

    moments: list[Moment]
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    sampled: int = 0
    decoded: int = 0


def video_hash(path: str, size: int | None = None) -> str:
    """Content identity of a video file, BLAKE2b-128, read in chunks.

    Files up to `FULL_HASH_BYTES` (64 MiB) are hashed in full. Larger files hash their size,
    the first and last 8 MiB and 16 evenly spaced 1 MiB samples in between (about 32 MiB
    read whatever the file size): a re-encode, trim or edit changes the container header
    and index at the ends, so this tells videos apart in practice, while a multi-GB file
    costs no more than a small one.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        if size <= FULL_HASH_BYTES:
            while chunk := f.read(1 << 20):
                h.update(chunk)
            return h.hexdigest()
        h.update(b"mmsearch-sampled-v1:%d:" % size)
        f.seek(0)
        h.update(f.read(_HASH_EDGE))
        middle = size - 2 * _HASH_EDGE - _HASH_SAMPLE
        for i in range(_HASH_SAMPLES):
            f.seek(_HASH_EDGE + middle * i // max(1, _HASH_SAMPLES - 1))
            h.update(f.read(_HASH_SAMPLE))
        f.seek(size - _HASH_EDGE)
        h.update(f.read(_HASH_EDGE))
    return h.hexdigest()


def decode_video(path: str, options: VideoOptions | None = None,
                 on_frame: Callable[[Image.Image], Any] | None = None) -> DecodedVideo:
    """Sample a video into moments (see the module docstring).

    Raises BadMediaError when the file cannot be opened as a video, has no video stream,
    or yields no frame at all. `on_frame`, when given, is applied to each kept image and
    its result stored instead of the image (the indexer preprocesses there).
    """
    import av

    opts = options or VideoOptions()
    deadline = time.monotonic() + opts.time_limit
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise BadMediaError(f"not a readable video: {_reason(e)}") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise BadMediaError(f"no video stream ({', '.join(map(str, kinds))} only)")
        stream = container.streams.video[0]
        meta, declared = _meta(container, stream)
        origin = _origin(container, stream)
        step = 1.0 / opts.fps
        keyframes_only = _dense_keyframes(stream, step, origin)
        ctx = stream.codec_context
        stream.thread_type = "AUTO"
        ctx.skip_frame = "NONKEY" if keyframes_only else "NONREF"
        out = DecodedVideo([], meta)
        kept: list[tuple[float, Any]] = []
        last_thumb: np.ndarray | None = None
        next_t = 0.0
        end_t = 0.0
        errors = 0
        rate = float(stream.average_rate or stream.guessed_rate or 25)

        def take(frame: Any) -> None:
            nonlocal last_thumb, next_t, end_t
            out.decoded += 1
            t = frame.time
            t = (out.decoded - 1) / rate if t is None else max(0.0, float(t) - origin)
            dur = float(frame.duration * frame.time_base) if frame.duration and \
                frame.time_base else (step if keyframes_only else 1.0 / rate)
            end_t = max(end_t, t + dur)
            if t + 1e-6 < next_t:
                return
            out.sampled += 1
            next_t = (math.floor(t / step + 1e-6) + 1) * step
            thumb = frame.reformat(width=_THUMB, height=_THUMB, format="gray",
                                   interpolation="AREA").to_ndarray().astype(np.int16)
            if last_thumb is not None and \
                    float(np.abs(thumb - last_thumb).mean()) <= opts.scene_threshold:
                return
            last_thumb = thumb
            image = _to_image(frame)
            if opts.crop_borders:
                image = crop_borders(image)
            kept.append((t, on_frame(image) if on_frame else image))

        try:
            for packet in container.demux(stream):
                if time.monotonic() > deadline:
                    out.warnings.append(f"decode time limit ({opts.time_limit:g} s) reached "
                                        f"at {_clock(end_t)}; kept what was decoded")
                    break
                try:
                    for frame in packet.decode():
                        take(frame)
                except av.FFmpegError as e:
                    errors += 1
                    if errors == 1:
                        out.warnings.append(f"corrupt data near {_clock(end_t)}: {_reason(e)}")
                    if errors > 50:
                        out.warnings.append("too many decode errors; stopped")
                        break
        except av.FFmpegError as e:
            out.warnings.append(f"cannot read on after {_clock(end_t)}: {_reason(e)}")
        if not kept:
            raise BadMediaError("no decodable video frame" +
                                (f" ({out.warnings[0]})" if out.warnings else ""))
        duration = end_t
        if declared and declared > end_t + max(1.0, 2 * step) and not any(
                "time limit" in w for w in out.warnings):
            out.warnings.append(f"truncated: decoded {_clock(end_t)} of {_clock(declared)}")
        elif declared and not out.warnings:
            duration = max(end_t, declared)
        meta["duration_s"] = round(duration, 3)
        for i, (t, image) in enumerate(kept):
            start = 0.0 if i == 0 else t
            end = kept[i + 1][0] if i + 1 < len(kept) else max(duration, t)
            out.moments.append(Moment(image, round(start, 3), round(end, 3)))
        return out


def _meta(container: Any, stream: Any) -> tuple[dict[str, Any], float | None]:
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if abs(_rotation(stream)) % 180 == 90:
        width, height = height, width
    declared = None
    if stream.duration and stream.time_base:
        declared = float(stream.duration * stream.time_base)
    elif container.duration:
        declared = container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    meta = {"width": width or None, "height": height or None,
            "fps": round(float(rate), 3) if rate else None,
            "codec": ctx.name, "duration_s": declared,
            "taken_at": None, "camera_make": None, "camera_model": None,
            "gps_lat": None, "gps_lon": None}
    return meta, declared


def _origin(container: Any, stream: Any) -> float:
    """Time of the video's first frame: timestamps are reported relative to it."""
    if stream.start_time is not None and stream.time_base:
        return max(0.0, float(stream.start_time * stream.time_base))
    if container.start_time:
        return max(0.0, container.start_time / 1_000_000)
    return 0.0


def _dense_keyframes(stream: Any, step: float, origin: float) -> bool:
    """True when the container index shows a keyframe at least every `step` seconds.

    Index timestamps are decode times, a few frames off presentation times when there
    are B-frames, hence the tolerance of a few frame durations.
    """
    try:
        entries = stream.index_entries
        times = [float(e.timestamp * stream.time_base) - origin
                 for e in entries if e.is_keyframe]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
    except Exception:
        return False
    if len(times) < 2:
        return False
    tolerance = step + 3.0 / rate
    gaps = np.diff(np.asarray(sorted(times)))
    duration = float(stream.duration * stream.time_base) if stream.duration else times[-1]
    return float(gaps.max()) <= tolerance and duration - times[-1] <= tolerance


def _rotation(stream_or_frame: Any) -> int:
    try:
        return round(getattr(stream_or_frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _to_image(frame: Any) -> Image.Image:
    """RGB PIL image of a frame, short side at most FRAME_SHORT_SIDE, upright."""
    w, h = frame.width, frame.height
    scale = min(1.0, FRAME_SHORT_SIDE / max(1, min(w, h)))
    image = frame.to_image(width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                           interpolation="AREA" if scale < 1 else None)
    rotation = _rotation(frame) % 360
    if rotation:
        image = image.rotate(rotation, expand=True)
    return image


#: Border rows/columns whose brightest pixel is at most this (0-255) count as black bars.
_BAR_LEVEL = 24


def crop_borders(image: Image.Image) -> Image.Image:
    """Cut black letterbox / pillarbox bars off a frame (like FFmpeg's cropdetect).

    Bars must be uniformly dark (brightest pixel <= 24), about symmetric (a dark band on
    one side only is more likely a night sky than a bar) and leave at least 30% of each
    side; otherwise the frame is returned unchanged. Bars hurt embeddings: the encoder's
    centre crop would spend its pixels on black.
    """
    luma = np.asarray(image.convert("L"))
    h, w = luma.shape
    rows = np.flatnonzero(luma.max(axis=1) > _BAR_LEVEL)
    cols = np.flatnonzero(luma.max(axis=0) > _BAR_LEVEL)
    if not len(rows) or not len(cols):
        return image
    box = [0, 0, w, h]
    for lo, hi, size, axis in ((rows[0], h - 1 - rows[-1], h, 1),
                               (cols[0], w - 1 - cols[-1], w, 0)):
        bar = min(lo, hi)
        if bar >= max(2, 0.02 * size) and abs(lo - hi) <= max(2, 0.05 * size) \
                and size - lo - hi >= 0.3 * size:
            box[axis] = lo
            box[axis + 2] = size - hi
    if box == [0, 0, w, h]:
        return image
    return image.crop(tuple(box))


def read_frame(path: str, at_s: float) -> Image.Image:
    """The frame shown at `at_s` seconds (relative to the video's start), as RGB.

    Seeks to the keyframe before it and decodes forward. Raises BadMediaError.
    """
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise BadMediaError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            origin = _origin(container, stream)
            target = origin + max(0.0, float(at_s))
            if stream.time_base and target > origin:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            best = None
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > target + 1e-3:
                    if best is None:
                        best = frame
                    break
                best = frame
            if best is None:
                raise BadMediaError(f"no frame at {at_s:.2f} s")
            return _to_image_full(best)
    except av.FFmpegError as e:
        raise BadMediaError(f"cannot read video: {_reason(e)}") from None


def _to_image_full(frame: Any) -> Image.Image:
    image = frame.to_image()
    rotation = _rotation(frame) % 360
    return image.rotate(rotation, expand=True) if rotation else image


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0][:200]


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, float(seconds)), 60)
    return f"{int(m)}:{s:04.1f}"
