"""The OCR channel: text read in pictures and video moments (rows of channel "ocr").

Indexing: the store's `OcrSettings` (remembered in its manifest) go to the indexer. Query:
ocr rows whose text holds the query's words score more (a row bonus); results get their
matching line (`ocr_match`, see `mmsearch.ocr.search.annotate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsearch.channels.base import Channel, QueryContext, register_channel
from mmsearch.ocr import search as ocr_search
from mmsearch.ocr.settings import OcrSettings
from mmsearch.results import Result


class OcrChannel(Channel):
    """Text in pictures: indexed when asked (`ocr=`), found by its words."""

    name = "ocr"
    options = ("ocr",)

    def indexing(self, manifest: dict[str, Any], options: Mapping[str, Any],
                 device: str | None) -> dict[str, Any]:
        return {"ocr_settings": OcrSettings.resolve(manifest.get("ocr"), options.get("ocr"))}

    def row_bonus(self, ctx: QueryContext) -> dict[int, float]:
        return ocr_search.row_bonus(ctx.snap, ctx.texts, ctx.allowed)

    def annotate(self, result: Result, ctx: QueryContext) -> Result:
        return ocr_search.annotate(result, ctx.texts)

    def annotates(self, ctx: QueryContext) -> bool:
        # annotate drops `ocr_lines` from a result's metadata and matches its lines against
        # the query's words; with explain it shows the OCR bonus
        return "ocr_lines" in ctx.snap.table.column_names or bool(ctx.request.explain)


register_channel(OcrChannel())
