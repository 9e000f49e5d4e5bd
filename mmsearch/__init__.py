"""mmsearch: find photos, videos, audio and products by meaning.

    import mmsearch
    col = mmsearch.open("indexes/photos", model="ViT-B-32-256:datacomp_s34b_b86k")
    col.index(["~/Pictures"])
    for hit in col.search(text="red mug on a desk", k=5, where="width >= 300"):
        print(hit.score, hit.path)
"""

from mmsearch.collection import Collection, open
from mmsearch.errors import MmsearchError, ModelMismatchError, UsageError
from mmsearch.indexer import IndexReport
from mmsearch.request import SearchOptions, SearchRequest, TextTerm
from mmsearch.results import Result, results_to_arrow, results_to_pandas

__version__ = "0.1.0"

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
