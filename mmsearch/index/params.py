"""Settings of the approximate (IVF-PQ) index and when to use it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsearch.errors import UsageError

#: Re-score depth (× max(k, 10) candidates) when none is set and none was measured.
DEFAULT_RERANK = 20


@dataclass(frozen=True)
class AnnParams:
    """How the vector index chooses and shapes itself.

    Every field can also be set with an environment variable `MMSEARCH_ANN_<FIELD>`
    (e.g. `MMSEARCH_ANN_THRESHOLD=200000`); arguments win over the environment.

    Attributes:
        threshold: live rows from which IVF-PQ replaces exact search (below: exact).
        m: PQ sub-quantizers (lowered to a divisor of dim); codes take m × nbits / 8 bytes.
        nbits: bits per sub-quantizer code. 4 (default): FAISS "fast scan" PQ, SIMD, CPU
            only (on a GPU 8 is used); 8: classic IVF-PQ, 256 centroids per sub-quantizer.
        opq: rotate vectors with a trained OPQ matrix before PQ (slower training).
        nlist: inverted lists; 0 = auto, a power of two near sqrt(rows).
        nprobe: lists visited per query; 0 = auto: the measured setting (see
            `target_recall`), else nlist / 64 (at least 8).
        rerank: candidates re-scored exactly per result asked for (max(k, 10) * rerank);
            0 = auto: the measured setting, else 20.
        target_recall: recall@10 the index is tuned for. At each (re)training a sample of
            stored vectors is held out as queries and the cheapest nprobe and re-score depth
            reaching this recall against exact search are chosen (mmsearch.index.tuning);
            the measured recall is stored with the index and shown by `mmsearch info`.
        tune_queries: held-out queries for that measurement.
        remeasure_growth: measure again once the rows grew (or shrank) this many times
            since the last measurement, without retraining.
        growth: retrain once the live rows reach growth × the rows it was trained on
            (or shrink below 1/growth of them).
        train_per_list: training sample size per inverted list (at least 256 × 40 rows).
        niter: k-means iterations when training.
        filter_exact_rows: a filter matching at most this many rows is searched exactly
            among those rows; a looser one through the index, restricted to them. Set from
            measurements at 100k and 1M (benchmarks/RESULTS.md, ANN section): the
            restricted index search is faster at every size, but its recall@10 depends on
            how many rows match (0.56-0.91 up to 20k rows, 0.95-0.99 from ~30k), so exact
            search is kept up to 32,768 rows (~5-30 ms per query on 2 cores).
        filter_vectors_mb: the vectors of recently used filters searched exactly (at most
            `filter_exact_rows` rows each) are kept copied out of the segments, up to this
            many MB per snapshot (0: never; a filter larger than a quarter of it: not kept).
        save_share: rewrite the index file once this share of rows changed since it was
            written (adds and deletes in between are replayed from the segments on open).
        gpu: use a CUDA GPU through faiss-gpu when there is one (None: when present).
        prefault: from the first search on, map the memory-mapped vectors' pages in from a
            background thread (`LiveVectors.prefault`), so re-scoring does not fault
            them in one row at a time; skipped when they exceed half the free memory.
    """

    threshold: int = 50_000
    m: int = 64
    nbits: int = 4
    opq: bool = False
    nlist: int = 0
    nprobe: int = 0
    rerank: int = 0
    target_recall: float = 0.95
    tune_queries: int = 256
    remeasure_growth: float = 2.0
    growth: float = 4.0
    train_per_list: int = 64
    niter: int = 10
    filter_exact_rows: int = 32_768
    filter_vectors_mb: float = 256.0
    save_share: float = 0.05
    gpu: bool | None = None
    prefault: bool = True

    @classmethod
    def resolve(cls, overrides: AnnParams | Mapping[str, Any] | None = None) -> AnnParams:
        """Defaults, then `MMSEARCH_ANN_*` variables, then `overrides`."""
        if isinstance(overrides, AnnParams):
            return overrides
        from mmsearch.settings import fields_from_settings

        params = fields_from_settings(cls, "MMSEARCH_ANN_", overrides, "index parameter(s)")
        if not 0 < params.target_recall <= 1:
            raise UsageError(f"target_recall must be in (0, 1], not {params.target_recall}")
        return params

    def nlist_for(self, rows: int) -> int:
        """Inverted lists for a collection of `rows` rows."""
        if self.nlist:
            return max(1, min(self.nlist, rows // 39 or 1))
        auto = 2 ** round(math.log2(max(1.0, math.sqrt(rows))))
        return int(max(16, min(auto, 65536, max(1, rows // 39))))

    def nprobe_for(self, nlist: int) -> int:
        return int(min(nlist, self.nprobe or max(8, nlist // 64)))

    def m_for(self, dim: int) -> int:
        """The largest divisor of dim that is at most `m`."""
        return max(d for d in range(1, min(self.m, dim) + 1) if dim % d == 0)


