"""The query planner: parse a query, route it to channels, calibrate, fuse, group, page.

`plan.execute` runs a parsed `Query` against a store snapshot; `Collection.search` is the
public entry point.
"""

from mmsearch.planner.query import Part, Query, split_negatives

__all__ = ["Part", "Query", "split_negatives"]
