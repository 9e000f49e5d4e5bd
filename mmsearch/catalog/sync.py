"""Sync a catalog into a store: decide what changed (added, updated, unchanged, missing
products), embed the new and changed ones, commit them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mmsearch.catalog.embed import embed_products
from mmsearch.catalog.products import Products
from mmsearch.encoders.base import Encoder
from mmsearch.errors import UsageError
from mmsearch.store.rows import keys_of_ids, replace_rows
from mmsearch.store.schema import utc_naive
from mmsearch.store.store import Store


@dataclass
class CatalogReport:
    """What a catalog sync did, by product id."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    rows_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "deleted": self.deleted, "failed": len(self.failed),
                "rows_written": self.rows_written,
                "errors": [{"id": i, "error": e} for i, e in self.failed]}

    def summary(self) -> str:
        return (f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.deleted} deleted, {len(self.failed)} failed")


@dataclass
class SyncPlan:
    """Products to embed (new or changed) and ids to delete."""

    todo: Products
    added: set[str]
    unchanged: int
    missing: list[str]


def plan(products: Products, existing: pa.Table) -> SyncPlan:
    """Compare prepared products with the store's rows (`id`, `row_hash` columns).

    A product is unchanged when every stored row of its id carries its row hash; `missing`
    lists catalog ids (rows with a row hash) that the new catalog lacks.
    """
    stored: dict[str, set[str | None]] = {}
    if len(existing) and "row_hash" in existing.column_names:
        for item, h in zip(existing.column("id").to_pylist(),
                           existing.column("row_hash").to_pylist(), strict=True):
            stored.setdefault(item, set()).add(h)
    elif len(existing):
        for item in existing.column("id").to_pylist():
            stored.setdefault(item, set()).add(None)
    ids = products.ids
    hashes = products.table.column("row_hash").to_pylist()
    todo = [i for i, (item, h) in enumerate(zip(ids, hashes, strict=True))
            if stored.get(item) != {h}]
    added = {ids[i] for i in todo if ids[i] not in stored}
    new_ids = set(ids) | {f[0] for f in products.failed}
    missing = [item for item, hs in stored.items()
               if item not in new_ids and hs != {None}]
    return SyncPlan(products.take(todo), added, len(ids) - len(todo), missing)


def sync_products(store: Store, products: Products, encoder: Callable[[], Encoder], *,
                  delete_missing: bool = False, strict: bool = False, batch_size: int = 32,
                  commit_every: int | None = None) -> CatalogReport:
    """Embed new and changed products and commit them, `commit_every` products a commit.

    Call inside a write transaction. `strict`: any failed product raises UsageError and
    nothing is written. With `delete_missing`, catalog products absent from `products`
    are deleted.
    """
    if strict and products.failed:
        raise UsageError(failures(products.failed))
    report = CatalogReport(failed=list(products.failed))
    sync = plan(products, store.read_live_table(["key", "id", "row_hash"]))
    report.unchanged = sync.unchanged
    todo = sync.todo
    step = max(1, commit_every or len(todo.ids) or 1)
    for lo in range(0, len(todo.ids), step):
        chunk = todo.take(range(lo, min(lo + step, len(todo.ids))))
        model = encoder()
        rows, vectors, failed = embed_products(chunk, model, batch_size)
        if strict and failed:
            raise UsageError(failures(failed))
        report.failed += failed
        ids = list(dict.fromkeys(rows.column("id").to_pylist()))
        if not ids:
            continue
        rows = rows.append_column("indexed_at", pa.array([utc_naive()] * len(rows),
                                                          pa.timestamp("us")))
        replace_rows(store, rows, vectors, keys_of_ids(store, ids),
                     {"spec": model.spec, "dim": model.dim})
        report.added += sum(i in sync.added for i in ids)
        report.updated += sum(i not in sync.added for i in ids)
        report.rows_written += len(rows)
    if delete_missing and sync.missing:
        store.commit([], keys_of_ids(store, sync.missing))
        report.deleted = len(sync.missing)
    return report


def failures(failed: list[tuple[str, str]]) -> str:
    """One message for records that cannot be used (the first five named)."""
    shown = "; ".join(f"{i}: {e}" for i, e in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return f"{len(failed)} record(s) cannot be used, nothing written: {shown}{more}"
