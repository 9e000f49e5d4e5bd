"""mmsearch on Ray (the optional extra `mmsearch[ray]`): sharded search on actors and
distributed ingestion. Importing this package does not import Ray; connecting does."""

from mmsearch.distributed.search import RayCollection

__all__ = ["RayCollection"]
