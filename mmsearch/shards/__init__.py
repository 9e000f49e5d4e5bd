"""Sharded stores: N normal stores behind one top-level manifest, searched as one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mmsearch.errors import UsageError
from mmsearch.shards.layout import is_sharded, shard_of

if TYPE_CHECKING:
    from mmsearch.shards.collection import SearchResults, ShardedCollection


def __getattr__(name: str) -> Any:
    """The collection classes load on first use: opening a plain store checks
    `is_sharded` without importing them."""
    if name in ("SearchResults", "ShardedCollection"):
        from mmsearch.shards import collection

        return getattr(collection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_sharded(path: str | os.PathLike[str], *, model: str | None = None,
                 device: str | None = None, index_params: Mapping[str, Any] | Any = None,
                 shards: int | None = None, ray: str | None = None) -> ShardedCollection:
    """A sharded collection, searched in this process or (`ray`) on Ray actors."""
    if ray is None:
        from mmsearch.shards.collection import ShardedCollection

        return ShardedCollection(path, model=model, device=device, index_params=index_params,
                                 shards=shards)
    if shards is None and not is_sharded(path):
        raise UsageError(f"no sharded store at {path}: Ray serves sharded stores; create one "
                         "with --shards N (mmsearch.open(path, shards=N))")
    from mmsearch.distributed import RayCollection

    return RayCollection(path, model=model, device=device, index_params=index_params,
                         shards=shards, address=ray)


__all__ = ["SearchResults", "ShardedCollection", "is_sharded", "open_sharded", "shard_of"]
