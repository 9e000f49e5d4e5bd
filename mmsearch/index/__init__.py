"""Vector indexes behind a few constructors, so the engine never names a FAISS type.

Small collections are searched exactly (`FlatIndex`); from `AnnParams.threshold` rows on,
an IVF-PQ index with exact re-scoring (`IVFPQIndex`) that is trained, saved and updated by
`maintain` and loaded by `open_index`.
"""

from __future__ import annotations

from mmsearch.index.flat import FlatIndex
from mmsearch.index.ivfpq import AnnIndex, IVFPQIndex
from mmsearch.index.params import AnnParams

__all__ = ["AnnIndex", "AnnParams", "FlatIndex", "IVFPQIndex"]
