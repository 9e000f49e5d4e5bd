"""Search-side OCR: whole-word matches of the query in the text read from pictures.

Each picture (or video moment) with text has a row of channel "ocr" (its text embedded in
the main space) and, like its visual row, the `ocr` column (the lines read, one per line)
and `ocr_lines` (JSON: text, box and confidence per line). `row_bonus` gives the ocr row
of a picture holding the query's words `WORD_BONUS * share of the words found`, in the
planner's z units, as transcripts get (mmsearch/audio/search.py). Words match whole and
case-insensitively; words the recogniser ran together in CamelCase ("BakeryLaundry")
are split first.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from mmsearch.audio.search import query_words, word_matches
from mmsearch.view.snapshot import Snapshot

#: z-score bonus of a picture whose text holds every query word.
WORD_BONUS = 2.0
#: The `ocr` column with CamelCase runs split (DuckDB SQL).
WORDS_SQL = r"regexp_replace(ocr, '([a-z])([A-Z])', '\1 \2', 'g')"


def row_bonus(snap: Snapshot, texts: list[str], rows: np.ndarray | None) -> dict[int, float]:
    """Extra z-score per ocr row whose text holds words of the query texts."""
    bonus: dict[int, float] = {}
    if "ocr" not in snap.table.column_names:
        return bonus
    for text in texts:
        for row, share in word_matches(snap, text, rows, column="ocr", expr=WORDS_SQL,
                                       channel="ocr"):
            bonus[row] = max(bonus.get(row, 0.0), WORD_BONUS * share)
    return bonus


def add_bonus(bonus: dict[int, float], snap: Snapshot, texts: list[str],
              rows: np.ndarray | None) -> dict[int, float]:
    """`bonus` (row -> z, e.g. the audio channels') with the OCR word bonus merged in."""
    for row, extra in row_bonus(snap, texts, rows).items():
        bonus[row] = max(bonus.get(row, 0.0), extra)
    return bonus


def _split(text: str) -> str:
    return re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()


def matched_line(lines_json: str | None, texts: list[str]) -> dict[str, Any] | None:
    """The line (text, box, confidence) holding most of the query words, or None."""
    if not lines_json:
        return None
    words = [w for t in texts for w in query_words(t)]
    if not words:
        return None
    try:
        lines = json.loads(lines_json)
    except ValueError:
        return None
    best, best_n = None, 0
    for line in lines:
        said = _split(str(line.get("text", "")))
        n = sum(1 for w in words if re.search(rf"\b{re.escape(w)}\b", said))
        if n > best_n:
            best, best_n = line, n
    if best is None:
        return None
    return {**best, "words": best_n, "of": len(words)}


def annotate(result: Any, texts: list[str]) -> Any:
    """Shape a search result's OCR fields: `ocr_lines` (long) is dropped from its metadata,
    `ocr_match` added (the line holding most query words: text, box, confidence, words
    found), and with `explain` the OCR word bonus is shown under `explain["ocr"]`."""
    lines = result.metadata.pop("ocr_lines", None)
    match = matched_line(lines, texts)
    if match is not None:
        result.metadata["ocr_match"] = match
    if result.explain is not None and result.metadata.get("ocr"):
        words = [w for t in texts for w in query_words(t)]
        said = _split(str(result.metadata["ocr"]))
        found = [w for w in words if re.search(rf"\b{re.escape(w)}\b", said)]
        result.explain["ocr"] = {
            "words_found": found, "of": len(words),
            "bonus": round(WORD_BONUS * len(found) / len(words), 4) if words else 0.0,
            "line": match}
    return result


def lines_json(lines: list[Any]) -> str | None:
    """OcrLines as the `ocr_lines` column's JSON (None when there are none)."""
    return json.dumps([ln.to_dict() for ln in lines]) if lines else None


def lines_text(lines: list[Any]) -> str | None:
    """OcrLines as the `ocr` column's text, one line per line (None when there are none)."""
    return "\n".join(ln.text for ln in lines) if lines else None
