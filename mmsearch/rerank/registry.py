"""One entry point from a reranker spec to a reranker.

A new reranker is one file that calls `register_reranker(name, factory)` at import time
and one line in `_BUILTIN` naming its module.
"""

from __future__ import annotations

import importlib
import logging
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


#: The online default's weights (what `blip` with no argument downloads).
_ONLINE_DEFAULT_REPO = "Salesforce/blip-itm-base-coco"
#: Said (once per load) when `--rerank` cannot reach BLIP: there is no offline stand-in.
#: The `lite` reranker (still loadable by name) gained under +2 R@1 on val and none on
#: test, so issue 16 retired it as the offline default.
NO_OFFLINE_RERANKER = ("reranker %s is not cached and the model hub is unreachable; no "
                       "offline reranker is available, so results are not reranked")


def load_default_reranker(spec: str, device: str | None = None) -> Reranker | None:
    """Load the default reranker `spec`, or None when it cannot be fetched.

    Only for the default `blip` (no argument): when its weights are not in the local
    Hugging Face cache and the hub is unreachable (or HF_HUB_OFFLINE=1), this says so in
    one log line and returns None (search then runs without reranking) instead of failing
    or waiting for download retries.
    """
    if spec == "blip":
        from huggingface_hub import try_to_load_from_cache

        from mmsearch.encoders.available import hub_reachable

        cached = isinstance(try_to_load_from_cache(_ONLINE_DEFAULT_REPO, "config.json"), str)
        if not cached and not hub_reachable():
            logging.getLogger("mmsearch").warning(NO_OFFLINE_RERANKER, _ONLINE_DEFAULT_REPO)
            return None
    return load_reranker(spec, device)
