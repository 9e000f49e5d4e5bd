"""Decide what a catalog sync changes: added, updated, unchanged and missing products."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mmsearch.catalog.products import Products


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
