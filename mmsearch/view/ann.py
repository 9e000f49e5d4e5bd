"""When to train, retrain, save and load the IVF-PQ index of a store.

Writer side (`maintain`, called after each write while holding the store's lock):

- fewer live rows than `threshold`: no approximate index (exact search); a saved one is
  dropped from the manifest.
- none yet, `force`, or the collection grew to `growth` × (or shrank to 1/`growth` of) the
  rows it was trained on: train on a sample, add every live row, save.
- otherwise: add the new rows and remove the deleted ones in place; rewrite the file only
  once `save_share` of the rows changed since it was written.
- after training (and when the rows changed `remeasure_growth` times since): measure the
  recall on held-out stored vectors and choose nprobe and the re-score depth for
  `target_recall` (`mmsearch.index.tuning`); the result is saved in the manifest's `ann`.

Saving follows the store's commit protocol: the index goes to a new `ann-<gen>-<id>.faiss`
file (temp file, fsync, rename), then a manifest commit names it in its `ann` field; the
store's garbage collection deletes index files no manifest names. A kill at any moment,
training included, leaves the previous manifest and its index file intact.

Reader side (`open_index`): load the file named by the manifest (no training), then replay
the rows added or deleted since it was written. Until a writer has trained one, a large
store is searched exactly. The manifest records a digest of the keys the file holds
(`keys_xxh3`, written when it is saved): when the live keys match it, the reader takes
them as the index's keys instead of collecting and sorting them from the inverted lists.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import numpy as np

from mmsearch.arrow_numpy import column_numpy
from mmsearch.index import tuning
from mmsearch.index.flat import FlatIndex
from mmsearch.index.ivfpq import AnnIndex, IVFPQIndex, KeyMap
from mmsearch.index.params import AnnParams
from mmsearch.store import integrity
from mmsearch.store.store import Store
from mmsearch.vectors import LiveVectors

log = logging.getLogger(__name__)


def maintain(store: Store, params: AnnParams, cached: AnnIndex | None = None, *,
             force: bool = False) -> AnnIndex | None:
    """Bring the store's IVF-PQ index up to date; call inside `store.writer()`.

    Returns the in-memory index (None when the store is small enough for exact search).
    """
    table, vectors = store.live(columns=["key"])
    n = len(table)
    meta = store.manifest.get("ann")
    if n < params.threshold or n == 0:
        if meta:
            store.commit([], extra={"ann": None})
        return None
    keymap = KeyMap(table.column("key").to_numpy())
    ann = None
    if meta and not force and _still_fits(meta, n, vectors.dim, params):
        ann = _load(store, meta, params, cached, keymap.sorted_keys)
    if ann is None:
        log.info("training IVF-PQ on %d rows", n)
        ann = AnnIndex.train(vectors, params)
    ann.sync(keymap, vectors)
    remeasured = tuning.needs_measuring(ann.meta, n, params)
    if remeasured:  # always after training (a new index has no measurement)
        ann.meta["tuning"] = tuning.measure(ann, keymap, vectors, params)
        log.info("index recall@10 %.3f at nprobe %d, re-score %dx (%.1f s)",
                 ann.meta["tuning"]["recall_at_10"], ann.meta["tuning"]["nprobe"],
                 ann.meta["tuning"]["rerank"], ann.meta["tuning"]["seconds"])
    if ann.file is None or ann.dirty > params.save_share * n:
        save(store, ann)
    elif remeasured or (ann.dirty == 0 and "keys_xxh3" not in store.manifest["ann"]):
        # the file is current: only the manifest learns the new measurement (or the digest
        # of the keys, for an index saved before digests)
        meta = dict(store.manifest["ann"])
        if remeasured:
            meta["tuning"] = ann.meta["tuning"]
        if ann.dirty == 0:
            meta["keys_xxh3"] = keys_digest(ann.keys)
        store.commit([], extra={"ann": meta})
        ann.meta = meta
    return ann


def save(store: Store, ann: AnnIndex) -> None:
    """Write the index to a new file, then commit a manifest naming it."""
    name = f"ann-{store.generation + 1}-{uuid.uuid4().hex[:12]}.faiss"
    ann.write(store.root / name)
    meta = {**ann.meta, "file": name, "ntotal": ann.ntotal, "saved_at": time.time(),
            "keys_xxh3": keys_digest(ann.keys)}
    store.commit([], extra={"ann": meta})
    ann.meta, ann.file, ann.dirty = meta, name, 0


def upgrade(store: Store) -> None:
    """Bring a store written by an earlier version to this one, changing no row or setting:
    one commit writes the segments' Arrow copies and records the saved index's key digest
    (when the file holds exactly the live keys). Call inside `store.writer()`."""
    extra = {}
    meta = store.manifest.get("ann")
    if meta and "keys_xxh3" not in meta:
        live = np.sort(column_numpy(store.live(columns=["key"])[0].column("key")))
        held = _load(store, meta, AnnParams.resolve(None), None).keys
        if np.array_equal(held, live):
            extra["ann"] = {**meta, "keys_xxh3": keys_digest(held)}
    store.commit([], extra=extra)


def open_index(store: Store, table_keys: np.ndarray, vectors: LiveVectors, params: AnnParams,
               cached: AnnIndex | None = None) -> IVFPQIndex | None:
    """The snapshot's IVF-PQ view when the manifest names a usable index, else None."""
    meta = store.manifest.get("ann")
    if not meta or not len(table_keys) or int(meta.get("dim", -1)) != vectors.dim:
        return None
    keymap = KeyMap(table_keys)
    ann = _load(store, meta, params, cached, keymap.sorted_keys)
    ann.sync(keymap, vectors)
    return IVFPQIndex(ann, keymap, vectors, params)


def flat_index(vectors: LiveVectors) -> FlatIndex:
    return FlatIndex(vectors.to_array())


def keys_digest(sorted_keys: np.ndarray) -> str:
    """A digest of an index's sorted int64 keys (recorded with its file)."""
    import xxhash

    keys = np.ascontiguousarray(sorted_keys, dtype=np.int64)
    return f"{len(keys)}:{xxhash.xxh3_64(memoryview(keys).cast('B')).hexdigest()}"


def _load(store: Store, meta: dict[str, Any], params: AnnParams,
          cached: AnnIndex | None, live_keys: np.ndarray | None = None) -> AnnIndex:
    if cached is not None and cached.file == meta["file"]:
        return cached
    known = None  # the live keys, when they are the ones the file was saved with
    if live_keys is not None and meta.get("keys_xxh3") == keys_digest(live_keys):
        known = live_keys
    try:
        return AnnIndex.read(store.root / meta["file"], meta, params, known)
    except (RuntimeError, ValueError, MemoryError) as e:
        raise integrity.damaged(store.root, [(meta["file"], f"unreadable index "
                                              f"({str(e).splitlines()[0][:100]})")]) from None


def _still_fits(meta: dict[str, Any], n: int, dim: int, params: AnnParams) -> bool:
    trained = int(meta.get("trained_rows") or 0)
    return (meta.get("kind") == "ivfpq" and int(meta.get("dim", -1)) == dim and trained > 0
            and n < params.growth * trained and n * params.growth > trained)
