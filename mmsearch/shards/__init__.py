"""Sharded stores: N normal stores behind one top-level manifest, searched as one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmsearch.errors import UsageError
from mmsearch.shards.collection import SearchResults, ShardedCollection
from mmsearch.shards.layout import is_sharded, shard_of


def open_sharded(path: str | os.PathLike[str], *, model: str | None = None,
                 device: str | None = None, index_params: Mapping[str, Any] | Any = None,
                 shards: int | None = None, ray: str | None = None) -> ShardedCollection:
    """A sharded collection, searched in this process or (`ray`) on Ray actors."""
    if ray is None:
        return ShardedCollection(path, model=model, device=device, index_params=index_params,
                                 shards=shards)
    if shards is None and not is_sharded(path):
        raise UsageError(f"no sharded store at {path}: Ray serves sharded stores; create one "
                         "with --shards N (mmsearch.open(path, shards=N))")
    from mmsearch.distributed import RayCollection

    return RayCollection(path, model=model, device=device, index_params=index_params,
                         shards=shards, address=ray)


__all__ = ["SearchResults", "ShardedCollection", "is_sharded", "open_sharded", "shard_of"]
