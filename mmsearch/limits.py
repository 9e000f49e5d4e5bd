"""Limits on everything one request can make the engine grow, with defaults and settings.

Each limit is a field of `Limits`; its setting is the environment variable
`MMSEARCH_LIMIT_<NAME>` (e.g. `MMSEARCH_LIMIT_MAX_TEXT_CHARS=4000`), or pass a `Limits`
to the code that checks it. A request over a limit raises `LimitError` naming the limit
and its setting (HTTP 413).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsearch.errors import LimitError


@dataclass(frozen=True)
class Limits:
    """Per-request limits.

    Attributes:
        max_query_parts: texts, negatives (`-word` and `negative=`), images and vectors
            in one query (each text is embedded: they cost model time and memory).
        max_text_chars: characters of one query text (the model reads ~77 tokens).
        max_in_values: values in one `in` / `nin` filter list.
        max_filter_conditions: conditions in one structured filter.
        max_filter_depth: nesting of a structured filter ({col: {op: [values]}} is 3).
        max_image_pixels: decoded pixels of an image (query, upload, index, thumbnail),
            checked from the file header before decoding (JPEGs count at the reduced
            scale they are decoded at).
        max_media_hash_bytes: files up to this size are re-hashed (once per process and
            file version) before a thumbnail or the file itself is served; larger ones
            are checked by size and modification time only.
    """

    max_query_parts: int = 32
    max_text_chars: int = 2_000
    max_in_values: int = 10_000
    max_filter_conditions: int = 64
    max_filter_depth: int = 3
    max_image_pixels: int = 40_000_000
    max_media_hash_bytes: int = 256 * 2**20

    @classmethod
    def resolve(cls, overrides: Limits | Mapping[str, Any] | None = None) -> Limits:
        """Defaults, then `MMSEARCH_LIMIT_*` variables, then `overrides`."""
        if isinstance(overrides, Limits):
            return overrides
        from mmsearch.settings import fields_from_settings

        return fields_from_settings(cls, "MMSEARCH_LIMIT_", overrides, "limit(s)")


def current() -> Limits:
    """The limits in force (defaults and `MMSEARCH_LIMIT_*` settings)."""
    return Limits.resolve()


def over(name: str, given: int, limit: int, what: str) -> LimitError:
    """The error for `what` (with `given` of it) over the limit `name`."""
    return LimitError(f"{what}: {given:,} is over the limit {name}={limit:,} (setting "
                      f"MMSEARCH_LIMIT_{name.upper()})", limit=name)


def check(name: str, given: int, what: str, limits: Limits | None = None) -> None:
    """Raise LimitError when `given` is over the limit `name`."""
    limit = getattr(limits or current(), name)
    if given > limit:
        raise over(name, given, limit, what)
