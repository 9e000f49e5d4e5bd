"""Thumbnails of search results: the image itself, or a video's frame at its best moment."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw

from mmsearch import config
from mmsearch.errors import BadMediaError, MediaChangedError
from mmsearch.ingest.images import decode_image
from mmsearch.ingest.video import read_frame
from mmsearch.media import Recorded, read_verified, verified
from mmsearch.results import Result

#: Largest image file a thumbnail is made from.
MAX_THUMBNAIL_SOURCE_BYTES = 256 * 2**20


def thumbnail(result: Result, size: int = 256, recorded: Recorded | None = None,
              outline: bool = True) -> Image.Image:
    """An RGB image of a result no larger than `size` x `size` (aspect ratio kept).

    Videos: the frame at the moment's `start_s` (the frame that was embedded); images:
    the picture, upright. Only regular files are read, and with `recorded` (what the
    store knows of the file) only while they are the file that was indexed
    (`mmsearch.media`). With `outline`, the text line that matched the query (OCR,
    `ocr_match`) is outlined in red. Raises BadMediaError when the file cannot be read
    any more, MediaChangedError when it changed.
    """
    if not result.path:
        raise BadMediaError(f"item {result.id} has no file to make a thumbnail from")
    rec = recorded or Recorded(result.path, result.modality)
    if result.modality == "video":
        verified(rec)
        image = read_frame(result.path, result.start_s or 0.0)
    else:
        data = read_verified(rec, MAX_THUMBNAIL_SOURCE_BYTES)
        image = decode_image(data, config.MAX_IMAGE_PIXELS).image
    image = image.convert("RGB")
    if outline:
        _outline(image, result)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


def _outline(image: Image.Image, result: Result) -> None:
    """Draw the matched OCR line's box (stored in the file's pixels) onto `image`."""
    match = result.metadata.get("ocr_match")
    box = match.get("box") if isinstance(match, dict) else None
    if not box:
        return
    sx = image.width / float(result.metadata.get("width") or image.width)
    sy = image.height / float(result.metadata.get("height") or image.height)
    points = [(x * sx, y * sy) for x, y in box]
    ImageDraw.Draw(image).polygon(points, outline=(255, 0, 0),
                                  width=max(2, round(max(image.size) / 200)))


def write_thumbnails(results: Iterable[Result], folder: str | os.PathLike[str],
                     size: int = 256) -> list[tuple[Result, Path | None, str | None]]:
    """Write one JPEG per result into `folder`: `<rank>-<name>[-<start ms>].jpg`.

    Returns (result, written path or None, error or None) per result; a missing or broken
    file does not stop the others.
    """
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Result, Path | None, str | None]] = []
    for rank, result in enumerate(results, 1):
        stem = Path(result.path).stem if result.path else result.id
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60] or result.id
        at = f"-{round((result.start_s or 0.0) * 1000):07d}ms" if result.start_s is not None \
            else ""
        target = out_dir / f"{rank:03d}-{stem}{at}.jpg"
        try:
            thumbnail(result, size).save(target, "JPEG", quality=88)
        except (BadMediaError, MediaChangedError, OSError) as e:
            written.append((result, None, str(e)))
            continue
        written.append((result, target, None))
    return written
