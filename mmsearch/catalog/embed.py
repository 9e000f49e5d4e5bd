"""Embed prepared products: images in batches (decoded in threads), texts in batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mmsearch import config
from mmsearch.catalog.products import Products, product_rows
from mmsearch.encoders.base import Encoder
from mmsearch.errors import BadMediaError
from mmsearch.ingest.images import decode_image

if TYPE_CHECKING:
    import torch


def embed_products(products: Products, encoder: Encoder, batch_size: int = config.BATCH_SIZE,
                   workers: int = 2) -> tuple[pa.Table, np.ndarray, list[tuple[str, str]]]:
    """Store rows and their vectors for `products`; products whose image cannot be decoded
    are left out and returned as (id, reason)."""
    paths = products.paths
    todo = [i for i, p in enumerate(paths) if p is not None]
    min_side = 2 * (encoder.image_size or 0)

    def load(i: int) -> torch.Tensor | str:
        try:
            data = Path(paths[i]).read_bytes()  # type: ignore[arg-type]
            return encoder.preprocess(decode_image(data, config.MAX_IMAGE_PIXELS,
                                                   min_side).image)
        except (OSError, BadMediaError) as e:
            return f"image {paths[i]}: {e}"

    pixels: dict[int, torch.Tensor] = {}
    failed: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, out in zip(todo, pool.map(load, todo), strict=True):
            if isinstance(out, str):
                failed.append((products.ids[i], out))
            else:
                pixels[i] = out
    if failed:  # drop failed products entirely: their old rows stay as they were
        bad = {f[0] for f in failed}
        keep = [i for i, item in enumerate(products.ids) if item not in bad]
        products = products.take(keep)
        pixels = {new: pixels[old] for new, old in enumerate(keep) if old in pixels}
    order = sorted(pixels)
    import torch

    image_vecs = _batched(lambda b: encoder.encode_images(torch.stack([pixels[i] for i in b])),
                          order, batch_size, encoder.dim)
    texts = [(i, t) for i, t in enumerate(products.texts) if t is not None]
    text_vecs = _batched(lambda b: encoder.encode_texts([t for _, t in b]), texts, batch_size,
                         encoder.dim)
    rows, channels = product_rows(products, [i in pixels for i in range(len(products.ids))])
    vectors = np.empty((len(rows), encoder.dim), np.float32)
    vectors[[c == "visual" for c in channels]] = image_vecs
    vectors[[c == "text" for c in channels]] = text_vecs
    return rows, vectors, failed


def _batched(encode, items: list, batch_size: int, dim: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    parts = [encode(items[lo:lo + batch_size]) for lo in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
