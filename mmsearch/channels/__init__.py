"""Optional channels: extra rows at indexing time, extra evidence at query time.

A channel (`Channel`) has hooks: `indexing` (what the indexer runs for it), `query_parts`
(query vectors it derives from the request, e.g. from an example sound), `row_bonus`
(z-score evidence per row from outside the main space, e.g. word matches in transcripts,
in pictures, or a side space's hits), `annotate` (shapes results) and `counts` (adds to
`info()["channels"]`). A new channel is one module that calls `register_channel(...)` at
import time plus one line in `BUILTIN`; the collection and the planner ask every
registered channel, so no facade code changes.
"""

from mmsearch.channels.base import (
    BUILTIN,
    Channel,
    QueryContext,
    channels,
    index_options,
    register_channel,
    unregister_channel,
)

__all__ = ["BUILTIN", "Channel", "QueryContext", "channels", "index_options",
           "register_channel", "unregister_channel"]
