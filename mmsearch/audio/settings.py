"""Which audio channels a store computes, remembered in its manifest; query by a sound."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.audio.analyze import CHANNELS, AudioAnalyzer, AudioOptions
from mmsearch.encoders.base import Encoder
from mmsearch.errors import BadMediaError, UsageError


@dataclass(frozen=True)
class AudioSettings:
    """Audio channels of a store: tags (YAMNet), speech (Whisper spec), clap (CLAP spec)."""

    tags: bool
    speech: bool
    whisper: str | None = None
    clap: str | None = None

    @classmethod
    def resolve(cls, stored: dict[str, Any] | None, tags: bool | None = None,
                speech: bool | None = None, whisper: str | None = None,
                clap: str | None = None) -> AudioSettings:
        """Explicit choices, else the store's, else the defaults.

        Defaults: tags and speech on (a channel whose model is not installed is skipped
        with a warning, and added by a later run once it is), Whisper from
        `default_whisper_spec()` at load time (None is kept), CLAP off.
        """
        stored = stored or {}

        def pick(given: Any, name: str, default: Any) -> Any:
            return given if given is not None else stored.get(name, default)

        return cls(tags=bool(pick(tags, "tags", True)),
                   speech=bool(pick(speech, "speech", True)),
                   whisper=pick(whisper, "whisper", None),
                   clap=pick(clap or None, "clap", None))

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)

    def analyzer(self, device: str | None = None) -> AudioAnalyzer:
        """An analyzer computing these channels (models load on first use)."""
        return AudioAnalyzer(AudioOptions(tags=self.tags, speech=self.speech,
                                          whisper=self.whisper, clap=self.clap),
                             device)


def audio_query_vectors(encoder: Encoder, settings: AudioSettings, audio: Any,
                        device: str | None = None) -> list[np.ndarray]:
    """Main-space query vectors for an example sound (a path): its sound, then its words.

    The clip goes through the store's tags and speech channels as if it were indexed: the
    mean of its tag windows' vectors is one query, its transcript embedded as text another
    (when it has speech). The caller fuses their results (and the CLAP space's, if any).
    """
    from mmsearch.audio.decode import open_audio
    from mmsearch.audio.embed import label_vectors, tags_vector

    if not isinstance(audio, str | os.PathLike):
        raise UsageError("audio= takes the path of a sound file")
    if not Path(audio).is_file():
        raise UsageError(f"no such audio file: {audio}")
    use = AudioSettings(tags=settings.tags, speech=settings.speech, whisper=settings.whisper)
    if not (use.tags or use.speech):
        return []  # the store has no main-space audio channel (CLAP only, or none)
    analyzer = use.analyzer(device)
    if not analyzer.working():
        raise UsageError(f"cannot analyse {os.fspath(audio)}: " + "; ".join(
            f"{CHANNELS[c]}: {why}" for c, why in analyzer.missing.items()))
    try:
        stream = open_audio(os.fspath(audio))
        assert stream is not None
        parts = analyzer.analyze(stream).parts
    except BadMediaError as e:
        raise UsageError(f"cannot use audio {os.fspath(audio)}: {e}") from None
    out = []
    tags = [p for p in parts if p.channel == "tags"]
    if tags:
        table = label_vectors(encoder, analyzer.tag_labels or [],
                              (i for p in tags for i, _ in p.tags))
        out.append(_unit(np.mean([tags_vector(table, p.tags, encoder.dim) for p in tags],
                                 axis=0)))
    words = " ".join(p.text for p in parts if p.channel == "speech")
    if words:
        out.append(encoder.encode_texts([words])[0])
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
