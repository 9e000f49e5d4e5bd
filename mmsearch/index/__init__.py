"""Vector indexes behind one constructor, so the engine never names a FAISS type."""

from __future__ import annotations

import numpy as np

from mmsearch.index.flat import FlatIndex


def build_index(vectors: np.ndarray) -> FlatIndex:
    """The index for a snapshot's vectors (exact for now; IVF-PQ joins at scale)."""
    return FlatIndex(vectors)


__all__ = ["FlatIndex", "build_index"]
