"""The query planner: parse a query, route it to channels, calibrate, fuse, group, page.

`search.Search(snapshot, request, env).run()` runs a `SearchRequest` (mmsearch/request.py):
it embeds the parts (`query.Query`), asks the optional channels (mmsearch/channels) for
parts and row bonuses, and hands over to `plan.execute`, which scores, fuses, groups and
pages on the snapshot. `Collection.search` is the public entry point.
"""

from mmsearch.planner.query import Part, Query, split_negatives

__all__ = ["Part", "Query", "split_negatives"]
