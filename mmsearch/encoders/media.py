"""Embed an example image given as a path, raw bytes or a PIL image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch import config, limits
from mmsearch.encoders.base import Encoder
from mmsearch.errors import BadMediaError, UsageError
from mmsearch.ingest.images import ImageTooLarge, decode_image

#: An image as the API takes it: a path, raw bytes or a PIL image.
ImageQuery = str | os.PathLike[str] | bytes | Any


def embed_image(encoder: Encoder, image: ImageQuery) -> np.ndarray:
    """The (1, dim) unit vector of one image; UsageError when it cannot be read or decoded."""
    from PIL import Image

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
