"""Turn one audio track into rows: sound tags per window, transcript segments, CLAP vectors.

The track is streamed (see `decode.py`) through windows of `SPEECH_WINDOW` samples that
advance by `SPEECH_HOP` (a multiple of the YAMNet patch, so patches line up across
windows), so memory holds one window of samples, never the whole file:

- YAMNet scores each 0.975 s patch once; tag windows of `TAG_WINDOW` patches (hop
  `TAG_HOP`) take the per-class maximum over their patches (short events such as a bark
  are not averaged away) and keep the top tags.
- Whisper runs only on windows where YAMNet hears speech (so noise is not "transcribed"
  into hallucinated words, and music or ambience costs no decoding), one utterance (cut
  at pauses, see vad.py) at a time, so each segment's start_s/end_s is that of its words;
  utterances in the overlap of two windows belong to the window where they start before
  the overlap's midpoint.
- CLAP (optional) embeds each tag window into its own space.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.audio.decode import SAMPLE_RATE, AudioStream
from mmsearch.audio.vad import utterances
from mmsearch.errors import MmsearchError, UsageError

#: YAMNet's patch: 0.975 s of 16 kHz samples (see yamnet.py).
PATCH = 15_600
#: Whisper window (24.5 s) and hop (19.5 s = 20 YAMNet patches): 5 s overlap.
SPEECH_HOP = 20 * PATCH
SPEECH_WINDOW = SPEECH_HOP + 5 * SAMPLE_RATE
#: Tag windows: 10 patches (9.75 s) advancing by 5 (overlapping by half).
TAG_WINDOW = 10
TAG_HOP = 5
#: YAMNet classes whose score gates Whisper (any of them above `speech_threshold`).
SPEECH_CLASSES = ("Speech", "Child speech, kid speaking", "Conversation",
                  "Narration, monologue", "Speech synthesizer", "Male speech, man speaking",
                  "Female speech, woman speaking")


@dataclass(frozen=True)
class AudioOptions:
    """Which audio channels to compute and with what.

    `whisper` / `yamnet` / `clap`: model specs (None: the defaults, see whisper.py,
    yamnet.py, clap.py); `top_tags` tags with score ≥ `min_tag_score` are kept per window.
    """

    tags: bool = True
    speech: bool = True
    whisper: str | None = None
    yamnet: str | None = None
    clap: str | None = None
    top_tags: int = 5
    min_tag_score: float = 0.05
    speech_threshold: float = 0.3
    time_limit: float | None = None


@dataclass
class AudioPart:
    """One row to write: a tag window or a transcript segment (times in seconds)."""

    channel: str  # "tags" | "speech"
    start_s: float
    end_s: float
    text: str  # "Dog 0.91; Bark 0.85" or the transcript
    tags: list[tuple[int, float]] = field(default_factory=list)  # (class index, score)


@dataclass
class AudioAnalysis:
    """Everything computed from one track."""

    parts: list[AudioPart]
    seconds: float
    clap: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # computed: "tags", "speech", "clap"


#: Loaded models, shared by analyzers in this process: (kind, spec, device) -> model.
_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()
#: Channel names and what their model is called in messages.
CHANNELS = {"tags": "sound tags (YAMNet)", "speech": "speech (Whisper)",
            "clap": "CLAP sound embeddings"}


class AudioAnalyzer:
    """Loads the audio models on first use (thread-safe, once per process) and analyses
    tracks with the channels whose model loads.

    A channel whose model is missing or fails to load is left out (never an error): its
    reason is kept in `missing` (once per analyzer, that is per index run), and each
    analysis lists the channels it computed.
    """

    def __init__(self, options: AudioOptions, device: str | None = "cpu") -> None:
        self.options = options
        self._device = device
        #: called with (path, seconds done) between windows of a long track
        self.on_progress: Callable[[str, float], None] | None = None
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The device the models run on (resolved when first needed: torch loads late)."""
        from mmsearch.encoders.base import pick_device

        return pick_device(self._device)

    def _spec(self, name: str) -> str | None:
        """The model spec a channel uses now (None: not installed)."""
        if name == "tags":
            from mmsearch.locate import find_yamnet

            if self.options.yamnet:
                return self.options.yamnet
            found = find_yamnet()
            return str(found.path) if found else None
        if name == "speech":
            from mmsearch.audio.whisper import default_whisper_spec

            return self.options.whisper or default_whisper_spec()
        return self.options.clap

    def model(self, name: str) -> Any | None:
        """The model of channel `name` ("tags", "speech", "clap"), loaded once; None when it
        cannot load (the reason lands in `_failed`)."""
        with self._lock:
            if name in self._failed:
                return None
            spec = self._spec(name)
            key = (name, str(spec), self.device)
            with _MODELS_LOCK:
                if key in _MODELS:
                    return _MODELS[key]
            try:
                model = self._load(name, spec)
            except MmsearchError as e:
                self._failed[name] = str(e)
                return None
            except Exception as e:  # a broken model file: the channel is left out
                self._failed[name] = f"{type(e).__name__}: {e}"
                return None
            with _MODELS_LOCK:
                return _MODELS.setdefault(key, model)

    def _load(self, name: str, spec: str | None) -> Any:
        if name == "tags":
            from mmsearch.audio.yamnet import YamNet, missing_yamnet_message

            if spec is None:  # not installed: Google's weights at first use, when online
                from mmsearch.audio.yamnet_fetch import fetch_yamnet
                from mmsearch.locate import user_models_dir

                try:
                    spec = str(fetch_yamnet(user_models_dir() / "yamnet"))
                except MmsearchError as e:
                    raise UsageError(f"{missing_yamnet_message()} ({e})") from None
            return YamNet(spec, self.device)
        if name == "speech":
            from mmsearch.audio.whisper import load_whisper

            return load_whisper(spec, self.device)
        from mmsearch.audio.clap import ClapEncoder

        return ClapEncoder(spec, self.device)

    @property
    def yamnet(self) -> Any:
        """The sound-tag model; raises UsageError when it cannot load."""
        return self._require("tags")

    @property
    def whisper(self) -> Any:
        """The speech model; raises UsageError when it cannot load."""
        return self._require("speech")

    @property
    def clap(self) -> Any:
        """The CLAP model; raises UsageError when it cannot load."""
        return self._require("clap")

    def _require(self, name: str) -> Any:
        model = self.model(name)
        if model is None:
            raise UsageError(self._failed[name])
        return model

    @property
    def wanted(self) -> list[str]:
        """The channels asked for, in a fixed order."""
        opts = self.options
        return [c for c, on in (("tags", opts.tags), ("speech", opts.speech),
                                ("clap", bool(opts.clap))) if on]

    def working(self) -> list[str]:
        """The wanted channels whose model loads (loads them)."""
        return [c for c in self.wanted if self.model(c) is not None]

    @property
    def missing(self) -> dict[str, str]:
        """Wanted channels left out in this run, with why."""
        return {c: self._failed[c] for c in self.wanted if c in self._failed}

    @property
    def tag_labels(self) -> list[str] | None:
        """The tagger's class names (None when tags are off or their model is missing)."""
        model = self.model("tags") if self.options.tags else None
        return model.labels if model is not None else None

    @property
    def enabled(self) -> bool:
        """Whether any audio channel is on."""
        return bool(self.wanted)

    def analyze(self, stream: AudioStream,
                on_seconds: Callable[[float], None] | None = None) -> AudioAnalysis:
        """Stream a track through the enabled channels."""
        opts = self.options
        # YAMNet also gates Whisper; without it, the voice detector does (when installed)
        yamnet = self.model("tags") if (opts.tags or opts.speech) else None
        whisper = self.model("speech") if opts.speech else None
        clap_on = bool(opts.clap) and self.model("clap") is not None
        channels = [c for c, ok in (("tags", opts.tags and yamnet is not None),
                                    ("speech", whisper is not None), ("clap", clap_on)) if ok]
        speech_idx = ([i for i, name in enumerate(yamnet.labels) if name in SPEECH_CLASSES]
                      if yamnet is not None else [])
        patches: list[np.ndarray] = []  # (521,) scores per patch, absolute patch order
        parts: list[AudioPart] = []
        clap_vecs: list[tuple[float, float, np.ndarray]] = []
        buf = np.zeros(0, np.float32)
        offset = 0  # absolute sample index of buf[0]
        cutoff = 0.0  # transcript segments starting before this (s) are already taken
        total = 0

        def score_patches(upto: int, final: bool) -> None:
            """YAMNet scores for patches covered by buf up to sample `upto` (absolute)."""
            if yamnet is None:
                return
            first = len(patches)
            count = (upto - first * PATCH) // PATCH
            if final and upto > (first + count) * PATCH + PATCH // 5:
                count += 1  # a trailing part-patch of at least 0.2 s, zero-padded
            if final and not patches and count == 0 and upto > 0:
                count = 1
            if count <= 0:
                return
            lo = first * PATCH - offset
            seg = buf[lo:lo + count * PATCH]
            if len(seg) < count * PATCH:
                seg = np.pad(seg, (0, count * PATCH - len(seg)))
            scores = yamnet.patch_scores(seg)  # hop = PATCH: one row per patch
            patches.extend(scores)

        def speech_window(window: np.ndarray, start: int, last: bool) -> None:
            nonlocal cutoff
            if whisper is None:
                return
            if yamnet is not None:
                p0, p1 = start // PATCH, min(len(patches), -(-(start + len(window)) // PATCH))
                heard = max((float(patches[p][speech_idx].max()) for p in range(p0, p1)),
                            default=0.0) >= opts.speech_threshold
            else:
                from mmsearch.audio.ctwhisper import speech_spans

                spans_heard = speech_spans(window)
                heard = spans_heard is None or bool(spans_heard)
            if not heard:
                return
            t0 = start / SAMPLE_RATE
            limit = float("inf") if last else t0 + (SPEECH_HOP + SPEECH_WINDOW) / 2 / SAMPLE_RATE
            spans, next_cut = [], limit
            for a, b in utterances(window):
                at = t0 + a / SAMPLE_RATE
                if at < cutoff - 0.25:  # taken by the previous window
                    continue
                if at >= limit or (not last and a >= SPEECH_HOP and b >= len(window) - 320):
                    next_cut = min(next_cut, at)  # the next window sees it whole
                    break
                spans.append((a, b))
            texts = whisper.transcribe([window[a:b] for a, b in spans])
            for (a, b), text in zip(spans, texts, strict=True):
                if text:
                    parts.append(AudioPart("speech", t0 + a / SAMPLE_RATE,
                                           t0 + b / SAMPLE_RATE, text))
            cutoff = next_cut

        for block in stream.blocks():
            buf = np.concatenate([buf, block]) if len(buf) else block
            total += len(block)
            while len(buf) >= SPEECH_WINDOW:
                score_patches(offset + SPEECH_WINDOW, False)
                speech_window(buf[:SPEECH_WINDOW], offset, False)
                buf = buf[SPEECH_HOP:]
                offset += SPEECH_HOP
                if on_seconds:
                    on_seconds(offset / SAMPLE_RATE)
                if self.on_progress:
                    self.on_progress(stream.path, offset / SAMPLE_RATE)
        if total == 0:
            from mmsearch.errors import BadMediaError

            raise BadMediaError("no audio samples (empty or unreadable audio)")
        score_patches(offset + len(buf), True)
        if len(buf) and (offset == 0 or len(buf) > SPEECH_WINDOW - SPEECH_HOP):
            speech_window(buf, offset, True)
        duration = total / SAMPLE_RATE
        windows = _tag_windows(len(patches), duration)
        if "tags" in channels:
            for p0, p1, t0, t1 in windows:
                scores = np.max(patches[p0:p1], axis=0)
                top = [int(i) for i in np.argsort(-scores)[:opts.top_tags]
                       if scores[i] >= opts.min_tag_score]
                tags = [(i, round(float(scores[i]), 3)) for i in top]
                text = "; ".join(f"{yamnet.labels[i]} {s:.2f}" for i, s in tags)
                if tags:
                    parts.append(AudioPart("tags", t0, t1, text, tags))
        if clap_on:
            clap_vecs = self._clap_windows(stream.path, windows, duration)
        parts.sort(key=lambda p: (p.start_s, p.channel))
        return AudioAnalysis(parts, duration, clap_vecs, list(stream.warnings), channels)

    def _clap_windows(self, path: str, windows: list[tuple[int, int, float, float]],
                      duration: float) -> list[tuple[float, float, np.ndarray]]:
        """CLAP vectors of the tag windows (the track is read again at CLAP's rate)."""
        clap = self.clap
        spans = [(t0, t1) for _, _, t0, t1 in windows] or [(0.0, duration)]
        return [(t0, t1, v) for (t0, t1), v in zip(spans, clap.embed_file(path, spans),
                                                   strict=True)]


def _tag_windows(n_patches: int, duration: float) -> list[tuple[int, int, float, float]]:
    """(first patch, end patch, start s, end s) of each tag window; one when short."""
    if n_patches == 0:
        return []
    out = []
    step = PATCH / SAMPLE_RATE
    p0 = 0
    while True:
        p1 = min(n_patches, p0 + TAG_WINDOW)
        last = p1 >= n_patches
        out.append((p0, p1, p0 * step, duration if last else p1 * step))
        if last:
            return out
        p0 += TAG_HOP
