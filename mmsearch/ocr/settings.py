"""Whether a store reads the text in its pictures, remembered in its manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class OcrSettings:
    """The `ocr` channel of a store: on or off, and the engine that read the text."""

    enabled: bool
    engine: str | None = None

    @classmethod
    def resolve(cls, stored: dict[str, Any] | None, ocr: bool | None = None) -> OcrSettings:
        """The explicit choice, else the store's, else on when the engine is installed.

        Asking for OCR explicitly when the engine is missing is a usage error (with the
        install command); a store built with OCR indexes on without it (and says so).
        """
        from mmsearch.errors import UsageError
        from mmsearch.ocr.engine import ENGINE, available

        stored = stored or {}
        enabled = ocr if ocr is not None else stored.get("enabled")
        missing = available()
        if enabled is None:
            enabled = missing is None
        if ocr and missing:
            raise UsageError(missing)
        if enabled and missing:
            enabled = False  # the store's choice, but the engine is gone: pictures only
        return cls(enabled=bool(enabled), engine=ENGINE if enabled else None)

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)

    def reader(self) -> Any:
        """The engine (loaded once per process, at its first picture), or None when OCR
        is off."""
        from mmsearch.ocr.engine import LazyEngine

        return LazyEngine() if self.enabled else None
