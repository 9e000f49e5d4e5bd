"""Moved to `mmsearch.vectors` (shared by the store and the index); kept for old imports."""

from mmsearch.vectors import LiveVectors

__all__ = ["LiveVectors"]
