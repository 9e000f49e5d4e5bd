"""Read → hash → decode → preprocess in worker threads, so the encoder never waits.

PIL and hashing release the GIL, so threads give real parallelism without pickling
tensors between processes. Results come back in input order through a bounded window.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from PIL import Image

from mmsearch.audio.analyze import CHANNELS, AudioAnalyzer, AudioPart
from mmsearch.audio.decode import open_audio
from mmsearch.errors import BadMediaError
from mmsearch.ingest.discover import Found
from mmsearch.ingest.images import decode_image
from mmsearch.ingest.video import VideoOptions, decode_video, video_hash

if TYPE_CHECKING:  # frames are tensors; torch loads with the encoder
    import torch

T = TypeVar("T")
#: `audio_channels` of a file with no sound to analyse.
NO_SOUND = "-"
R = TypeVar("R")


class Frame(NamedTuple):
    """One preprocessed frame to embed; start_s/end_s are None for still images; `ocr`:
    the text lines read in it (OCR on), boxes in the file's pixels."""

    pixels: torch.Tensor
    start_s: float | None = None
    end_s: float | None = None
    ocr: list[Any] | None = None


@dataclass
class Prepared:
    """A file after the worker stage: hashed, and decoded unless its content is known.

    An image yields one frame; a video one frame per moment (and audio parts from its
    sound track); an audio file audio parts (tag windows, transcript segments) and, with
    CLAP on, `clap` vectors (start_s, end_s, vector). `warnings` says what was lost from a
    file that was still indexed (a truncated video, a decode time limit). `known`: the
    content hash matched a stored row (nothing was decoded).
    """

    found: Found
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    parts: list[AudioPart] = field(default_factory=list)
    clap: list[tuple[float, float, Any]] = field(default_factory=list)
    known: bool = False
    #: a failure that a later run retries (no audio channel could run), not remembered
    retry: bool = False

    @property
    def pixels(self) -> torch.Tensor | None:
        """The first frame's pixels (an image's only frame), or None."""
        return self.frames[0].pixels if self.frames else None


def content_hash(data: bytes) -> str:
    """Hex digest that identifies a file's content (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare_file(found: Found, known_hashes: Container[str],
                 preprocess: Callable[[Image.Image], torch.Tensor],
                 max_pixels: int, min_side: int = 0,
                 video: VideoOptions | None = None,
                 audio: AudioAnalyzer | None = None, ocr: Any = None) -> Prepared:
    """Worker stage for one file. Never raises for bad input: errors land in `.error`.

    `ocr`: an engine (`mmsearch.ocr.engine.OcrEngine`) that reads the text of each
    picture and kept video moment, or None.
    """
    if found.modality == "video":
        return prepare_video(found, known_hashes, preprocess, video or VideoOptions(), audio,
                             ocr)
    if found.modality == "audio":
        return prepare_audio(found, known_hashes, audio)
    out = Prepared(found)
    try:
        with open(found.path, "rb") as f:
            data = f.read()
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    out.content_hash = content_hash(data)
    if out.content_hash in known_hashes:
        out.known = True
        return out
    try:
        decoded = decode_image(data, max_pixels, min_side)
        out.meta = decoded.meta
        out.frames = [Frame(preprocess(decoded.image),
                            ocr=read_text(ocr, decoded.image, out.meta, out.warnings))]
    except BadMediaError as e:
        out.error = str(e)
    except Exception as e:
        out.error = f"cannot decode: {type(e).__name__}: {e}"
    return out


def prepare_video(found: Found, known_hashes: Container[str],
                  preprocess: Callable[[Image.Image], torch.Tensor],
                  options: VideoOptions, audio: AudioAnalyzer | None = None,
                  ocr: Any = None) -> Prepared:
    """Worker stage for a video: hash (sampled when large), then sample moments.

    Frames are kept in half precision (the encoder casts them back) to halve the memory
    a video with many moments holds until it is embedded.
    """
    out = _hashed(found, known_hashes)
    if out.error or out.known:
        return out
    texts: list[tuple[list[Any] | None, tuple[int, int]]] = []

    def on_frame(im: Image.Image) -> torch.Tensor:
        if ocr is not None:
            texts.append((read_text(ocr, im, None, out.warnings), im.size))
        return preprocess(im).half()

    try:
        decoded = decode_video(found.path, options, on_frame=on_frame)
    except BadMediaError as e:
        out.error = str(e)
        return out
    except Exception as e:
        out.error = f"cannot decode video: {type(e).__name__}: {e}"
        return out
    out.meta = decoded.meta
    out.warnings = [*out.warnings, *decoded.warnings]
    texts += [(None, (1, 1))] * (len(decoded.moments) - len(texts))
    size = (decoded.meta.get("width"), decoded.meta.get("height"))
    out.frames = [Frame(m.image, m.start_s, m.end_s, _scaled(lines, seen, size))
                  for m, (lines, seen) in zip(decoded.moments, texts, strict=True)]
    # the sound channels computed: "-" when there is nothing to compute (no sound track,
    # or one that cannot be decoded), "" when none could run (a later run adds them)
    out.meta["audio_channels"] = ""
    if audio is not None and audio.enabled:
        try:
            stream = open_audio(found.path, time_limit=options.time_limit, require=False)
            if stream is None:
                out.meta["audio_channels"] = NO_SOUND
            else:
                analysis = audio.analyze(stream)
                out.parts, out.clap = analysis.parts, analysis.clap
                out.warnings.extend(analysis.warnings)
                out.meta["audio_channels"] = ",".join(analysis.channels)
        except BadMediaError as e:  # the pictures are still good
            out.warnings.append(f"sound track not indexed: {e}")
            out.meta["audio_channels"] = NO_SOUND
        except Exception as e:
            out.warnings.append(f"sound track not indexed: {type(e).__name__}: {e}")
    return out


def read_text(ocr: Any, image: Image.Image, meta: dict[str, Any] | None,
              warnings: list[str]) -> list[Any] | None:
    """The text lines of a picture (boxes scaled to the original's `width`/`height` in
    `meta`), None when OCR is off or finds nothing. A failure is a warning, not an error:
    the picture is still indexed."""
    if ocr is None:
        return None
    try:
        lines = ocr.read(image)
    except Exception as e:
        warnings.append(f"text not read (OCR failed): {type(e).__name__}: {e}")
        return None
    if not lines:
        return None
    if meta:
        return _scaled(lines, image.size, (meta.get("width"), meta.get("height")))
    return lines


def _scaled(lines: list[Any] | None, seen: tuple[int, int],
            size: tuple[Any, Any]) -> list[Any] | None:
    """Lines whose boxes were read on a `seen`-sized picture, in `size` pixels."""
    if not lines or not size[0] or not size[1] or tuple(seen) == tuple(size):
        return lines
    return [ln.scaled(size[0] / seen[0], size[1] / seen[1]) for ln in lines]


def _hashed(found: Found, known_hashes: Container[str]) -> Prepared:
    """A media file's content hash (sampled when large); `known` when already stored."""
    out = Prepared(found)
    try:
        out.content_hash = video_hash(found.path, found.size)
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    out.known = out.content_hash in known_hashes
    return out


def prepare_audio(found: Found, known_hashes: Container[str],
                  audio: AudioAnalyzer | None) -> Prepared:
    """Worker stage for an audio file: hash, then tag / transcribe / embed its windows."""
    if audio is None or not audio.enabled:
        out = Prepared(found, retry=True)
        out.error = "audio channels are off (--no-tags --no-speech and no --audio-model)"
        return out
    out = _hashed(found, known_hashes)
    if out.error or out.known:
        return out
    if not audio.working():
        out.error = "no audio channel could run (" + "; ".join(
            f"{CHANNELS[c]}: {why}" for c, why in audio.missing.items()) + ")"
        out.retry = True
        return out
    try:
        stream = open_audio(found.path, time_limit=audio.options.time_limit)
        assert stream is not None
        analysis = audio.analyze(stream)
    except BadMediaError as e:
        out.error = str(e)
        return out
    except Exception as e:
        out.error = f"cannot analyse audio: {type(e).__name__}: {e}"
        return out
    out.meta = {"duration_s": analysis.seconds, "codec": stream.meta.get("codec"),
                "sample_rate": stream.meta.get("sample_rate"),
                "audio_channels": ",".join(analysis.channels)}
    out.parts, out.clap, out.warnings = analysis.parts, analysis.clap, analysis.warnings
    return out


def default_workers() -> int:
    """Decode threads: one core's worth less than the machine, so the encoder keeps its own.

    On 2 cores one thread decodes far faster than a CLIP model embeds; more threads only
    preempt the encoder's compute threads.
    """
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                window: int = 256) -> Iterator[R]:
    """Map `fn` over items in threads; yield results in order with at most `window` in flight."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmsearch-decode") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
