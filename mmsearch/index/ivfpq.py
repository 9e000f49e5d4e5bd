"""Approximate search at scale: FAISS IVF-PQ over store keys, re-scored exactly.

Two layers:

- `AnnIndex` is the trained FAISS index (IVF coarse quantizer + product quantizer,
  optionally behind an OPQ rotation) holding the PQ codes of rows by their store `key`.
  It lives in RAM (codes: `m` bytes per vector, ids: 8), is saved in the store as one
  FAISS file named by the manifest, and is kept up to date by adding new keys and removing
  deleted ones (`sync`), so adds never need a rebuild.
- `IVFPQIndex` is one snapshot's view of it, with the same `search(queries, k, rows)`
  contract as `FlatIndex`: it asks the IVF-PQ index for `k * rerank` candidates, re-scores
  them with the full-precision vectors (memory-mapped from the segments) and keeps only
  live rows of its snapshot, so results never contain deleted items. Filters are planned
  by how many rows match: few → exact search among them; many → IVF-PQ search restricted
  to them by an id bitmap, widening `nprobe` until k results come back.

Distances: vectors are unit length, so the index ranks by L2 (the best-supported FAISS
IVF-PQ path) and the exact re-scoring returns inner products (cosine similarity).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mmsearch.fileio import write_atomic
from mmsearch.index import tuning
from mmsearch.index.params import AnnParams
from mmsearch.index.rwlock import RWLock
from mmsearch.sorted_keys import in_sorted, sorted_union
from mmsearch.vectors import LiveVectors

log = logging.getLogger(__name__)

#: Rows added to the FAISS index per call (bounds the RAM used by gathered vectors).
ADD_CHUNK = 65536
#: One query's candidates up to this many are gathered and scored by numpy: FAISS's
#: `fvec_inner_products_by_idx` opens an OpenMP region per call, which costs more than
#: the arithmetic for a few hundred rows on a busy machine.
GATHER_ROWS = 256
#: Filter bitmaps (with their FAISS selectors) kept per snapshot view.
SELECTORS_KEPT = 8
#: Fewer queries than this are scored against a block of vectors by FAISS's SIMD loop, one
#: query at a time: BLAS's threaded matrix-vector product took 10-40 ms for 10,000 x 512
#: on the shared 2-core machine, the one-thread loop 1.3 ms.
SIMD_QUERIES = 8
#: Exact search over a row subset reads rows in place up to this many (query, row) pairs.
IN_PLACE_PAIRS = 1 << 22


# -- GPU (faiss-gpu, `pip install mmsearch[gpu]`) -------------------------------------------
def gpu_count() -> int:
    """CUDA devices FAISS can use (0 with faiss-cpu)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


def use_gpu(params: AnnParams) -> bool:
    return params.gpu is not False and gpu_count() > 0


class KeyMap:
    """Store keys → row positions of one snapshot (-1 for keys that are not live there).

    Keys are dense in practice (a store numbers its rows 0, 1, 2, ... and compaction keeps
    the gaps from deletes small), so the map is a direct lookup table over 0..max key
    (4 bytes per key) when that is at most `DENSE_FACTOR` × the rows, else a binary search
    over the sorted keys.
    """

    #: Largest (max key + 1) / rows ratio for which a direct lookup table is used.
    DENSE_FACTOR = 2

    def __init__(self, row_keys: np.ndarray) -> None:
        self.row_keys = np.asarray(row_keys, dtype=np.int64)
        if len(self.row_keys) < 2 or bool((np.diff(self.row_keys) > 0).all()):
            self.sorted_keys, self.order = self.row_keys, None
        else:
            self.order = np.argsort(self.row_keys, kind="stable")
            self.sorted_keys = self.row_keys[self.order]
        self.max_key = int(self.sorted_keys[-1]) if len(self.sorted_keys) else -1
        n = len(self.row_keys)
        self.table: np.ndarray | None = None
        if n and self.sorted_keys[0] >= 0 and self.max_key < self.DENSE_FACTOR * n + 1024:
            kind = np.int32 if n < 2**31 else np.int64
            # slot key + 1 holds key's row; the first slot (key -1, FAISS's "none") and the
            # last (any key past max_key, clipped to it) hold -1
            self.table = np.full(self.max_key + 3, -1, dtype=kind)
            self.table[self.row_keys + 1] = np.arange(n, dtype=kind)

    @property
    def nbytes(self) -> int:
        """RAM held by the map."""
        extra = 0 if self.table is None else self.table.nbytes
        if self.order is not None:
            extra += self.order.nbytes + self.sorted_keys.nbytes
        return self.row_keys.nbytes + extra

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if not len(self.sorted_keys):
            return np.full(keys.shape, -1, dtype=np.int64)
        if self.table is not None:  # one clipped lookup: keys below -1 read slot 0 (-1)
            return self.table.take(keys + 1, mode="clip").astype(np.int64)
        pos = np.searchsorted(self.sorted_keys, keys)
        pos = np.minimum(pos, len(self.sorted_keys) - 1)
        found = (self.sorted_keys[pos] == keys) & (keys >= 0)
        rows = pos if self.order is None else self.order[pos]
        return np.where(found, rows, -1)


class AnnIndex:
    """A trained IVF-PQ index over store keys, shared by the snapshots of one collection.

    Not for direct use: `maintain` (writer side) and `open_ann` (reader side) create it.
    """

    def __init__(self, index: faiss.Index, meta: dict[str, Any], keys: np.ndarray,
                 file: str | None = None, gpu: bool = False, keys_sorted: bool = False
                 ) -> None:
        self.index = index
        self.ivf = faiss.extract_index_ivf(index)
        self._nlist = int(self.ivf.nlist)  # fixed at training (a SWIG read per search else)
        self.opq = (faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
                    if meta.get("opq") else None)
        self.meta = dict(meta)
        self.keys = keys if keys_sorted else np.sort(np.asarray(keys, dtype=np.int64))
        self.file = file
        self.dirty = 0  # rows added or removed since `file` was written
        self.lock = RWLock()  # CPU searches run concurrently; updates run alone
        self.gpu = gpu
        self._gpu_index: Any = None
        self._params: dict[int, faiss.SearchParametersIVF] = {}

    @property
    def nlist(self) -> int:
        return self._nlist

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def train(cls, vectors: LiveVectors, params: AnnParams, seed: int = 0) -> AnnIndex:
        """Train on a random sample of the rows (nothing added yet)."""
        n, dim = vectors.shape
        nlist = params.nlist_for(n)
        m = params.m_for(dim)
        size = int(min(n, max(params.train_per_list * nlist, 40 * 256)))
        nbits = int(min(params.nbits, max(1, math.floor(math.log2(max(2, size))))))
        started = time.perf_counter()
        sample = vectors.take(np.sort(np.random.default_rng(seed).choice(n, size, replace=False)))
        gpu = use_gpu(params)
        clustering = None
        if gpu:
            try:  # k-means of the coarse quantizer (the heavy part) on the GPU(s)
                clustering = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(dim))
            except Exception as e:  # pragma: no cover - needs faiss-gpu and a device
                log.warning("GPU training unavailable (%s); training on the CPU", e)
                gpu = False
        # 4-bit codes use FAISS's SIMD "fast scan" layout (CPU only); the GPU gets 8-bit PQ
        fast = nbits == 4 and not gpu
        if gpu and nbits == 4:
            nbits = 8
        spec = f"IVF{nlist},PQ{m}x{nbits}{'fs' if fast else ''}"
        if params.opq:
            spec = f"OPQ{m},{spec}"
        index = faiss.index_factory(dim, spec, faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivfpq = faiss.downcast_index(ivf)
        ivf.cp.niter = params.niter
        ivfpq.pq.cp.niter = params.niter
        if hasattr(ivfpq, "do_polysemous_training"):
            ivfpq.do_polysemous_training = False  # the factory's default; costly, unused here
        if clustering is not None:
            ivf.clustering_index = clustering
        index.train(sample)
        ivf.clustering_index = None
        meta = {"kind": "ivfpq", "nlist": nlist, "m": m, "nbits": nbits, "opq": params.opq,
                "fast_scan": fast,
                "dim": dim, "trained_rows": n, "sample": size, "trained_at": time.time(),
                "train_seconds": round(time.perf_counter() - started, 3),
                "device": "gpu" if gpu else "cpu"}
        return cls(index, meta, np.zeros(0, np.int64), gpu=gpu)

    @classmethod
    def read(cls, path: Path, meta: dict[str, Any], params: AnnParams,
             keys: np.ndarray | None = None) -> AnnIndex:
        """Load a saved index (codes into RAM, no training).

        `keys`: the sorted int64 keys the file is known to hold (the caller checked them
        against the digest saved with it); else they are read from the inverted lists.
        """
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            if not path.exists():  # removed by a writer's commit meanwhile: caller retries
                raise FileNotFoundError(path) from None
            raise
        if keys is not None and len(keys) == index.ntotal:
            return cls(index, meta, keys, file=meta.get("file"), gpu=use_gpu(params),
                       keys_sorted=True)
        ivf = faiss.extract_index_ivf(index)
        inv = ivf.invlists
        ids = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
               for i in range(ivf.nlist) if inv.list_size(i)]
        keys = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        return cls(index, meta, keys, file=meta.get("file"), gpu=use_gpu(params))

    def write(self, path: Path) -> None:
        """Save atomically (temp file, fsync, rename); the caller then commits the manifest."""
        with self.lock.read():
            write_atomic(path, lambda f: faiss.write_index(
                self.index, faiss.PyCallbackIOWriter(f.write)))

    # -- updating -------------------------------------------------------------------------
    def sync(self, keymap: KeyMap, vectors: LiveVectors) -> tuple[int, int]:
        """Make the index hold exactly the live keys: add the missing, drop the deleted.

        Returns (added, removed).
        """
        live = keymap.sorted_keys
        if np.array_equal(self.keys, live):  # opening a store its index file is current for
            return 0, 0
        with self.lock.write():
            gone = self.keys[~in_sorted(self.keys, live)] if len(self.keys) else self.keys
            new = live[~in_sorted(live, self.keys)] if len(self.keys) else live
            if len(gone):
                self.index.remove_ids(np.ascontiguousarray(gone))
            for lo in range(0, len(new), ADD_CHUNK):
                chunk = new[lo:lo + ADD_CHUNK]
                self.index.add_with_ids(vectors.take(keymap.rows_of(chunk)), chunk)
            if len(gone) or len(new):
                self.keys = sorted_union(self.keys[~in_sorted(self.keys, gone)], new)
                self.dirty += len(gone) + len(new)
                self._gpu_index = None
            return len(new), len(gone)

    # -- searching ------------------------------------------------------------------------
    def search(self, queries: np.ndarray, n: int, nprobe: int,
               selector: faiss.IDSelector | None = None) -> np.ndarray:
        """Keys of the n best candidates by PQ distance, (len(queries), n); -1 = none.

        CPU searches share the lock (FAISS searches a const index from many threads; the
        per-call `SearchParametersIVF` keeps nprobe out of shared state); the GPU clone
        is used by one caller at a time.
        """
        if self.gpu and selector is None:  # pragma: no cover - needs faiss-gpu and a device
            with self.lock.write():
                gpu_index = self._gpu()
                if gpu_index is not None:
                    xq = self.opq.apply(queries) if self.opq is not None else queries
                    faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
                    _, ids = gpu_index.search(xq, min(n, 2048))
                    return ids
        with self.lock.read():
            xq = self.opq.apply(queries) if self.opq is not None else queries
            if selector is None:  # FAISS only reads the parameters: one object per nprobe
                params = self._params.get(nprobe)
                if params is None:
                    params = self._params[nprobe] = faiss.SearchParametersIVF(
                        nprobe=int(nprobe))
            else:
                params = faiss.SearchParametersIVF(nprobe=int(nprobe))
                params.sel = selector
            ids = np.empty((len(xq), n), dtype=np.int64)
            dist = np.empty((len(xq), n), dtype=np.float32)
            if not xq.flags.c_contiguous or xq.dtype != np.float32:
                xq = np.ascontiguousarray(xq, dtype=np.float32)
            self.ivf.search_c(len(xq), faiss.swig_ptr(xq), n, faiss.swig_ptr(dist),
                              faiss.swig_ptr(ids), params)
            return ids

    def _gpu(self) -> Any:
        if not self.gpu:
            return None
        if self._gpu_index is None:  # pragma: no cover - needs faiss-gpu and a device
            try:
                co = faiss.GpuClonerOptions()
                co.useFloat16 = True  # float16 lookup tables: needed for large m
                self._gpu_index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0,
                                                         self.ivf, co)
            except Exception as e:
                log.warning("GPU search unavailable (%s); searching on the CPU", e)
                self.gpu = False
                return None
        return self._gpu_index

    def code_bytes(self) -> float:
        """Bytes of one vector's PQ code as stored in the inverted lists."""
        ivfpq = faiss.downcast_index(self.ivf)
        if self.meta.get("fast_scan"):  # codes stored in blocks of bbs vectors per list
            return int(ivfpq.M2) * int(ivfpq.nbits) / 8
        return float(ivfpq.code_size)

    def ram_bytes(self) -> int:
        """RAM held by the index: codes, ids, centroids, PQ tables."""
        ivfpq = faiss.downcast_index(self.ivf)
        code = int(self.code_bytes())
        centroids = self.nlist * int(self.ivf.d) * 4
        pq_tables = int(ivfpq.pq.M) * int(ivfpq.pq.ksub) * int(ivfpq.pq.dsub) * 4
        precomputed = int(ivfpq.precomputed_table.size()) * 4
        return self.ntotal * (code + 8) + centroids + pq_tables + precomputed

    def describe(self, nprobe: int) -> dict[str, Any]:
        n = max(1, self.ntotal)
        tuned = self.meta.get("tuning") or {}
        return {"recall_at_10": tuned.get("recall_at_10"),
                "target_recall": tuned.get("target"), "recall_met": tuned.get("met"),
                "recall_measured_on": ({"queries": tuned["queries"], "rows": tuned["rows"]}
                                       if tuned else None),
                "type": "ivfpq", "nlist": self.nlist, "m": self.meta["m"],
                "nbits": self.meta["nbits"], "opq": bool(self.meta.get("opq")),
                "fast_scan": bool(self.meta.get("fast_scan")),
                "nprobe": nprobe, "trained_rows": self.meta["trained_rows"],
                "train_sample": self.meta.get("sample"), "ntotal": self.ntotal,
                "file": self.file, "device": "gpu" if self.gpu else "cpu",
                "code_bytes_per_vector": self.meta["m"] * self.meta["nbits"] // 8,
                "ram_bytes_per_vector": round(self.ram_bytes() / n, 1)}


class IVFPQIndex:
    """One snapshot's view of an `AnnIndex`: candidates by PQ, exact re-scoring, filters.

    Row positions (0..n-1 of the snapshot) are what it returns, like `FlatIndex`.
    """

    kind = "ivfpq"

    def __init__(self, ann: AnnIndex, keymap: KeyMap, vectors: LiveVectors,
                 params: AnnParams) -> None:
        self.ann = ann
        self.keymap = keymap
        self.vectors = vectors
        self.params = params
        self.dim = vectors.dim
        self.nprobe, self.rerank = tuning.settings(ann.meta, params, ann.nlist)
        self.filter_exact_rows = params.filter_exact_rows
        self._prefaulted = False  # the vectors' pages mapped in after the first search
        self._lock = threading.Lock()
        self._selectors: OrderedDict[int, tuple[Any, np.ndarray, faiss.IDSelector]] = \
            OrderedDict()
        self._blocks: OrderedDict[int, tuple[Any, np.ndarray]] = OrderedDict()
        self._block_bytes = 0

    def __len__(self) -> int:
        return len(self.vectors)

    def describe(self) -> dict[str, Any]:
        info = self.ann.describe(self.nprobe)
        info.update(rerank=self.rerank, rows=len(self),
                    mapped_bytes_per_vector=4 * self.dim)
        return info

    def search(self, queries: np.ndarray, k: int,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product, optionally only among `rows` (sorted positions).

        Returns (scores, rows), each (n_queries, k); missing slots have row -1. When at
        least k rows are eligible, k come back.
        """
        found = self._search(queries, k, rows)
        if not self._prefaulted:  # after the first search, not before it
            self._prefaulted = True
            if self.params.prefault:
                self.vectors.prefault()
        return found

    def _search(self, queries: np.ndarray, k: int,
                rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(self)
        if rows is None:
            return self._ann_search(q, min(k, n), None, n)
        rows = np.asarray(rows, dtype=np.int64)
        m = len(rows)
        k = min(k, m)
        if m <= max(self.filter_exact_rows, max(k, 10) * self.rerank):
            return self.exact(q, k, rows)
        # a loose filter: IVF-PQ restricted to the matching keys by a bitmap; widen nprobe
        # with rarer matches, as a filtered item's neighbours sit further away
        bitmap, selector = self._selector(rows)
        boost = math.sqrt(n / m)
        result = self._ann_search(q, k, selector, m, nprobe=math.ceil(self.nprobe * boost),
                                  allowed=rows)
        del bitmap  # (kept alive until the search is done)
        return result

    def _selector(self, rows: np.ndarray) -> tuple[np.ndarray, faiss.IDSelector]:
        """A bitmap of the rows' keys and its FAISS selector, kept for the last few row
        sets (a snapshot's filter cache hands out the same array for the same filter)."""
        with self._lock:
            hit = self._selectors.get(id(rows))
            if hit is not None and hit[0]() is rows:
                self._selectors.move_to_end(id(rows))
                return hit[1], hit[2]
        mask = np.zeros(self.keymap.max_key + 1, dtype=bool)
        mask[self.keymap.row_keys[rows]] = True
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if not rows.flags.writeable:  # a cached (frozen) row set: worth keeping
            with self._lock:
                self._selectors[id(rows)] = (weakref.ref(rows), bitmap, selector)
                while len(self._selectors) > SELECTORS_KEPT:
                    self._selectors.popitem(last=False)
        return bitmap, selector

    def _ann_search(self, q: np.ndarray, k: int, selector: faiss.IDSelector | None,
                    eligible: int, nprobe: int | None = None,
                    allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        nq = len(q)
        nlist = self.ann.nlist
        nprobe = min(nlist, max(1, nprobe or self.nprobe))
        n_cand = min(eligible, max(k, 10) * self.rerank)  # a small k still gets a fair pool
        if nq == 1 and selector is None and k:  # the common case, in as few steps as it takes
            cand = self.keymap.rows_of(self.ann.search(q, n_cand, nprobe)[0])
            cand = cand[cand >= 0]
            if len(cand) >= k:
                sims = self.vectors.dot(cand, q[0])
                top = np.argsort(-sims, kind="stable")[:k]
                return sims[top][None], cand[top][None]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        found = np.full((nq, k), -1, dtype=np.int64)
        if k == 0:
            return scores, found
        todo = np.arange(nq)
        for _ in range(12):
            keys = self.ann.search(q[todo], n_cand, nprobe, selector)
            s, r = self._rescore(q[todo], self.keymap.rows_of(keys), k)
            done = (r >= 0).sum(axis=1) >= k
            scores[todo], found[todo] = s, r
            todo = todo[~done]
            if not len(todo) or (nprobe >= nlist and n_cand >= eligible):
                break
            nprobe, n_cand = min(nlist, nprobe * 4), min(eligible, n_cand * 2)
        if len(todo):  # cannot happen while the index holds every live key; stay correct
            s, r = self.exact(q[todo], k, allowed)
            scores[todo], found[todo] = s, r
        return scores, found

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of each query with its candidate rows; best k."""
        return _top_k(inner_products(self.vectors, q, cand), cand, k)

    def exact(self, q: np.ndarray, k: int,
              rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over `rows` (all when None): from the gathered copy of a cached
        filter's rows (`_gathered`), else see `exact_search`."""
        block = None if rows is None else self._gathered(rows)
        if block is None:
            return exact_search(self.vectors, q, k, rows)
        if len(q) < SIMD_QUERIES:  # FAISS's SIMD loop, one thread (see SIMD_QUERIES)
            sims = np.empty((len(q), len(block)), dtype=np.float32)
            for qi in range(len(q)):
                faiss.fvec_inner_products_ny(faiss.swig_ptr(sims[qi]), faiss.swig_ptr(q[qi]),
                                             faiss.swig_ptr(block), self.dim, len(block))
        else:
            sims = q @ block.T
        return _pad(*_top_k(sims, np.broadcast_to(rows, sims.shape), k), k)

    def _gathered(self, rows: np.ndarray) -> np.ndarray | None:
        """The vectors of a cached filter's rows (a frozen array: the snapshot's filter
        cache hands out the same one for the same filter), copied out of the segments once
        and kept while they fit in `filter_vectors_mb` (least recently used dropped): a
        rare filter's exact search then reads one contiguous block instead of rows
        scattered over the memory-mapped segments. None for other row sets."""
        budget = int(self.params.filter_vectors_mb * 2**20)
        size = len(rows) * self.dim * 4
        if rows.flags.writeable or not len(rows) or size > budget // 4:
            return None
        with self._lock:
            hit = self._blocks.get(id(rows))
            if hit is not None and hit[0]() is rows:
                self._blocks.move_to_end(id(rows))
                return hit[1]
        block = self.vectors.take(rows)
        block.flags.writeable = False
        with self._lock:
            old = self._blocks.pop(id(rows), None)
            self._block_bytes -= 0 if old is None else old[1].nbytes
            self._blocks[id(rows)] = (weakref.ref(rows), block)
            self._block_bytes += block.nbytes
            while self._block_bytes > budget:
                _, (_, dropped) = self._blocks.popitem(last=False)
                self._block_bytes -= dropped.nbytes
        return block


def exact_search(vectors: LiveVectors, q: np.ndarray, k: int,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute force top-k by inner product over `rows` (all when None).

    A few queries over a subset of rows read those rows in place (`inner_products`);
    otherwise vectors are copied block by block and scored with one matmul per block.
    """
    nq = len(q)
    if rows is not None and nq * len(rows) <= IN_PLACE_PAIRS:
        cand = np.broadcast_to(rows, (nq, len(rows)))
        best_s, best_r = _top_k(inner_products(vectors, q, cand), cand, k)
        return _pad(best_s, best_r, k)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((nq, 0), dtype=np.int64)
    blocks = (vectors.chunks() if rows is None else
              ((lo, vectors.take(rows[lo:lo + ADD_CHUNK]))
               for lo in range(0, len(rows), ADD_CHUNK)))
    for lo, block in blocks:
        ids = (np.arange(lo, lo + len(block)) if rows is None else rows[lo:lo + len(block)])
        sims = q @ block.T
        cand = np.broadcast_to(ids, sims.shape)
        best_s, best_r = _top_k(np.concatenate([best_s, sims], axis=1),
                                np.concatenate([best_r, cand], axis=1), k)
    return _pad(best_s, best_r, k)


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen results to k columns (-inf / row -1) when fewer rows were eligible."""
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return scores, rows


def inner_products(vectors: LiveVectors, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`sims[i, j] = q[i] · vectors[rows[i, j]]`, -inf where `rows[i, j] < 0`.

    Reads the rows in place from the segment memmaps (FAISS, multi-threaded, no gathered
    copy); a part that is not a contiguous float32 array is gathered first.
    """
    q = np.ascontiguousarray(q, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    nq, c = rows.shape
    sims = np.full((nq, c), -np.inf, dtype=np.float32)
    if not rows.size:
        return sims
    if nq == 1 and c <= GATHER_ROWS:  # one query, few rows: no OpenMP region to wake
        ok = rows[0] >= 0
        if ok.any():
            sims[0, ok] = vectors.dot(rows[0, ok], q[0])
        return sims
    if int(rows.max()) >= len(vectors):  # FAISS reads unchecked: never past the map
        raise IndexError(f"row {int(rows.max())} outside {len(vectors)} rows")
    span = vectors.span() if len(vectors.parts) > 1 else None
    if span and span.row_shift is not None:  # every part in one call, through the span
        ids = np.ascontiguousarray(span.row_ids(vectors.offsets, rows), dtype=np.int64)
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(sims), faiss.swig_ptr(q), faiss.swig_ptr(span.floats),
            faiss.swig_ptr(ids), vectors.dim, nq, c)
        return sims
    single = len(vectors.parts) == 1
    seg = None if single else np.searchsorted(vectors.offsets, rows, side="right") - 1
    for s, (part, keep) in enumerate(zip(vectors.parts, vectors.keeps, strict=True)):
        if single:
            local = rows
        else:
            mine = seg == s
            if not mine.any():
                continue
            local = np.where(mine & (rows >= 0), rows - vectors.offsets[s], -1)
        if keep is not None:
            local = np.where(local >= 0, keep[np.maximum(local, 0)], -1)
        local = np.ascontiguousarray(local, dtype=np.int64)
        if int(local.max()) >= len(part):  # FAISS reads unchecked: never past the map
            raise IndexError(f"row {int(local.max())} outside a part of {len(part)} rows")
        if part.dtype == np.float32 and part.flags.c_contiguous:
            out = np.empty((nq, c), dtype=np.float32)
            faiss.fvec_inner_products_by_idx(
                faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(part),
                faiss.swig_ptr(local), vectors.dim, nq, c)
        else:
            vecs = np.asarray(part[np.maximum(local, 0).reshape(-1)], dtype=np.float32)
            out = np.einsum("qcd,qd->qc", vecs.reshape(nq, c, -1), q)
            out[local < 0] = -np.inf
        sims = out if single else np.maximum(sims, out)
    return sims


def _top_k(sims: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest sims (sorted, best first) and their candidates (-1 if -inf)."""
    k = min(k, sims.shape[1])
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    top = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    s = np.take_along_axis(sims, idx, axis=1)
    r = np.take_along_axis(cand, idx, axis=1)
    return s, np.where(np.isfinite(s), r, -1)
