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


#: The reranker used offline when the online default cannot be fetched.
OFFLINE_RERANKER = "lite"
#: The online default's weights (what `blip` with no argument downloads).
_ONLINE_DEFAULT_REPO = "Salesforce/blip-itm-base-coco"


def load_default_reranker(spec: str, device: str | None = None) -> Reranker:
    """Load the default reranker `spec`, or the offline one when it cannot be fetched.

    Only for the default `blip` (no argument): when its weights are not in the local
    Hugging Face cache and the hub is unreachable (or HF_HUB_OFFLINE=1), this says so in one
    log line and loads `lite` (weights ship with the package) instead of failing.
    """
    if spec == "blip":
        from huggingface_hub import try_to_load_from_cache

        from mmsearch.encoders.available import hub_reachable, lite_installed

        cached = isinstance(try_to_load_from_cache(_ONLINE_DEFAULT_REPO, "config.json"), str)
        if not cached and lite_installed() and not hub_reachable():
            logging.getLogger("mmsearch").warning(
                "reranker %s is not cached and the model hub is unreachable; using the "
                "offline reranker %s instead", _ONLINE_DEFAULT_REPO, OFFLINE_RERANKER)
            return load_reranker(OFFLINE_RERANKER, device)
    return load_reranker(spec, device)
