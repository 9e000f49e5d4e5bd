"""The layer that joins a store (`mmsearch.store`: rows, vectors, manifest) with its vector
index (`mmsearch.index`: FAISS over arrays and files): `Snapshot`, a consistent read view of
one generation, and `ann`, which trains, saves and reopens a store's IVF-PQ index. Neither
`store/` nor `index/` imports the other; both are imported here."""

from mmsearch.view.snapshot import CORE_COLUMNS, HIDDEN_COLUMNS, Snapshot

__all__ = ["CORE_COLUMNS", "HIDDEN_COLUMNS", "Snapshot"]
