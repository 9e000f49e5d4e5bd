"""Vector indexes behind a few constructors, so the engine never names a FAISS type.

Small collections are searched exactly (`FlatIndex`); from `AnnParams.threshold` rows on,
an IVF-PQ index with exact re-scoring (`IVFPQIndex`). This package wraps FAISS over arrays
and files and knows nothing of stores: `mmsearch.view.ann` trains, saves and reopens a
store's index. It is the only package that imports faiss (`set_threads` for the others).
"""

from __future__ import annotations

from mmsearch.index.flat import FlatIndex
from mmsearch.index.ivfpq import AnnIndex, IVFPQIndex
from mmsearch.index.params import AnnParams
from mmsearch.index.threads import set_threads

__all__ = ["AnnIndex", "AnnParams", "FlatIndex", "IVFPQIndex", "set_threads"]
