"""Cut speech into utterances at pauses, by short-time energy (gives precise timestamps).

Whisper's own timestamp tokens drift by seconds on some voices; the energy envelope at
20 ms resolution does not. Utterances are what Whisper transcribes one by one, so each
transcript segment carries the time span of exactly the words it holds.
"""

from __future__ import annotations

import numpy as np

FRAME = 320  # 20 ms at 16 kHz


def utterances(wav: np.ndarray, sr: int = 16_000, min_pause_s: float = 0.3,
               min_len_s: float = 0.3, max_len_s: float = 24.0,
               merge_below_s: float = 1.5) -> list[tuple[int, int]]:
    """(start, end) sample spans of the voiced stretches of `wav`.

    A frame is voiced when its RMS exceeds 10 % of the loud frames' level (the 95th
    percentile) and a fixed floor; stretches separated by less than `min_pause_s` of
    silence are joined; stretches shorter than `merge_below_s` join their neighbour when
    the result stays under `max_len_s`; longer stretches are cut every `max_len_s`.
    """
    n = len(wav) // FRAME
    if n == 0:
        return []
    rms = np.sqrt(np.mean(wav[:n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1))
    level = float(np.percentile(rms, 95))
    voiced = rms > max(0.1 * level, 1e-3)
    if not voiced.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    gap = int(min_pause_s * sr / FRAME)
    joined: list[list[int]] = [runs[0]]
    for a, b in runs[1:]:
        if a - joined[-1][1] < gap:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    spans = [(a * FRAME, b * FRAME) for a, b in joined if (b - a) * FRAME >= min_len_s * sr]
    spans = _merge_short(spans, int(merge_below_s * sr), int(max_len_s * sr))
    out: list[tuple[int, int]] = []
    limit = int(max_len_s * sr)
    for a, b in spans:
        for s in range(a, b, limit):
            out.append((s, min(b, s + limit)))
    return out


def _merge_short(spans: list[tuple[int, int]], short: int, limit: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and (b - a < short or out[-1][1] - out[-1][0] < short) and b - out[-1][0] <= limit:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
