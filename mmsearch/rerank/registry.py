"""One entry point from a reranker spec to a reranker.

A new reranker is one file that calls `register_reranker(name, factory)` at import time
and one line in `_BUILTIN` naming its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mmsearch.errors import UsageError
from mmsearch.rerank.base import Reranker

#: factory(spec_argument, device) -> Reranker; spec_argument is the part after "name:".
RerankerFactory = Callable[[str | None, str | None], Reranker]
_NAMED: dict[str, RerankerFactory] = {}
#: name -> module that registers it (imported lazily, so heavy imports wait for use).
_BUILTIN: dict[str, str] = {
    "blip": "mmsearch.rerank.blip",
    "lite": "mmsearch.rerank.lite",
}


def register_reranker(name: str, factory: RerankerFactory) -> None:
    """Register a reranker family under `name` (spec `name` or `name:ARGUMENT`)."""
    _NAMED[name] = factory


def reranker_names() -> list[str]:
    """Names of the reranker families that can be loaded."""
    return sorted(set(_NAMED) | set(_BUILTIN))


def load_reranker(spec: str, device: str | None = None) -> Reranker:
    """Build the reranker for `spec` (`name` or `name:ARGUMENT`) on `device`."""
    name, _, argument = spec.partition(":")
    if name not in _NAMED and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _NAMED:
        raise UsageError(f"unknown reranker {spec!r}; choose from {', '.join(reranker_names())}")
    return _NAMED[name](argument or None, device)
