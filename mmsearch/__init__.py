"""mmsearch: find photos, videos, audio and products by meaning.

    import mmsearch
    col = mmsearch.open("indexes/photos", model="ViT-B-32-256:datacomp_s34b_b86k")
    col.index(["~/Pictures"])
    for hit in col.search(text="red mug on a desk", k=5, where="width >= 300"):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmsearch.errors import MmsearchError, ModelMismatchError, UsageError

if TYPE_CHECKING:
    from mmsearch.collection import Collection, open
    from mmsearch.indexer import IndexReport
    from mmsearch.request import SearchOptions, SearchRequest, TextTerm
    from mmsearch.results import Result, results_to_arrow, results_to_pandas

__version__ = "0.1.0"

#: Imported on first use, so `import mmsearch` (and `mmsearch --help`) start fast.
_LAZY = {"Collection": "mmsearch.collection", "open": "mmsearch.collection",
         "IndexReport": "mmsearch.indexer", "Result": "mmsearch.results",
         "results_to_arrow": "mmsearch.results", "results_to_pandas": "mmsearch.results",
         "SearchRequest": "mmsearch.request", "SearchOptions": "mmsearch.request",
         "TextTerm": "mmsearch.request"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmsearch' has no attribute {name!r}")

__all__ = [
           "Collection",
           "IndexReport",
           "MmsearchError",
           "ModelMismatchError",
           "Result",
           "SearchOptions",
           "SearchRequest",
           "TextTerm",
           "UsageError",
           "__version__",
           "open",
           "results_to_arrow",
           "results_to_pandas",
]
