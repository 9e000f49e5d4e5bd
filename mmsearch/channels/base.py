"""The channel interface and its registry (see the package docstring)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.base import Encoder
from mmsearch.planner.query import Part
from mmsearch.request import SearchRequest
from mmsearch.results import Result
from mmsearch.view.snapshot import Snapshot

#: Modules that register the built-in channels (imported on first use).
BUILTIN = ("mmsearch.channels.audio", "mmsearch.channels.ocr")
_REGISTERED: dict[str, Channel] = {}
_LOADED = False


@dataclass
class QueryContext:
    """What a channel sees of one search."""

    snap: Snapshot
    request: SearchRequest
    texts: list[str]                       # the positive texts (`-word` tokens removed)
    allowed: np.ndarray | None             # rows passing the filters (None: all)
    encoder: Callable[[], Encoder]         # the main-space encoder (loaded on first use)
    manifest: dict[str, Any]               # the store's manifest
    path: Path                             # the store folder (side spaces live there)
    device: str | None = None
    positives: list[Part] = field(default_factory=list)  # the query's parts so far


class Channel:
    """An optional channel; every hook has a do-nothing default.

    Attributes:
        name: the channel's name (as in `info()["channels"]` and `weights`).
        options: the keyword options of `Collection.index` this channel reads.
    """

    name: str = ""
    options: tuple[str, ...] = ()

    def indexing(self, manifest: dict[str, Any], options: Mapping[str, Any],
                 device: str | None) -> dict[str, Any]:
        """Keyword arguments for the `Indexer` (the analyzers this channel runs)."""
        return {}

    def query_parts(self, ctx: QueryContext) -> list[Part]:
        """Query vectors in the main space this channel derives from the request."""
        return []

    def row_bonus(self, ctx: QueryContext) -> dict[int, float]:
        """Extra z-score per row (rows outside `ctx.allowed` get none)."""
        return {}

    def annotate(self, result: Result, ctx: QueryContext) -> Result:
        """A result as this channel shapes it (e.g. the OCR line that matched)."""
        return result

    def annotates(self, ctx: QueryContext) -> bool:
        """Whether `annotate` may change this query's results (when not, it is not called:
        a batch has thousands); by default whenever the channel has an `annotate`."""
        return type(self).annotate is not Channel.annotate

    def counts(self, path: Path, manifest: dict[str, Any]) -> dict[str, int]:
        """Vectors this channel keeps outside the main space, for `info()`."""
        return {}


def register_channel(channel: Channel) -> None:
    """Add (or replace, by name) a channel."""
    _REGISTERED[channel.name] = channel


def unregister_channel(name: str) -> None:
    """Remove a channel by name (a no-op when absent)."""
    _REGISTERED.pop(name, None)


def channels() -> list[Channel]:
    """Every registered channel, built-ins first."""
    global _LOADED
    if not _LOADED:
        for module in BUILTIN:
            importlib.import_module(module)
        _LOADED = True
    return list(_REGISTERED.values())


def index_options() -> set[str]:
    """The `Collection.index` options the channels read."""
    return {o for c in channels() for o in c.options}
