"""Search-side OCR: whole-word matches of the query in the text read from pictures.

Each picture (or video moment) with text has a row of channel "ocr" (its text embedded in
the main space) and, like its visual row, the `ocr` column (the lines read, one per line)
and `ocr_lines` (JSON: text, box and confidence per line). `row_bonus` gives the ocr and
visual rows of a picture holding the query's words `WORD_BONUS * share of the words
found`, in the planner's z units, as transcripts get (mmsearch/audio/search.py). Words match whole,
case-insensitively and without accents, forgiving the recogniser's usual slips: words
run together in CamelCase ("BakeryLaundry") are split first, query words run together
("BOOKVIOLET" for "book violet") each count, and a letter read as its look-alike digit
("B0OK", "Dai1y") still matches.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import numpy as np

from mmsearch.audio.search import query_words, word_matches
from mmsearch.view.snapshot import Snapshot

#: z-score bonus of a picture whose text holds every query word.
WORD_BONUS = 2.0
#: The `ocr` column with CamelCase runs split and accents dropped (DuckDB SQL).
WORDS_SQL = r"strip_accents(regexp_replace(ocr, '([a-z])([A-Z])', '\1 \2', 'g'))"
#: Letters the recogniser reads as look-alike digits (and back).
_LOOK_ALIKE = {"o": "[o0]", "0": "[o0]", "l": "[l1i]", "i": "[il1]", "1": "[1li]"}


def _plain(text: str) -> str:
    """Lower case without accents (as `WORDS_SQL` and lower() make the column)."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _letters(word: str) -> str:
    """The word's regexp; look-alikes only in words with letters (a number stays exact)."""
    word = _plain(word)
    if word.isdigit():
        return re.escape(word)
    return "".join(_LOOK_ALIKE.get(c, re.escape(c)) for c in word)


def word_patterns(words: list[str]) -> list[str]:
    """A regexp per query word, for lower-cased text without accents: the word whole,
    look-alike digits allowed, alone or run together with other words of the query."""
    letters = [_letters(w) for w in words]
    out = []
    for i, own in enumerate(letters):
        others = [p for j, p in enumerate(letters) if j != i and p != own]
        run = f"(?:{'|'.join(others)})*" if others else ""
        out.append(rf"\b{run}{own}{run}\b")
    return out


def row_bonus(snap: Snapshot, texts: list[str], rows: np.ndarray | None) -> dict[int, float]:
    """Extra z-score per row of a picture (or video moment) whose text holds words of the
    query texts: its ocr row and its visual row both get it, since the words are part of
    the picture (the planner fuses an item's channels as sum / sqrt(n), so a bonus on the
    ocr row alone would count 1/sqrt(2) of it against pictures without text)."""
    bonus: dict[int, float] = {}
    if "ocr" not in snap.table.column_names:
        return bonus
    for text in texts:
        for row, share in word_matches(snap, text, rows, column="ocr", expr=WORDS_SQL,
                                       channel="ocr", patterns=word_patterns):
            bonus[row] = max(bonus.get(row, 0.0), WORD_BONUS * share)
    if bonus:
        allowed = None if rows is None else set(rows.tolist())
        for row, visual in _visual_rows(snap, list(bonus)):
            if allowed is None or visual in allowed:
                bonus[visual] = max(bonus.get(visual, 0.0), bonus[row])
    return bonus


def _visual_rows(snap: Snapshot, ocr_rows: list[int]) -> list[tuple[int, int]]:
    """(ocr row, the visual row of the same picture or moment)."""
    found = snap.sql(
        "SELECT o._row, v._row FROM items o JOIN items v ON v.path = o.path AND "
        "v.channel = 'visual' AND v.start_s IS NOT DISTINCT FROM o.start_s "
        "WHERE o._row IN (SELECT unnest(?))", [ocr_rows]).fetchall()
    return [(int(o), int(v)) for o, v in found]


def add_bonus(bonus: dict[int, float], snap: Snapshot, texts: list[str],
              rows: np.ndarray | None) -> dict[int, float]:
    """`bonus` (row -> z, e.g. the audio channels') with the OCR word bonus merged in."""
    for row, extra in row_bonus(snap, texts, rows).items():
        bonus[row] = max(bonus.get(row, 0.0), extra)
    return bonus


def _split(text: str) -> str:
    return _plain(re.sub(r"([a-z])([A-Z])", r"\1 \2", text))


def words_found(text: str, words: list[str]) -> list[str]:
    """The query words (`query_words`) the text read holds, as `row_bonus` matches them."""
    said = _split(text)
    return [w for w, p in zip(words, word_patterns(words), strict=True) if re.search(p, said)]


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
        n = len(words_found(str(line.get("text", "")), words))
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
        found = words_found(str(result.metadata["ocr"]), words)
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
