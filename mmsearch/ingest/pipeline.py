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
from typing import Any, TypeVar

import torch
from PIL import Image

from mmsearch.errors import BadMediaError
from mmsearch.ingest.discover import Found
from mmsearch.ingest.images import decode_image

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Prepared:
    """A file after the worker stage: hashed, and decoded unless its content is known."""

    found: Found
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    pixels: torch.Tensor | None = None
    error: str | None = None

    @property
    def known(self) -> bool:
        """True when the content hash matched a stored row (no decoding was needed)."""
        return self.error is None and self.pixels is None


def content_hash(data: bytes) -> str:
    """Hex digest that identifies a file's content (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare_file(found: Found, known_hashes: Container[str],
                 preprocess: Callable[[Image.Image], torch.Tensor],
                 max_pixels: int, min_side: int = 0) -> Prepared:
    """Worker stage for one file. Never raises for bad input: errors land in `.error`."""
    out = Prepared(found)
    try:
        with open(found.path, "rb") as f:
            data = f.read()
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    out.content_hash = content_hash(data)
    if out.content_hash in known_hashes:
        return out
    try:
        decoded = decode_image(data, max_pixels, min_side)
        out.pixels = preprocess(decoded.image)
        out.meta = decoded.meta
    except BadMediaError as e:
        out.error = str(e)
    except Exception as e:
        out.error = f"cannot decode: {type(e).__name__}: {e}"
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
